"""Gymnasium envs that misbehave, registered for the bad-input tests."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class _Base(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}


class NanCostEnv(_Base):
    def step(self, action):
        return np.zeros(2, np.float32), 0.0, False, False, {"cost": float("nan")}


class NanObsEnv(_Base):
    def reset(self, *, seed=None, options=None):
        return np.array([np.nan, 0.0], np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, False, False, {"cost": 0.0}


class NoRenderEnv(_Base):
    """A sound env whose constructor takes no render arguments: it cannot make a video."""

    def __init__(self) -> None:
        super().__init__()

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, False, False, {"cost": 0.0}


def register() -> None:
    for name in ("NanCostEnv", "NanObsEnv", "NoRenderEnv"):
        if f"{name}-v0" not in gym.registry:
            gym.register(f"{name}-v0", entry_point=f"faulty_envs:{name}", max_episode_steps=50)
