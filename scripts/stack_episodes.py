"""Record, or compare, fixed-seed episodes of real tasks on two software stacks.

Each task's observations, rewards, costs and episode ends under fixed reset seeds and fixed
sequences of random actions, on the stack this Python runs (``record``), or against a
recording made on another stack (``compare``). The observation layout and the episode rules
must be the same. Values are compared with the simulators' numerical differences in mind:
MuJoCo versions integrate in a different floating-point order, so one trajectory is identical
for a while and then parts from the other (the first contact, or a lidar ray crossing an
object's edge, amplifies the last bits). So the comparison is also statistical: each stack's
mean episode cost and return over EPISODES episodes, with their standard errors.

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
EPISODES = 20


def episode(env_id: str, seed: int = 0) -> dict[str, np.ndarray]:
    from algd.envs import make_env

    env = make_env(env_id)
    rng = np.random.default_rng(seed)
    low, high = np.asarray(env.spec.act_low), np.asarray(env.spec.act_high)
    obs, _ = env.reset(7 + seed)
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
        for t in TASKS:
            data[f"{t}/totals"] = totals(t)
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
        old_t, new_t = old[f"{t}/totals"], totals(t)
        for i, what in enumerate(("cost", "return")):
            print(
                f"  {EPISODES} episodes' {what}: {mean_se(old_t[:, i])} vs {mean_se(new_t[:, i])}"
            )
        ok = ok and same_layout
    sys.exit(0 if ok else 1)


def totals(env_id: str) -> np.ndarray:
    """(EPISODES, 2): each episode's cost and return, seeds 1..EPISODES."""
    out = []
    for seed in range(1, EPISODES + 1):
        e = episode(env_id, seed)
        out.append((e["cost"].sum(), e["reward"].sum()))
    return np.asarray(out)


def mean_se(x: np.ndarray) -> str:
    return f"{x.mean():.2f} +- {x.std(ddof=1) / np.sqrt(len(x)):.2f}"


if __name__ == "__main__":
    main()
