"""``pytest --compiles N``: where the suite's time goes in XLA compiles.

Lists the N tests and the N programs (by function name) that spent the most seconds in XLA
compilation. A program fetched from the persistent cache counts too, with the seconds it took
to fetch. Each test's report carries its figures, so they reach the controller under
pytest-xdist.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator
from typing import Any

import jax.monitoring
import pytest

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_seen: list[tuple[str, float]] = []  # (program, seconds) since the last report


def _on_duration(event: str, duration: float, **kwargs: Any) -> None:
    if event == _COMPILE_EVENT:
        _seen.append((str(kwargs.get("fun_name", "?")), duration))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--compiles",
        type=int,
        default=0,
        metavar="N",
        help="list the N tests and N programs that spent the most time in XLA compiles",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("compiles"):
        jax.monitoring.register_event_duration_secs_listener(_on_duration)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator:
    outcome = yield
    if item.config.getoption("compiles"):
        outcome.get_result().user_properties.append(("compiles", list(_seen)))
        _seen.clear()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    most = config.getoption("compiles")
    if not most:
        return
    tests: Counter[str] = Counter()
    tests_n: Counter[str] = Counter()
    programs: Counter[str] = Counter()
    programs_n: Counter[str] = Counter()
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, compiles in getattr(report, "user_properties", ()):
                if name != "compiles":
                    continue
                for program, seconds in compiles:
                    tests[report.nodeid] += seconds
                    tests_n[report.nodeid] += 1
                    programs[program] += seconds
                    programs_n[program] += 1
    write = terminalreporter.write_line
    total = sum(tests.values())
    terminalreporter.write_sep("=", f"XLA compiles: {sum(tests_n.values())} in {total:.1f} s")
    for title, seconds, counts in (("test", tests, tests_n), ("program", programs, programs_n)):
        write(f"by {title}:")
        for key, s in seconds.most_common(most):
            write(f"{s:7.1f} s {counts[key]:5d}  {key}")
