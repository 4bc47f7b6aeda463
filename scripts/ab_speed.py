"""Side-by-side update throughput of two source trees (interleaved, one process per round).

    python scripts/ab_speed.py OLD_SRC NEW_SRC [--algo algd] [--rounds 4] [--seconds 6]

OLD_SRC and NEW_SRC are ``src`` folders, for example of a ``git worktree`` of an older commit
and of the working tree. Each round runs one fresh process per tree, in turn, that builds the
agent at reference settings on SafetyPointButton1-v0's shapes (obs 76, action 2, batch 256,
UTD 10) with a fixed synthetic batch, compiles the fused update and counts gradient steps per
second. Timings on a shared virtual machine drift by 10-20%; the interleaving puts both trees
under the same drift, and the medians are what to compare. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import time
import numpy as np
import jax
from algd.agents import build_agent, resolve_config
from algd.buffer import Batch
from algd.config import TrainConfig
from algd.envs.base import EnvSpec

cfg = resolve_config(TrainConfig(algo=ALGO, env="SafetyPointButton1-v0", utd=10, batch_size=256))
spec = EnvSpec("shapes", 76, 2, (-1.0, -1.0), (1.0, 1.0), 1000, 25.0, "episode")
agent = build_agent(cfg, spec)
state = agent.init(jax.random.PRNGKey(0))
r = np.random.default_rng(0)
u, b = 10, 256
batch = Batch(
    r.standard_normal((u, b, 76), np.float32),
    r.uniform(-1, 1, (u, b, 2)).astype(np.float32),
    r.standard_normal((u, b)).astype(np.float32),
    (r.uniform(size=(u, b)) < 0.1).astype(np.float32),
    r.standard_normal((u, b, 76), np.float32),
    np.zeros((u, b), np.float32),
)
key = jax.random.PRNGKey(1)
state, m = agent.update(state, batch, key, np.uint32(0))
jax.block_until_ready(m)
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < SECONDS:
    state, m = agent.update(state, batch, key, np.uint32(n))
    jax.block_until_ready(m)
    n += 1
print(n * u / (time.perf_counter() - t0))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old_src")
    p.add_argument("new_src")
    p.add_argument("--algo", default="algd")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seconds", type=float, default=6.0)
    ns = p.parse_args()
    code = CHILD.replace("ALGO", repr(ns.algo)).replace("SECONDS", repr(ns.seconds))
    trees = {"old": ns.old_src, "new": ns.new_src}
    rates: dict[str, list[float]] = {k: [] for k in trees}
    for _ in range(ns.rounds):
        for name, src in trees.items():
            env = {**os.environ, "PYTHONPATH": os.path.abspath(src), "ALGD_COMPILE_CACHE": "off"}
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            rates[name].append(round(float(out.stdout.strip().splitlines()[-1]), 2))
    medians = {k: statistics.median(v) for k, v in rates.items()}
    print(
        json.dumps(
            {
                "algo": ns.algo,
                "updates_per_s": rates,
                "median": medians,
                "ratio_new_over_old": medians["new"] / medians["old"],
            }
        )
    )


if __name__ == "__main__":
    main()
