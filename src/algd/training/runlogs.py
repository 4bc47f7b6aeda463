"""The files one seed's run writes as it goes: four CSV logs, TensorBoard, and (with
``--wandb``) Weights & Biases."""

from __future__ import annotations

import time
from pathlib import Path

from algd.config import TrainConfig, to_dict
from algd.logs import CsvLog, TensorBoard, Wandb


class RunLogs:
    """A run's open log files: ``episodes``, ``eval``, ``metrics`` and ``timing`` CSVs, and the
    scalar sinks (TensorBoard, W&B) behind :meth:`scalars`."""

    def __init__(self, run_dir: Path, cfg: TrainConfig | None = None) -> None:
        self.episodes = CsvLog(run_dir / "episodes.csv")
        self.eval = CsvLog(run_dir / "eval.csv")
        self.metrics = CsvLog(run_dir / "metrics.csv")
        self.timing = CsvLog(run_dir / "timing.csv")
        self.tb = TensorBoard(run_dir / "tb")
        self.wandb: Wandb | None = None
        if cfg is not None and cfg.wandb:
            self.wandb = Wandb(
                run_dir, to_dict(cfg), cfg.wandb_project, cfg.wandb_group, cfg.wandb_mode
            )
        self.t0 = time.time()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Scalars to TensorBoard (and W&B)."""
        self.tb.scalars(step, values)
        if self.wandb is not None:
            self.wandb.scalars(step, values)

    def close(self) -> None:
        for sink in (self.episodes, self.eval, self.metrics, self.timing, self.tb):
            sink.close()
        if self.wandb is not None:
            self.wandb.close()
