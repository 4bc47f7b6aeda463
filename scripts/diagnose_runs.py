"""The multiplier's diagnosis from finished runs' CSVs: for each run directory under FOLDER
(results/FOLDER or a path), over the run's last quarter, the cost critics' reading Qc_bar at
the replayed actions, the cost the training episodes paid and the deterministic evaluations'
cost (both in the limit's units: the discounted sum on velocity tasks, the episode sum
elsewhere), the median lambda and the limit; and over the run's second half, each
evaluation's excess over the training episodes, max(0, its cost - the mean of the last 5
training episodes' then) (the gap ``--agent.lagrangian.eval-gap`` adds with a window of 1), its
mean and largest value.

    python scripts/diagnose_runs.py FOLDER [FOLDER ...]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from algd.bench.report import find_runs, load_run


def late(log: dict[str, np.ndarray], name: str, after: float) -> np.ndarray:
    """Column ``name`` of a CSV log at steps after ``after``, without its empty cells."""
    if name not in log:
        return np.zeros(0)
    values = log[name][log["step"] > after]
    return values[~np.isnan(values)]


def eval_gaps(run: dict[str, Any], after: float, episodes: int = 5) -> np.ndarray:
    """g at each evaluation after ``after`` (those before any training episode ended: none)."""
    discounted = run["kind"] == "discounted"
    ep, ev = run["episodes"], run["eval"]
    paid = ep.get("discounted_cost" if discounted else "cost", np.zeros(0))
    out = []
    for step, cost in zip(ev.get("step", ()), ev.get("cost_vs_limit", ()), strict=False):
        last = paid[ep["step"] <= step][-episodes:] if paid.size else paid
        if step > after and last.size:
            out.append(max(0.0, float(cost) - float(last.mean())))
    return np.asarray(out)


def diagnose(run: dict[str, Any]) -> str:
    discounted = run["kind"] == "discounted"
    after = run["metrics"]["step"][-1] * 3 // 4
    qc = late(run["metrics"], "qc_bar/replay", after)
    lam = late(run["metrics"], "lambda", after)
    paid = late(run["episodes"], "discounted_cost" if discounted else "cost", after)
    seen = late(run["eval"], "discounted_cost_mean" if discounted else "cost_mean", after)

    def mean(x: np.ndarray) -> str:
        return f"{x.mean():.0f}" if x.size else "-"

    median = f"{np.median(lam):.3g}" if lam.size else "-"
    g = eval_gaps(run, run["metrics"]["step"][-1] // 2)
    gap = f"gap {g.mean():.1f} (max {g.max():.1f})" if g.size else "gap -"
    return (
        f"{run['dir']}: Qc_bar {mean(qc)}, episodes {mean(paid)}, evaluations {mean(seen)}, "
        f"lambda {median} (limit {run['limit']:g}); {gap}"
    )


def main(folders: list[str]) -> None:
    for folder in folders:
        root = Path(folder) if Path(folder).exists() else Path("results") / folder
        for run in find_runs(root):
            loaded = load_run(run)
            if loaded["metrics"]:
                print(diagnose(loaded))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
