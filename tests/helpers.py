"""Shared test helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from algd.config import TrainConfig
from algd.presets import preset

ROOT = Path(__file__).resolve().parents[1]


def toy(algo: str, run_dir: Path, **overrides: object) -> TrainConfig:
    return preset("toy", algo=algo, run_dir=str(run_dir), progress=False, **overrides)


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "algd.cli", *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
