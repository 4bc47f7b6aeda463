"""Every algorithm trains through `algd train` on a real Safety-Gymnasium task; both diffusion
variants and LGD run end to end. Budgets are tiny: these check the plumbing, not learning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from algd.cli import main

TINY = [
    "--total-steps",
    "260",
    "--warmup-steps",
    "200",
    "--learning-starts",
    "64",
    "--utd",
    "1",
    "--batch-size",
    "32",
    "--eval-every",
    "0",
    "--eval-episodes",
    "1",
    "--episode-length",
    "100",
    "--log-every",
    "50",
    "--quiet",
    "--agent.critic-hidden",
    "32",
    "32",
    "--agent.actor-hidden",
    "32",
    "32",
    "--agent.score-hidden",
    "32",
    "32",
    "32",
]


# ALGD on a real task by default. The other algorithms share its loop, env adapter and critics
# (their actors differ) and learn on the built-in task in tests/test_learning.py; their
# real-task runs are behind `slow`.
@pytest.mark.parametrize(
    "algo",
    [
        "algd",
        *(
            pytest.param(a, marks=pytest.mark.slow)
            for a in ("lgd", "sac_lag", "cal", "sac_auglag", "sac")
        ),
    ],
)
def test_algorithms_train_on_safety_gymnasium(algo: str, tmp_path: Path) -> None:
    run = tmp_path / algo
    code = main(
        ["train", "--algo", algo, "--env", "SafetyPointButton1-v0", *TINY, "--run-dir", str(run)]
    )
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 260 and summary["updates"] == 60
    assert summary["final_eval"]["length_mean"] == 100
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 5 and "loss/actor" in rows[0]


@pytest.mark.parametrize(
    "variant",
    [
        # DDPM's update and chains are checked against the reference in tests/test_parity.py.
        pytest.param(["--algo", "algd", "--agent.diffusion", "ddpm"], marks=pytest.mark.slow),
        pytest.param(["--algo", "lgd", "--agent.multiplier", "pid"], marks=pytest.mark.slow),
        pytest.param(
            ["--algo", "algd", "--agent.score-space", "latent", "--agent.score-time", "input"],
            marks=pytest.mark.slow,
        ),
        # The VE-SDE default runs on Safety-Gymnasium above; these change one small path each.
        pytest.param(
            ["--algo", "algd", "--agent.diffusion", "ddpm", "--agent.eval-noise-free"],
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["--algo", "algd", "--agent.multiplier", "multipliers"], marks=pytest.mark.slow
        ),
    ],
)
def test_diffusion_variants_run_end_to_end(variant: list[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", *variant, "--env", "ToyRing-v0", *TINY, "--run-dir", str(run)]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["algo"] == variant[1]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_eval"]["cost_mean"] >= 0.0
