"""Preallocated replay ring buffer with a cost column.

Each transition carries two end-of-episode flags: ``reward_done`` stops the reward critic's
bootstrap, ``cost_done`` the cost critics' (``1 - done`` in the targets). What sets them is the
run's ``bootstrap`` setting (``train.episode_end``): with ``terminated`` both are the env's
``terminated`` (a true end of the MDP; a time-limit truncation still bootstraps); with
``reference`` they follow the authors' samplers.

Memory is fixed at construction: ``capacity * (2 * obs_dim + act_dim + 4) * 4`` bytes
(float32 columns; e.g. 1e6 transitions of SafetyPointButton1 (76 + 76 + 2 + 4 floats) = 632 MB).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class Batch(NamedTuple):
    """A minibatch; leading dims are (..., batch). Fields are numpy arrays on the host and jax
    arrays inside compiled updates, hence ``Any``."""

    obs: Any  # (..., obs_dim)
    action: Any  # (..., act_dim)
    reward: Any  # (...,)
    cost: Any  # (...,)
    next_obs: Any  # (..., obs_dim)
    reward_done: Any  # (...,) 1.0 where the reward critic's target does not bootstrap
    cost_done: Any  # (...,) 1.0 where the cost critics' targets do not bootstrap


COLUMNS = Batch._fields


class ReplayBuffer:
    def __init__(self, capacity: int, obs_dim: int, act_dim: int) -> None:
        self.capacity = int(capacity)
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        c = self.capacity
        self.obs = np.zeros((c, obs_dim), np.float32)
        self.action = np.zeros((c, act_dim), np.float32)
        self.reward = np.zeros((c,), np.float32)
        self.cost = np.zeros((c,), np.float32)
        self.next_obs = np.zeros((c, obs_dim), np.float32)
        self.reward_done = np.zeros((c,), np.float32)
        self.cost_done = np.zeros((c,), np.float32)
        self.ptr = 0  # next slot to write
        self.size = 0

    @staticmethod
    def nbytes_for(capacity: int, obs_dim: int, act_dim: int) -> int:
        return int(capacity) * (2 * obs_dim + act_dim + 4) * 4

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: float,
        cost: float,
        next_obs: np.ndarray,
        reward_done: bool,
        cost_done: bool,
    ) -> None:
        i = self.ptr
        self.obs[i] = obs
        self.action[i] = action
        self.reward[i] = reward
        self.cost[i] = cost
        self.next_obs[i] = next_obs
        self.reward_done[i] = float(reward_done)
        self.cost_done[i] = float(cost_done)
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> Batch:
        """Uniform sample with replacement; every column gets leading dims ``shape``."""
        idx = rng.integers(0, self.size, size=shape)
        return Batch(*(getattr(self, name)[idx] for name in COLUMNS))

    def state_dict(self) -> dict[str, np.ndarray]:
        """The filled part, oldest first is not needed: slots are stored as they lie."""
        n = self.size
        out = {name: getattr(self, name)[:n] for name in COLUMNS}
        out["ptr_size"] = np.array([self.ptr, self.size], np.int64)
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        ptr, size = (int(v) for v in state["ptr_size"])
        if size > self.capacity or not (0 <= ptr < max(self.capacity, 1)):
            raise ValueError(f"buffer of size {size} does not fit capacity {self.capacity}")
        for name in COLUMNS:
            getattr(self, name)[:size] = state[name]
        self.ptr, self.size = ptr, size
