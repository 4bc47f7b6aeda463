"""Log sinks (write only): CSV files flushed per row, TensorBoard events, and the console.

Files in a run directory:
- ``episodes.csv``: step, episode, return, cost, discounted_cost, length (every training episode);
- ``eval.csv``: deterministic evaluations;
- ``metrics.csv``: losses, multiplier and training return/cost every ``log_every`` steps;
- ``timing.csv``: wall-clock throughput (kept apart so the other files are bit-for-bit
  reproducible from the seed).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import sys
import time
from pathlib import Path
from typing import Any, Literal

from algd.checkpoint import atomic_write_bytes
from algd.errors import AlgdError, RunDirError, WriteError


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else str(v))
    return str(v)


def _write_error(path: Path, exc: OSError) -> WriteError:
    return WriteError(f"cannot write {path}: {exc.strerror or exc}")


class CsvLog:
    """Append-only CSV whose header is fixed by the first row written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] | None = None
        try:
            if path.exists() and path.stat().st_size > 0:
                with open(path, newline="") as f:
                    self.columns = next(csv.reader(f), None)
            self._file = open(path, "a", newline="")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise _write_error(path, exc) from None

    def write(self, row: dict[str, Any]) -> None:
        lines = []
        if self.columns is None:
            self.columns = list(row)
            lines.append(",".join(self.columns))
        lines.append(",".join(_fmt(row.get(c, "")) for c in self.columns))
        try:
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()
        except OSError as exc:
            raise _write_error(self.path, exc) from None

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a failed flush was already reported by write()
            self._file.close()


def read_rows(path: Path) -> list[list[str]]:
    """A CSV log's rows (header first), or a RunDirError naming the file and its damage."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except IsADirectoryError:
        raise RunDirError(f"{path} is a folder, not a CSV log; restore the file") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        reason = str(exc).splitlines()[0][:120]
        raise RunDirError(f"{path} is damaged ({reason}); restore it or remove the run") from None
    for row in rows[1:]:
        if row and not _is_number(row[0]):
            raise RunDirError(
                f"{path} is damaged (a row's step is {row[0][:40]!r}); restore it or remove the run"
            )
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def truncate_after(path: Path, step: int) -> None:
    """Drop rows whose ``step`` exceeds ``step`` (rows written after the checkpoint a resumed run
    continues from), atomically, so resumed logs have no duplicated or missing rows."""
    if not path.exists():
        return
    rows = read_rows(path)
    if not rows:
        return
    header, body = rows[0], rows[1:]
    kept = [r for r in body if r and int(float(r[0])) <= step]
    out = io.StringIO()
    out.write(",".join(header) + "\n")
    for r in kept:
        out.write(",".join(r) + "\n")
    atomic_write_bytes(path, out.getvalue().encode())


def cost_name(kind: str) -> str:
    """How lines and labels name the cost a limit of ``kind`` (an env's ``cost_limit_kind``)
    is stated in."""
    return "discounted cost" if kind == "discounted" else "cost"


class Console:
    """Live progress bar on a terminal; plain lines every ``log_every`` steps otherwise."""

    def __init__(self, total: int, start: int, enabled: bool, cost_label: str = "cost") -> None:
        self.total, self.enabled, self.cost_label = total, enabled, cost_label
        self.live = enabled and sys.stdout.isatty()
        self._progress: Any = None
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]step {task.completed:>9,}/{task.total:,}"),
                BarColumn(),
                TextColumn("{task.description}"),
                TimeRemainingColumn(),
            )
            self._task = self._progress.add_task("", total=total, completed=start)
            self._progress.start()

    def update(self, step: int, ret: float, cost: float, lam: float, sps: float) -> None:
        text = (
            f"return {ret:8.2f}  {self.cost_label} {cost:7.2f}  lambda {lam:7.4f}  "
            f"{sps:6.1f} steps/s"
        )
        if self.live:
            self._progress.update(self._task, completed=step, description=text)
        elif self.enabled:
            print(f"step {step:>9}/{self.total}  {text}", flush=True)

    def message(self, text: str) -> None:
        if self.live:
            self._progress.console.print(text)
        elif self.enabled:
            print(text, flush=True)

    def close(self) -> None:
        if self.live:
            self._progress.stop()


class TensorBoard:
    def __init__(self, directory: Path) -> None:
        from tensorboardX import SummaryWriter

        self.directory = directory
        try:
            self._writer = SummaryWriter(str(directory), flush_secs=10)
        except OSError as exc:
            raise _write_error(directory, exc) from None

    def scalars(self, step: int, values: dict[str, float]) -> None:
        try:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self._writer.add_scalar(k, v, step)
        except OSError as exc:
            raise _write_error(self.directory, exc) from None

    def close(self) -> None:
        with contextlib.suppress(OSError):  # event files are a convenience copy of the CSV logs
            self._writer.flush()
            self._writer.close()


class Wandb:
    """Weights & Biases, an optional sink beside the CSV logs and TensorBoard (``--wandb``;
    ``pip install 'algd[wandb]'``). One W&B run per run directory: its id derives from the
    directory's absolute path, so a resumed run continues the same W&B run. Files go under
    RUN_DIR/wandb; ``mode`` offline needs no network (``wandb sync RUN_DIR/wandb/offline-*``
    uploads later)."""

    def __init__(
        self,
        run_dir: Path,
        config: dict[str, Any],
        project: str,
        group: str | None,
        mode: Literal["online", "offline"],
    ) -> None:
        try:
            import wandb
        except ImportError:
            raise AlgdError(
                "--wandb needs the wandb package: pip install 'algd[wandb]' (or bash "
                "scripts/setup.sh, which installs it)"
            ) from None
        import hashlib

        path = run_dir.resolve()
        run_id = hashlib.sha256(str(path).encode()).hexdigest()[:16]
        name = (
            path.name
            if group is None or path.parent.name == group
            else (f"{path.parent.name}/{path.name}")
        )
        (run_dir / "wandb").mkdir(exist_ok=True)
        try:
            self._run = wandb.init(
                project=project,
                group=group,
                name=name,
                id=run_id,
                resume="allow",
                dir=str(run_dir),
                config=config,
                mode=mode,
                settings=wandb.Settings(silent=True, console="off"),
                reinit="create_new",
            )
        except Exception as exc:  # wandb raises its own types for network and login problems
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise AlgdError(
                f"--wandb: W&B could not start a run ({reason}); use --wandb-mode offline "
                "without a network or login"
            ) from None

    def scalars(self, step: int, values: dict[str, float]) -> None:
        finite = {
            k: v for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)
        }
        self._run.log(finite, step=step)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a convenience copy of the CSV logs
            self._run.finish()


class Throughput:
    """Environment steps and gradient steps per second since the previous call."""

    def __init__(self) -> None:
        self._t = time.perf_counter()
        self._steps = 0
        self._updates = 0

    def add(self, steps: int, updates: int) -> None:
        self._steps += steps
        self._updates += updates

    def rates(self) -> tuple[float, float]:
        now = time.perf_counter()
        dt = max(now - self._t, 1e-9)
        out = (self._steps / dt, self._updates / dt)
        self._t, self._steps, self._updates = now, 0, 0
        return out
