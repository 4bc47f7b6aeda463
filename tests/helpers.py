"""Shared test helpers."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import optax

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


def quick(total_steps: int, every: int = 300) -> dict[str, int]:
    """Settings of a short toy run: warm-up and learning start at 300 steps, evaluation and
    checkpoints every ``every`` steps, one evaluation episode."""
    return {
        "total_steps": total_steps,
        "warmup_steps": min(300, every),
        "learning_starts": min(300, every),
        "eval_every": every,
        "checkpoint_every": every,
        "log_every": 100,
        "eval_episodes": 1,
    }


class Capture(NamedTuple):
    """An optimiser (optax.GradientTransformation) that records the gradient it is handed."""

    init: Any
    update: Any
    grads: list[Any]

    @classmethod
    def of(cls, inner: optax.GradientTransformation) -> Capture:
        grads: list[Any] = []

        def update(g: Any, opt_state: Any, params: Any = None) -> Any:
            grads.append(g)
            return inner.update(g, opt_state, params)

        return cls(inner.init, update, grads)

    @property
    def grad(self) -> Any:
        return self.grads[-1]


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under root with its mtime and content hash."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = (
                p.stat().st_mtime_ns,
                hashlib.sha256(p.read_bytes()).hexdigest(),
            )
    return out
