"""Side-by-side update throughput of two source trees.

    python scripts/ab_speed.py OLD_SRC NEW_SRC [--algo algd] [--rounds 20] [--seconds 1]
    python scripts/ab_speed.py OLD_SRC NEW_SRC --processes [--rounds 4] [--seconds 6]
                               [--old-python PY] [--new-python PY]

OLD_SRC and NEW_SRC are ``src`` folders, for example of a ``git worktree`` of an older commit
and of the working tree. Each side builds the agent at reference settings on
SafetyPointButton1-v0's shapes (obs 76, action 2, batch 256, UTD 10) with a fixed synthetic
batch, compiles the fused update and counts gradient steps per second.

Timings on a shared virtual machine drift by 10-20% over minutes, more than the changes worth
measuring. The default mode therefore runs both trees in ONE process (OLD_SRC's package is
copied to a temporary folder as ``algd_ab_old``, its imports rewritten) and alternates short
bursts of ``--seconds`` between them for ``--rounds`` rounds, so both sides see the same drift
at a one-second grain; the medians of the per-burst rates are what to compare.
``--processes`` runs one fresh process per side and round instead (needed to compare
interpreters or JAX versions: ``--old-python``/``--new-python``; pass the same OLD_SRC and
NEW_SRC to compare the environments alone). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

SETUP = r"""
import time
import numpy as np
import jax

def make(pkg, algo):
    agents = __import__(pkg + ".agents", fromlist=["build_agent"])
    config = __import__(pkg + ".config", fromlist=["TrainConfig"])
    buffer = __import__(pkg + ".buffer", fromlist=["Batch"])
    base = __import__(pkg + ".envs.base", fromlist=["EnvSpec"])
    cfg = agents.resolve_config(
        config.TrainConfig(algo=algo, env="SafetyPointButton1-v0", utd=10, batch_size=256)
    )
    spec = base.EnvSpec("shapes", 76, 2, (-1.0, -1.0), (1.0, 1.0), 1000, 25.0, "episode")
    agent = agents.build_agent(cfg, spec)
    state = agent.init(jax.random.PRNGKey(0))
    r = np.random.default_rng(0)
    u, b = 10, 256
    batch = buffer.Batch(
        r.standard_normal((u, b, 76), np.float32),
        r.uniform(-1, 1, (u, b, 2)).astype(np.float32),
        r.standard_normal((u, b)).astype(np.float32),
        (r.uniform(size=(u, b)) < 0.1).astype(np.float32),
        r.standard_normal((u, b, 76), np.float32),
        np.zeros((u, b), np.float32),
    )
    key = jax.random.PRNGKey(1)
    state, m = agent.update(state, batch, key, np.uint32(0))  # compiles; donates state
    jax.block_until_ready(m)
    box = {"state": state, "n": 1}

    def burst(seconds):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            box["state"], m = agent.update(box["state"], batch, key, np.uint32(box["n"]))
            jax.block_until_ready(m)
            n += 1
            box["n"] += 1
        return n * u / (time.perf_counter() - t0)

    return burst
"""

ONE_PROCESS = SETUP + r"""
import json
old, new = make("algd_ab_old", ALGO), make("algd", ALGO)
rates = {"old": [], "new": []}
for i in range(ROUNDS):
    order = [("old", old), ("new", new)] if i % 2 == 0 else [("new", new), ("old", old)]
    for name, burst in order:
        rates[name].append(round(burst(SECONDS), 2))
print(json.dumps(rates))
"""

PER_PROCESS = SETUP + r"""
print(make("algd", ALGO)(SECONDS))
"""


def _fill(code: str, ns: argparse.Namespace) -> str:
    return (
        code.replace("ALGO", repr(ns.algo))
        .replace("SECONDS", repr(ns.seconds))
        .replace("ROUNDS", repr(ns.rounds))
    )


def _renamed_copy(src: str, dest: str) -> None:
    """Copy src/algd to dest/algd_ab_old with every ``algd`` import rewritten."""
    target = os.path.join(dest, "algd_ab_old")
    shutil.copytree(os.path.join(src, "algd"), target)
    pattern = re.compile(r"\b(from|import) algd\b")
    for root, _, files in os.walk(target):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                with open(path) as fh:
                    text = fh.read()
                with open(path, "w") as fh:
                    fh.write(pattern.sub(r"\1 algd_ab_old", text))


def _one_process(ns: argparse.Namespace) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        _renamed_copy(ns.old_src, tmp)
        path = os.pathsep.join([os.path.abspath(ns.new_src), tmp])
        env = {**os.environ, "PYTHONPATH": path, "ALGD_COMPILE_CACHE": "off"}
        out = subprocess.run(
            [ns.new_python, "-c", _fill(ONE_PROCESS, ns)], env=env, capture_output=True, text=True
        )
    if out.returncode:
        sys.exit(out.stderr.strip())
    rates: dict[str, list[float]] = json.loads(out.stdout.strip().splitlines()[-1])
    return rates


def _per_process(ns: argparse.Namespace) -> dict[str, list[float]]:
    code = _fill(PER_PROCESS, ns)
    trees = {"old": (ns.old_src, ns.old_python), "new": (ns.new_src, ns.new_python)}
    rates: dict[str, list[float]] = {k: [] for k in trees}
    for _ in range(ns.rounds):
        for name, (src, python) in trees.items():
            env = {**os.environ, "PYTHONPATH": os.path.abspath(src), "ALGD_COMPILE_CACHE": "off"}
            out = subprocess.run(
                [python, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            rates[name].append(round(float(out.stdout.strip().splitlines()[-1]), 2))
    return rates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old_src")
    p.add_argument("new_src")
    p.add_argument("--algo", default="algd")
    p.add_argument("--processes", action="store_true", help="one process per side and round")
    p.add_argument("--rounds", type=int, default=None, help="default 20, or 4 with --processes")
    p.add_argument("--seconds", type=float, default=None, help="default 1, or 6 with --processes")
    p.add_argument("--old-python", default=sys.executable)
    p.add_argument("--new-python", default=sys.executable)
    ns = p.parse_args()
    if ns.rounds is None:
        ns.rounds = 4 if ns.processes else 20
    if ns.seconds is None:
        ns.seconds = 6.0 if ns.processes else 1.0
    if not ns.processes and ns.old_python != ns.new_python:
        p.error("--old-python/--new-python need --processes")
    rates = _per_process(ns) if ns.processes else _one_process(ns)
    medians = {k: statistics.median(v) for k, v in rates.items()}
    paired = [n / o for o, n in zip(rates["old"], rates["new"])]
    print(
        json.dumps(
            {
                "algo": ns.algo,
                "mode": "processes" if ns.processes else "one process",
                "updates_per_s": rates,
                "median": medians,
                "ratio_new_over_old": medians["new"] / medians["old"],
                "median_paired_ratio": statistics.median(paired),
            }
        )
    )


if __name__ == "__main__":
    main()
