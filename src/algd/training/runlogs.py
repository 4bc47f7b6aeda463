"""Where a run's records go: sinks behind one small protocol. A record is a row of one of the
run's tables (``episodes``, ``eval``, ``metrics``, ``timing``) with its ``step``. The CSV
files are the run's record; TensorBoard and (with ``--wandb``) Weights & Biases get the scalars.
A new sink is one class and one :func:`register_sink` call."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from algd.config import TrainConfig, to_dict
from algd.logs import CsvLog, TensorBoard, Wandb

TABLES = ("episodes", "eval", "metrics", "timing")


class Sink(Protocol):
    def record(self, table: str, row: Mapping[str, Any]) -> None:
        """One row of ``table`` (its ``step`` included)."""

    def close(self) -> None: ...


class CsvSink:
    """TABLE.csv in the run directory for each table, appended row by row."""

    def __init__(self, run_dir: Path) -> None:
        self.logs = {table: CsvLog(run_dir / f"{table}.csv") for table in TABLES}

    def record(self, table: str, row: Mapping[str, Any]) -> None:
        self.logs[table].write(dict(row))

    def close(self) -> None:
        for log in self.logs.values():
            log.close()


class Writer(Protocol):
    def scalars(self, step: int, values: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class ScalarSink:
    """The scalars of the records for a dashboard ``writer`` (TensorBoard, W&B): a metrics row
    as it is, an evaluation's under ``eval/``, the throughput under ``perf/``; episodes are
    left to the CSV."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer

    def record(self, table: str, row: Mapping[str, Any]) -> None:
        step = int(row["step"])
        if table == "metrics":
            self.writer.scalars(step, dict(row))
        elif table == "eval":
            self.writer.scalars(step, {f"eval/{k}": v for k, v in row.items() if k != "step"})
        elif table == "timing":
            rates = ("env_steps_per_s", "updates_per_s")
            self.writer.scalars(step, {f"perf/{k}": row[k] for k in rates})

    def close(self) -> None:
        self.writer.close()


def _wandb(run_dir: Path, cfg: TrainConfig) -> Sink | None:
    if not cfg.wandb:
        return None
    writer = Wandb(run_dir, to_dict(cfg), cfg.wandb_project, cfg.wandb_group, cfg.wandb_mode)
    return ScalarSink(writer)


# Every run's sinks, in the order they receive a record: name -> factory (None: not wanted).
SINKS: dict[str, Callable[[Path, TrainConfig], Sink | None]] = {
    "csv": lambda run_dir, cfg: CsvSink(run_dir),
    "tensorboard": lambda run_dir, cfg: ScalarSink(TensorBoard(run_dir / "tb")),
    "wandb": _wandb,
}


def register_sink(name: str, factory: Callable[[Path, TrainConfig], Sink | None]) -> None:
    """Add a sink every run opens (``factory`` returns None where the config does not want
    it)."""
    if name in SINKS:
        raise ValueError(f"sink '{name}' is already registered")
    SINKS[name] = factory


class RunLogs:
    """One run's open sinks."""

    def __init__(self, run_dir: Path, cfg: TrainConfig) -> None:
        self.sinks: list[Sink] = []
        try:
            for factory in SINKS.values():
                sink = factory(run_dir, cfg)
                if sink is not None:
                    self.sinks.append(sink)
        except BaseException:
            self.close()
            raise
        self.t0 = time.time()

    def record(self, table: str, row: Mapping[str, Any]) -> None:
        for sink in self.sinks:
            sink.record(table, row)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []
