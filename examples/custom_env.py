"""Train algd on your own environment: a Gymnasium env that reports ``info["cost"]``.

Two ways to get such an env:

1. ``HazardPoint-v0`` below: a small task written from scratch. A point on the plane moves
   toward a goal; a hazard disc sits on the straight path and every step inside it costs 1.
2. ``SpeedLimitedHalfCheetah-v0``: a cost added to an existing MuJoCo task by a wrapper (a
   speed limit: every step faster than 1.5 m/s costs 1).

Importing this module registers both with Gymnasium. Then:

    # Python API (this file's main: ALGD and SAC-Lag on HazardPoint-v0, limit 5 per episode)
    python examples/custom_env.py

    # command line: Gymnasium's ``module:EnvId`` form imports the module first
    PYTHONPATH=examples algd train --algo sac_lag --env custom_env:HazardPoint-v0 --cost-limit 5

algd reads the cost from ``info["cost"]`` on every step, takes the episode length from the
registration's ``max_episode_steps`` (``--episode-length`` overrides it), and judges the limit
on the episode's summed cost (``--cost-limit``; 25 when not given).
"""

from __future__ import annotations

import argparse
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces


class HazardPoint(gymnasium.Env):
    """A point at x in [-1, 1]^2 starts near (-0.8, 0) and is rewarded for approaching the goal
    at (0.8, 0): reward = previous distance - new distance. A hazard disc of radius 0.3 sits at
    the origin, right on the straight path: each step inside it costs 1. Actions are velocities
    in [-1, 1]^2 scaled by 0.05 per step. The observation is (x, goal - x, x - hazard)."""

    metadata: dict[str, Any] = {"render_modes": []}
    GOAL = np.array([0.8, 0.0])
    HAZARD, RADIUS = np.array([0.0, 0.0]), 0.3

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (6,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.x = np.zeros(2)

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.x, self.GOAL - self.x, self.x - self.HAZARD]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.x = np.array([-0.8, 0.0]) + self.np_random.uniform(-0.05, 0.05, 2)
        return self._obs(), {}

    def step(self, action: np.ndarray):
        before = np.linalg.norm(self.GOAL - self.x)
        self.x = np.clip(self.x + 0.05 * np.clip(action, -1, 1), -1.0, 1.0)
        after = np.linalg.norm(self.GOAL - self.x)
        cost = float(np.linalg.norm(self.x - self.HAZARD) < self.RADIUS)
        reached = after < 0.05
        reward = float(before - after) + (1.0 if reached else 0.0)
        return self._obs(), reward, bool(reached), False, {"cost": cost}


class SpeedLimit(gymnasium.Wrapper):
    """A cost on an existing env: 1 on every step whose forward speed exceeds ``limit``."""

    def __init__(self, env: gymnasium.Env, limit: float = 1.5) -> None:
        super().__init__(env)
        self.limit = limit

    def step(self, action: np.ndarray):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["cost"] = float(abs(info["x_velocity"]) > self.limit)
        return obs, reward, terminated, truncated, info


def speed_limited_half_cheetah(**kwargs: Any) -> gymnasium.Env:
    return SpeedLimit(gymnasium.make("HalfCheetah-v5", **kwargs))


def register() -> None:
    """Register both envs (once per process)."""
    if "HazardPoint-v0" not in gymnasium.registry:
        gymnasium.register("HazardPoint-v0", entry_point=HazardPoint, max_episode_steps=100)
    if "SpeedLimitedHalfCheetah-v0" not in gymnasium.registry:
        gymnasium.register(
            "SpeedLimitedHalfCheetah-v0",
            entry_point=speed_limited_half_cheetah,
            max_episode_steps=1000,
        )


register()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000, help="environment steps per run")
    parser.add_argument("--out", default="runs/custom_env", help="folder of the two runs")
    args = parser.parse_args()

    from algd.api import make_config, train
    from algd.xla import enable_compilation_cache

    enable_compilation_cache()  # as the CLI does: compiled programs are kept on disk
    for algo in ("algd", "sac_lag"):
        cfg = make_config(
            {
                "algo": algo,
                "env": "HazardPoint-v0",  # registered above, in this process
                "cost_limit": 5.0,
                "total_steps": args.steps,
                "warmup_steps": min(1000, args.steps // 2),
                "learning_starts": min(1000, args.steps // 2),
                "utd": 1,
                "eval_every": max(args.steps // 4, 1),
                "checkpoint_every": args.steps,
                "eval_episodes": 3,
                "agent.critic_hidden": (64, 64),
                "agent.actor_hidden": (64, 64),
                "agent.score_hidden": (64, 64, 64),
                # Rewards here are about 0.03 per step: SAC's default temperature (alpha 1)
                # would swamp them; ALGD has no temperature.
                "agent.alpha_init": 0.01,
                "run_dir": f"{args.out}/{algo}",
                "overwrite": True,
            }
        )
        ev = train(cfg, console=False)["final_eval"]
        print(
            f"{algo} on HazardPoint-v0: return {ev['return_mean']:.2f}, "
            f"cost {ev['cost_mean']:.2f} (limit 5) -> {args.out}/{algo}"
        )


if __name__ == "__main__":
    main()
