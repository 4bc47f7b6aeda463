"""The multiplier's diagnosis from finished runs' CSVs: for each run directory under FOLDER
(results/FOLDER or a path), over the run's last quarter, the cost critics' reading Qc_bar at
the replayed actions, the cost the training episodes paid and the deterministic evaluations'
cost (both in the limit's units: the discounted sum on velocity tasks, the episode sum
elsewhere), the median lambda and the limit.

    python scripts/diagnose_runs.py FOLDER [FOLDER ...]
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np


def column(rows: list[dict[str, str]], name: str, after: int) -> list[float]:
    return [
        float(r[name]) for r in rows if int(r["step"]) > after and r.get(name) not in (None, "")
    ]


def read(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def diagnose(run: Path) -> str:
    summary = json.loads((run / "summary.json").read_text())
    discounted = summary["cost_limit_kind"] == "discounted"
    metrics, episodes = read(run / "metrics.csv"), read(run / "episodes.csv")
    evals = read(run / "eval.csv")
    after = int(metrics[-1]["step"]) * 3 // 4
    qc = column(metrics, "qc_bar/replay", after)
    lam = column(metrics, "lambda", after)
    paid = column(episodes, "discounted_cost" if discounted else "cost", after)
    seen = column(evals, "discounted_cost_mean" if discounted else "cost_mean", after)

    def mean(x: list[float]) -> str:
        return f"{np.nanmean(x):.0f}" if x else "-"

    median = f"{np.median(lam):.3g}" if lam else "-"
    return (
        f"{run}: Qc_bar {mean(qc)}, episodes {mean(paid)}, evaluations {mean(seen)}, "
        f"lambda {median} (limit {summary['cost_limit']:g})"
    )


def main(folders: list[str]) -> None:
    for folder in folders:
        root = Path(folder) if Path(folder).exists() else Path("results") / folder
        for summary in sorted(root.rglob("summary.json")):
            if (summary.parent / "metrics.csv").exists():
                print(diagnose(summary.parent))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
