"""Side-by-side update throughput of two source trees (or two Python environments).

    python scripts/ab_speed.py OLD_SRC NEW_SRC [--algo algd] [--rounds 30] [--seconds 1]
                               [--old-python PY] [--new-python PY]

OLD_SRC and NEW_SRC are ``src`` folders, for example of a ``git worktree`` of an older commit
and of the working tree (a tree from before the typed training state, commit 5df7693 or
older, runs its plain-XLA critic path). Each side is one long-lived process that builds the agent at
reference settings on SafetyPointButton1-v0's shapes (obs 76, action 2, batch 256, UTD 10)
with a fixed synthetic batch and compiles the fused update. Then the two processes take turns
(the other one waits, idle): a burst of ``--seconds`` of updates each, for ``--rounds`` rounds,
alternating which side goes first. Timings on a shared virtual machine drift by 10-20% over
minutes, more than the changes worth measuring; at a one-second grain both sides see the same
drift. The medians of the per-burst rates, and of the per-round ratios, are what to compare.
``--old-python``/``--new-python`` run a side in another interpreter (for example a virtual
environment with another JAX version; pass the same OLD_SRC and NEW_SRC to compare the
environments alone). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import dataclasses
import sys
import time
import algd  # trees before 2026-11-30 set an XLA option on import
import numpy as np
import jax
from algd.buffer import Batch
from algd.envs.base import EnvSpec
try:
    from algd.agents import build_agent, default_config
    cfg = default_config(ALGO, env="SafetyPointButton1-v0", utd=10, batch_size=256)
    def update(state, i):
        return agent.update(state, batch, jax.random.fold_in(key, i))
except ImportError:  # trees before the typed state
    from algd.agents import build_agent, resolve_config
    from algd.config import TrainConfig
    cfg = resolve_config(TrainConfig(algo=ALGO, env="SafetyPointButton1-v0", utd=10, batch_size=256))
    def update(state, i):
        return agent.update(state, batch, key, np.uint32(i))
if hasattr(cfg.agent, "critic_kernel"):  # trees with the compiled kernel: their XLA path
    cfg = dataclasses.replace(cfg, agent=dataclasses.replace(cfg.agent, critic_kernel="xla"))
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
    # the end-of-episode flags: one column in older versions, two in newer ones
    *[np.zeros((u, b), np.float32)] * (len(Batch._fields) - 5),
)
key = jax.random.PRNGKey(1)
state, m = update(state, 0)  # compiles; donates state
jax.block_until_ready(m)
step = 1
print("ready", flush=True)
for line in sys.stdin:  # one burst of float(line) seconds per line
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < float(line):
        state, m = update(state, step)
        jax.block_until_ready(m)
        n, step = n + 1, step + 1
    print(n * u / (time.perf_counter() - t0), flush=True)
"""


def _start(src: str, python: str, algo: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(src), "ALGD_COMPILE_CACHE": "off"}
    proc = subprocess.Popen(
        [python, "-c", CHILD.replace("ALGO", repr(algo))],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        sys.exit(proc.communicate()[1].strip())
    return proc


def _burst(proc: subprocess.Popen[str], seconds: float) -> float:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{seconds}\n")
    proc.stdin.flush()
    return round(float(proc.stdout.readline()), 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old_src")
    p.add_argument("new_src")
    p.add_argument("--algo", default="algd")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--old-python", default=sys.executable)
    p.add_argument("--new-python", default=sys.executable)
    ns = p.parse_args()
    procs = {
        "old": _start(ns.old_src, ns.old_python, ns.algo),
        "new": _start(ns.new_src, ns.new_python, ns.algo),
    }
    rates: dict[str, list[float]] = {"old": [], "new": []}
    try:
        for i in range(ns.rounds):
            for name in ("old", "new") if i % 2 == 0 else ("new", "old"):
                rates[name].append(_burst(procs[name], ns.seconds))
    finally:
        for proc in procs.values():
            proc.kill()
    medians = {k: statistics.median(v) for k, v in rates.items()}
    paired = [n / o for o, n in zip(rates["old"], rates["new"], strict=True)]
    print(
        json.dumps(
            {
                "algo": ns.algo,
                "updates_per_s": rates,
                "median": medians,
                "ratio_new_over_old": medians["new"] / medians["old"],
                "median_paired_ratio": statistics.median(paired),
            }
        )
    )


if __name__ == "__main__":
    main()
