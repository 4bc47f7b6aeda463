"""How much a run's behaviour policy still varies its actions: load the run's latest policy,
play one episode with sampled actions (as in training), and at every 25th state draw 256
actions for that state. Prints, per action dimension, the samples' standard deviation (mean
and lowest over the states), the fraction of samples within 1% of the box's edge, and the
episode's return and cost.

    python scripts/action_spread.py RUN_DIR [RUN_DIR ...]

A policy whose samples all sit at the box's edge (fraction near 1, spread near 0) no longer
explores: its training episodes repeat one trajectory.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from algd import load_policy
from algd.envs import env_for

SAMPLES, EVERY = 256, 25


def spread(run_dir: str) -> dict[str, Any]:
    """The samples' std per action dimension at each visited state (``std``, states x dims), the
    fraction of samples at the box's edge (``edge``), and the episode's ``return`` and ``cost``."""
    policy = load_policy(run_dir, seed=0)
    env = env_for(policy.cfg)
    obs, _ = env.reset(policy.cfg.seed)
    low, high = policy.action_low, policy.action_high
    half = (high - low) / 2  # within 1% of the half-width of either bound is at the edge
    stds, edge, ret, cost = [], [], 0.0, 0.0
    try:
        for t in range(env.spec.max_episode_steps):
            if t % EVERY == 0:
                draws = policy.act(np.repeat(obs[None], SAMPLES, 0), deterministic=False)
                stds.append(draws.std(0))
                edge.append(np.mean(np.minimum(draws - low, high - draws) < 0.01 * half))
            obs, r, c, terminated, truncated, _ = env.step(policy.act(obs, deterministic=False))
            ret, cost = ret + r, cost + c
            if terminated or truncated:
                break
    finally:
        env.close()
    return {"std": np.array(stds), "edge": float(np.mean(edge)), "return": ret, "cost": cost}


def line(run_dir: str, m: dict[str, Any]) -> str:
    s = m["std"]
    return (
        f"{run_dir}: sample std per dim {np.round(s.mean(0), 3)} (lowest {np.round(s.min(0), 3)}),"
        f" at the edge {m['edge']:.2f}, episode return {m['return']:.2f} cost {m['cost']:.0f}"
    )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for run in sys.argv[1:]:
        print(line(run, spread(run)))
