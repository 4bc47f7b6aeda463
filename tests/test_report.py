"""`algd report` on a small grid of fresh runs: the table, the plot files, no silent overwrite."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from algd.bench.report import find_runs, load_run, summarise
from algd.cli import main
from algd.training import train
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
    # report.md says what its columns mean, links its figures, and marks the two-seed intervals.
    md = (grid / "report" / "report.md").read_text()
    assert md.startswith(f"# algd report: {grid}") and "Columns: *final return*" in md
    assert "![ToyRing-v0.png](ToyRing-v0.png)" in md
    assert f"{rows['sac_lag']['return_ci95']:.2f} (2 seeds) |" in md and "comes from two" in md
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
        # The safety table: seeds under the limit at the end, evaluations under it after 3/4.
        limit = rows[algo]["limit"]
        under = late = total = 0
        for s in seeds:
            run = grid / f"{algo}_s{s}"
            evals = [line.split(",") for line in (run / "eval.csv").read_text().splitlines()[1:]]
            steps = json.loads((run / "config.json").read_text())["total_steps"]
            under += float(evals[-1][-1]) <= limit
            tail = [float(e[-1]) for e in evals if int(e[0]) > 0.75 * steps]
            late += sum(c <= limit for c in tail)
            total += len(tail)
        assert rows[algo]["final_under_limit_seeds"] == under
        assert rows[algo]["last_quarter_under_share"] == pytest.approx(late / total)
    assert f"| ToyRing-v0 | sac | {rows['sac']['final_under_limit_seeds']} of 1 |" in out
    assert main(["report", str(grid)]) == 2  # refuses to overwrite
    assert "report.md already exists (pass --overwrite" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_lambda_spread_tells_a_steady_climb_from_an_oscillation() -> None:
    """The report's two multiplier columns: a steady climb has a large spread but none about
    its trend; a multiplier that jumps between 0 and 2 has both; the first half is ignored."""
    import numpy as np

    from algd.bench.report import lambda_spread

    step = np.arange(0, 100_001, 1000)
    climb = np.where(step < 50_000, 100.0, step / 10_000)  # first half: ignored
    std, about_trend = lambda_spread(step, climb, 100_000)
    assert std == pytest.approx(np.std(step[step >= 50_000] / 10_000))
    assert std > 1.0 and about_trend < 1e-9
    square = np.where((step // 5000) % 2 == 0, 0.0, 2.0)
    std, about_trend = lambda_spread(step, square, 100_000)
    assert std == pytest.approx(1.0, abs=0.01) and about_trend == pytest.approx(1.0, abs=0.02)
    assert all(np.isnan(lambda_spread(step[:52], climb[:52], 100_000)))  # 2 values: no line


def test_quarter_costs_are_in_the_limits_units() -> None:
    """The box panel compares training episodes with the limit, so a discounted limit gets the
    episodes' discounted costs and an episode limit their sums, split by quarter of the budget."""
    import numpy as np

    from algd.bench.report import quarter_costs

    episodes = {
        "step": np.array([100.0, 250.0, 251.0, 600.0, 1000.0, 1200.0]),
        "cost": np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0]),
        "discounted_cost": np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
    }
    run = {"episodes": episodes, "total": 1000, "kind": "discounted"}
    got = [q.tolist() for q in quarter_costs(run)]
    assert got == [[1.0, 2.0], [3.0], [4.0], [5.0]]  # past the budget: left out
    got = [q.tolist() for q in quarter_costs({**run, "kind": "episode"})]
    assert got == [[10.0, 20.0], [30.0], [40.0], [50.0]]
    assert [len(q) for q in quarter_costs({**run, "episodes": {}})] == [0, 0, 0, 0]


def test_each_setting_of_a_sweep_gets_its_own_row(tmp_path: Path) -> None:
    """A grid sweep's runs (OUT/ENV/ALGO/TAG/sSEED) are reported per setting."""
    run = tmp_path / "one"
    train(toy("sac_lag", run, **SHORT), console=False)
    for tag in ("agent.rho=1", "agent.rho=2"):
        shutil.copytree(run, tmp_path / "grid" / "ToyRing-v0" / "sac_lag" / tag / "s0")
    shutil.copytree(run, tmp_path / "grid" / "ToyRing-v0" / "sac_lag" / "s1")
    rows = summarise([load_run(r) for r in find_runs(tmp_path / "grid")])
    assert [(r["algo"], r["seeds"]) for r in rows] == [
        ("sac_lag", 1),
        ("sac_lag (agent.rho=1)", 1),
        ("sac_lag (agent.rho=2)", 1),
    ]
