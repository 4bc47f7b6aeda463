"""`algd report` on a small grid of fresh runs: the table, the plot files, no silent overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from algd.cli import main
from algd.train import train
from helpers import toy

SHORT = {
    "total_steps": 900,
    "warmup_steps": 300,
    "learning_starts": 300,
    "eval_every": 300,
    "checkpoint_every": 900,
    "log_every": 100,
    "eval_episodes": 1,
}


def test_report_table_and_plots(tmp_path: Path, capsys) -> None:
    grid = tmp_path / "grid"
    for algo, seed in (("sac_lag", 0), ("sac_lag", 1), ("sac", 0)):
        train(toy(algo, grid / f"{algo}_s{seed}", seed=seed, **SHORT), console=False)
    assert main(["report", str(grid)]) == 0
    out = capsys.readouterr().out
    assert "| ToyRing-v0 | sac_lag | 2 |" in out and "| ToyRing-v0 | sac | 1 |" in out
    files = {p.name for p in (grid / "report").iterdir()}
    assert files == {"report.md", "report.json", "ToyRing-v0.png", "ToyRing-v0.svg"}
    table = json.loads((grid / "report" / "report.json").read_text())
    rows = {r["algo"]: r for r in table}
    assert rows["sac_lag"]["seeds"] == 2 and rows["sac_lag"]["return_ci95"] >= 0
    # Hand check of two columns from the runs' own files.
    for algo, seeds in (("sac_lag", (0, 1)), ("sac", (0,))):
        finals = []
        paid = []
        for s in seeds:
            run = grid / f"{algo}_s{s}"
            finals.append(float((run / "eval.csv").read_text().splitlines()[-1].split(",")[1]))
            ep_lines = (run / "episodes.csv").read_text().splitlines()
            col = ep_lines[0].split(",").index("cost")
            paid.append(sum(float(line.split(",")[col]) for line in ep_lines[1:]))
        assert rows[algo]["return_mean"] == pytest.approx(sum(finals) / len(finals))
        assert rows[algo]["training_cost_mean"] == pytest.approx(sum(paid) / len(paid))
    assert main(["report", str(grid)]) == 2  # refuses to overwrite
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing")]) == 2
