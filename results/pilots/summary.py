"""The pilot runs' figures as markdown tables: python results/pilots/summary.py [TASK ...];
with --speed, the cost per step of their settings (results/pilots/speed.jsonl).

One row per pilot (results/pilots/<task>/<name>/.../s0): the deterministic evaluation's return
and discounted cost at a few step counts, the last one, and the multiplier at the end. The
runs' wall times are not comparable (several pilots shared the 2 cores); the cost per
environment step of each setting is measured side by side by results/pilots/speed.sh.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def main(tasks: list[str]) -> None:
    for task in tasks or sorted(p.name for p in HERE.iterdir() if p.is_dir() and p.name != "specs"):
        print(
            f"\n{task}: return / discounted cost of the deterministic evaluation (limit "
            f"{'151.99' if task == 'cheetah' else '82.75'})\n"
        )
        marks = (10_000, 20_000, 30_000, 40_000)
        print(
            f"| pilot | {' | '.join(f'{m // 1000}k' for m in marks)} | lambda at the end | finished |"
        )
        print("|---|" + "---|" * (len(marks) + 2))
        for run in sorted((HERE / task).glob("*/*/*/s0")):
            ev = rows(run / "eval.csv")
            by_step = {int(e["step"]): e for e in ev}
            cells = []
            for m in marks:  # the last evaluation at or before m, if within 3000 steps of it
                e = max(
                    (by_step[t] for t in by_step if m - 3000 < t <= m),
                    key=lambda r: int(r["step"]),
                    default=None,
                )
                cells.append(
                    f"{float(e['return_mean']):.0f} / {float(e['discounted_cost_mean']):.0f}"
                    if e
                    else ""
                )
            lam = rows(run / "metrics.csv")[-1]["lambda"]
            done = (run / "summary.json").exists()
            name = run.relative_to(HERE / task).parts[0]
            print(
                f"| {name} | {' | '.join(cells)} | {float(lam):.3g} | {'yes' if done else 'no'} |"
            )


def speed_table(path: Path) -> None:
    """The lines of results/pilots/speed.sh (bench-speed JSON) as a markdown table."""
    import json

    runs = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
    print(
        "| env | algorithm | UTD | batch | overrides | updates/s per seed | env steps/s per seed (whole loop) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        sets = (
            ", ".join(f"{k.removeprefix('agent.')}={v}" for k, v in r["sets"].items())
            or "reference"
        )
        print(
            f"| {r['env']} | {r['algo']} | {r['utd']} | {r['batch_size']} | {sets} | "
            f"{r['updates_per_s']:.1f} | {r['env_steps_per_s']:.1f} |"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--speed"]:
        speed_table(HERE / "speed.jsonl")
    else:
        main(sys.argv[1:])
