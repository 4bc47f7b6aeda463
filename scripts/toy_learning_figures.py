"""Final evaluations of the learning tests' configurations (tests/test_learning.py), as JSON lines.

Usage: .venv/bin/python scripts/toy_learning_figures.py [SEED ...]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from algd.presets import preset
from algd.training import train


def main(seeds: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for algo, steps in (
                ("sac", 4000),
                ("sac_lag", 4000),
                ("sac_auglag", 4000),
                ("cal", 4000),
                ("algd", 6000),
                ("lgd", 6000),
            ):
                run = Path(tmp) / f"{algo}_{seed}"
                cfg = preset(
                    "toy", algo=algo, seed=seed, total_steps=steps, run_dir=str(run), progress=False
                )
                ev = train(cfg, console=False)["final_eval"]
                print(
                    json.dumps(
                        {
                            "algo": algo,
                            "seed": seed,
                            "steps": steps,
                            "return": round(ev["return_mean"], 2),
                            "cost": round(ev["cost_mean"], 2),
                            "limit": 5.0,
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [0, 1])
