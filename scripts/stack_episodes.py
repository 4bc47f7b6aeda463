"""Record, or compare, fixed-seed episodes of real tasks on two software stacks.

A task's observations, rewards, costs and episode ends under a fixed reset seed and a fixed
sequence of random actions, on the stack this Python runs (``record``), or against a recording
made on another stack (``compare``): the observation layout must be the same, and the values
are compared with the simulators' numerical differences in mind (MuJoCo versions integrate in
a different floating-point order, so trajectories part slowly under contacts).

    python scripts/stack_episodes.py record OUT.npz
    python scripts/stack_episodes.py compare OLD.npz
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

TASKS = (
    "SafetyPointButton1-v0",
    "SafetyPointGoal1-v0",
    "SafetyCarGoal1-v0",
    "SafetyHalfCheetahVelocity-v1",
    "PaperHalfCheetahVelocity-v0",
)
STEPS = 400


def episode(env_id: str) -> dict[str, np.ndarray]:
    from algd.envs import make_env

    env = make_env(env_id)
    rng = np.random.default_rng(0)
    low, high = np.asarray(env.spec.act_low), np.asarray(env.spec.act_high)
    obs, _ = env.reset(7)
    out: dict[str, list] = {"obs": [obs], "reward": [], "cost": [], "end": []}
    for _ in range(STEPS):
        obs, reward, cost, terminated, truncated, _ = env.step(rng.uniform(low, high))
        out["obs"].append(obs)
        out["reward"].append(reward)
        out["cost"].append(cost)
        out["end"].append(2 * terminated + truncated)
        if terminated or truncated:
            break
    env.close()
    return {k: np.asarray(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["record", "compare"])
    parser.add_argument("path")
    args = parser.parse_args()
    if args.mode == "record":
        data = {f"{t}/{k}": v for t in TASKS for k, v in episode(t).items()}
        np.savez_compressed(args.path, **data)
        print(f"wrote {args.path}")
        return
    old = np.load(args.path)
    ok = True
    for t in TASKS:
        new = episode(t)
        same_layout = old[f"{t}/obs"].shape[1:] == new["obs"].shape[1:]
        n = min(len(old[f"{t}/obs"]), len(new["obs"]))
        first = next(
            (i for i in range(n) if not np.allclose(old[f"{t}/obs"][i], new["obs"][i], atol=1e-4)),
            n,
        )
        costs = (old[f"{t}/cost"].sum(), new["cost"].sum())
        print(
            f"{t}: obs {new['obs'].shape[1:]} (same layout: {same_layout}), "
            f"steps {len(old[f'{t}/reward'])} vs {len(new['reward'])}, "
            f"identical to 1e-4 for the first {first} of {n} observations, "
            f"max |obs diff| {np.abs(old[f'{t}/obs'][:n] - new['obs'][:n]).max():.2e}, "
            f"episode cost {costs[0]:.3f} vs {costs[1]:.3f}, "
            f"return {old[f'{t}/reward'].sum():.3f} vs {new['reward'].sum():.3f}"
        )
        ok = ok and same_layout
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
