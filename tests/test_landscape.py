"""`algd landscape` on the built-in task: figure, diagnostics, and no silent overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from algd.bench.landscape import curvature
from algd.cli import main
from algd.training import train
from helpers import toy


def test_curvature_known_values() -> None:
    hess = np.array(
        [np.diag([1.0, -1.0]), np.diag([1.0, 2.0]), np.diag([-1.0, -2.0]), [[0.0, 1.0], [1.0, 0.0]]]
    )
    d = curvature(hess)
    assert d["indefinite_share"] == pytest.approx(0.5)  # diag(1, -1) and the off-diagonal one
    assert d["not_psd_share"] == pytest.approx(0.75)
    assert d["mean_min_eigenvalue"] == pytest.approx((-1 + 1 - 2 - 1) / 4)


@pytest.mark.slow
def test_landscape_figure_and_diagnostics(tmp_path: Path, capsys) -> None:
    short = {
        "total_steps": 500,
        "warmup_steps": 300,
        "learning_starts": 300,
        "eval_every": 500,
        "checkpoint_every": 500,
        "eval_episodes": 1,
    }
    train(toy("algd", tmp_path / "algd", **short), console=False)
    # A second run of the same program (seed 1): the figure draws every run's samples.
    train(toy("algd", tmp_path / "algd1", seed=1, **short), console=False)
    out = tmp_path / "fig"
    argv = [
        "landscape",
        str(tmp_path / "algd"),
        str(tmp_path / "algd1"),
        "--out",
        str(out),
        "--grid",
        "11",
        "--samples",
        "200",
    ]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {p.name for p in out.iterdir()} == {"landscape.png", "landscape.svg", "landscape.json"}
    assert json.loads((out / "landscape.json").read_text()) == printed
    assert (out / "landscape.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("L", "L_A"):
        d = printed[name]
        assert 0.0 <= d["indefinite_share"] <= d["not_psd_share"] <= 1.0
    assert printed["rho"] == 1.0 and printed["grid"] == 11
    samples = printed["samples"]
    assert set(samples) == {str(tmp_path / "algd"), str(tmp_path / "algd1")}
    assert all(0.0 <= v["feasible_share"] <= 1.0 for v in samples.values())
    # A second call must not replace the figure silently.
    before = (out / "landscape.png").stat().st_mtime_ns
    assert main(argv) == 2
    assert "landscape.png already exists (pass --overwrite" in capsys.readouterr().err
    assert (out / "landscape.png").stat().st_mtime_ns == before
