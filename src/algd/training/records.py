"""What a training group records besides its logs: what its seeds share, the record of a seed
that stopped without finishing, and the evaluation a finished run logged."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from typing import Any

from algd.config import TrainConfig, to_dict


def group_settings(cfg: TrainConfig) -> dict[str, Any]:
    """What the seeds of one group share: the config without seed and run directory."""
    return to_dict(replace(cfg, seed=0, run_dir=None, overwrite=False))


def failure_record(cfg: TrainConfig, reason: str, user_error: bool) -> dict[str, Any]:
    """The record of a seed that stopped without finishing (in place of its summary)."""
    return {
        "status": "failed",
        "error": reason,
        "user_error": user_error,
        "env": cfg.env,
        "algo": cfg.algo,
        "seed": cfg.seed,
        "run_dir": str(cfg.run_dir),
    }


def logged_eval(run_dir: Path, step: int) -> dict[str, float] | None:
    """The evaluation eval.csv of ``run_dir`` holds for ``step`` (None if there is none)."""
    path = run_dir / "eval.csv"
    if not path.exists():
        return None
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("step") and int(float(row["step"])) == step:
                return {k: float(v) for k, v in row.items() if k != "step"}
    return None
