"""Built-in constrained tasks: pure numpy, thousands of steps per second, for tests and demos.

ToyRing-v0, a 2-D action task whose safe optimum is bimodal:

- action a in [-1, 1]^2; observation [t/T, cos(2 pi t/T), sin(2 pi t/T)] (the episode clock);
- reward r(a) = 1 - 4 (||a|| - 0.75)^2 + 0.3 a_1: highest on a ring of radius 0.75, tilted upward;
- cost c(a) = max(0, 1 - |a_0| / 0.4): a hazard band |a_0| < 0.4 straight through the ring's top.

The unconstrained optimum a ~ (0, 0.79) sits in the middle of the band (cost 1 per step, 100 per
episode). Outside the band the best actions are the two band edges near (+-0.4, 0.63), mirror
images with equal reward: two distinct safe modes. With the default limit (5 per 100-step
episode) a deterministic policy must keep |a_0| >= 0.38 or so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from algd.envs.base import EnvSpec, SafeEnv

RING_RADIUS = 0.75
BAND_HALF_WIDTH = 0.4
TILT = 0.3


def ring_reward(a: np.ndarray) -> np.ndarray:
    """r(a) for actions of shape (..., 2)."""
    radius = np.linalg.norm(a, axis=-1)
    return 1.0 - 4.0 * (radius - RING_RADIUS) ** 2 + TILT * a[..., 1]


def ring_cost(a: np.ndarray) -> np.ndarray:
    """c(a) for actions of shape (..., 2)."""
    return np.maximum(0.0, 1.0 - np.abs(a[..., 0]) / BAND_HALF_WIDTH)


class ToyRing(SafeEnv):
    default_length = 100
    default_limit = 5.0

    def __init__(self, episode_length: int | None = None, cost_limit: float | None = None) -> None:
        length = episode_length or self.default_length
        super().__init__(
            EnvSpec(
                id="ToyRing-v0",
                obs_dim=3,
                act_dim=2,
                act_low=(-1.0, -1.0),
                act_high=(1.0, 1.0),
                max_episode_steps=length,
                cost_limit=self.default_limit if cost_limit is None else float(cost_limit),
                cost_limit_kind="episode",
            )
        )

    def _obs(self, t: int) -> np.ndarray:
        phase = t / self.spec.max_episode_steps
        return np.array([phase, np.cos(2 * np.pi * phase), np.sin(2 * np.pi * phase)], np.float32)

    def _reset(self, seed: int) -> np.ndarray:
        return self._obs(0)

    def _step(self, action: np.ndarray) -> tuple[Any, float, float, bool, bool, dict[str, Any]]:
        reward = float(ring_reward(action))
        cost = float(ring_cost(action))
        # The base class advances the clock after this call; the next observation shows t + 1.
        return self._obs(self._t + 1), reward, cost, False, False, {"cost": cost}

    def get_state(self) -> dict[str, Any]:
        return {"t": self._t}

    def set_state(self, state: dict[str, Any]) -> None:
        self._t = int(state["t"])
