"""``--help`` as a reader wants it: each flag's description, which tyro wraps line by line of
its docstring (leaving short orphan lines), reflowed as one paragraph to the terminal's
width."""

from __future__ import annotations

import contextlib
import os
import shutil
import textwrap
from collections.abc import Iterator

INDENT = " " * 8  # where tyro puts a flag's description


def width() -> int:
    """The terminal's width, at most 100 (80 where there is no terminal)."""
    return min(shutil.get_terminal_size((80, 24)).columns, 100)


@contextlib.contextmanager
def rendered_at(columns: int) -> Iterator[None]:
    """Within: tyro lays help out for ``columns`` columns (one column of flag groups, whatever
    the terminal's width); the environment is restored after."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def reflow(text: str, width: int, column: int = 8) -> str:
    """tyro's help with each flag's description joined and wrapped from ``column``, each
    paragraph of prose wrapped to ``width``, and rules cut to ``width``."""
    out: list[str] = []
    flag: str | None = None
    para: list[str] = []

    def flush() -> None:
        nonlocal flag
        pad = " " * column
        body = " ".join(para)
        if flag is not None:
            # The description starts on the flag's line and goes on under it.
            lines = textwrap.wrap(body, width, initial_indent=flag + "  ", subsequent_indent=pad)
            if not lines or not lines[0].startswith(flag + "  "):
                lines = [
                    flag,
                    *textwrap.wrap(body, width, initial_indent=pad, subsequent_indent=pad),
                ]
            out.extend(lines)
        elif body:
            out.extend(textwrap.wrap(body, width))
        flag = None
        para.clear()

    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if line.startswith(INDENT) and not line.startswith(INDENT + " ") and (flag or para):
            para.append(stripped)  # a flag's description
        elif line.startswith("  -"):
            flush()
            flag = line
        elif stripped and not line.startswith((" ", "usage:")):
            if flag is not None:
                flush()
            para.append(stripped)  # prose
        else:
            flush()
            if stripped and set(stripped) <= {"-"}:
                if line.startswith("  "):
                    continue  # the rule under a group's description
                line = " " + "-" * (width - 2)
            out.append(line)
    flush()
    return "\n".join(out) + "\n"
