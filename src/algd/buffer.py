"""Replay ring buffers with a cost column, one per seed of a training group, in host memory
(numpy) or on the device (jax arrays: the accelerator's memory on a GPU).

Each transition carries two end-of-episode flags: ``reward_done`` stops the reward critic's
bootstrap, ``cost_done`` the cost critics' (``1 - done`` in the targets). What sets them is the
run's ``bootstrap`` setting (``train.episode_end``): with ``terminated`` both are the env's
``terminated`` (a true end of the MDP; a time-limit truncation still bootstraps); with
``reference`` they follow the authors' samplers.

Every seed of a group stores one transition per environment step, so all its buffers share one
write position and fill level, kept on the host. On the device, writing (:func:`write`) and
sampling (:func:`sample`) are pure functions of the columns: the loop writes with one compiled
call per environment step (the only per-step traffic to the device: the S new transitions) and
samples inside the compiled update, so no minibatch crosses from the host. On the host (the
default on a CPU, where XLA's in-place write of one row still costs time in proportion to the
capacity: 0.5 ms per 4 MB column measured, against O(1) for numpy), each seed samples with its
own numpy generator and the minibatches go to the update.

Memory is fixed at construction: ``capacity * (2 * obs_dim + act_dim + 4) * 4`` bytes per seed
(float32 columns; e.g. 1e6 transitions of SafetyPointButton1 (76 + 76 + 2 + 4 floats) = 632 MB).
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Batch(NamedTuple):
    """Transitions; leading dims are (..., batch). Fields are numpy arrays on the host and jax
    arrays on the device, hence ``Any``."""

    obs: Any  # (..., obs_dim)
    action: Any  # (..., act_dim)
    reward: Any  # (...,)
    cost: Any  # (...,)
    next_obs: Any  # (..., obs_dim)
    reward_done: Any  # (...,) 1.0 where the reward critic's target does not bootstrap
    cost_done: Any  # (...,) 1.0 where the cost critics' targets do not bootstrap


COLUMNS = Batch._fields


def nbytes_for(capacity: int, obs_dim: int, act_dim: int) -> int:
    """Bytes of one seed's buffer."""
    return int(capacity) * (2 * obs_dim + act_dim + 4) * 4


def columns_shape(capacity: int, obs_dim: int, act_dim: int) -> Batch:
    """The per-column trailing shapes of one buffer."""
    c = int(capacity)
    return Batch((c, obs_dim), (c, act_dim), (c,), (c,), (c, obs_dim), (c,), (c,))


def write(columns: Batch, ptr: jax.Array, transition: Batch) -> Batch:
    """One buffer's columns with ``transition`` (one row per column) stored at slot ``ptr``."""
    return Batch(*(col.at[ptr].set(x) for col, x in zip(columns, transition)))


def sample(
    columns: Batch, size: jax.Array, key: jax.Array, shape: tuple[int, ...], replace: bool = True
) -> Batch:
    """Uniform sample from the first ``size`` slots; every column gets leading dims ``shape``.
    Without ``replace``, each minibatch (the last dim of ``shape``) holds distinct slots."""
    if replace:
        idx = jax.random.randint(key, shape, 0, size)
    else:
        keys = jax.random.split(key, int(np.prod(shape[:-1], dtype=int)))
        idx = jax.vmap(lambda k: distinct_indices(k, size, shape[-1]))(keys).reshape(shape)
    return Batch(*(col[idx] for col in columns))


def distinct_indices(key: jax.Array, n: jax.Array, k: int) -> jax.Array:
    """k distinct integers drawn uniformly from [0, n) (Floyd's algorithm: step j in n-k..n-1
    takes a uniform t in [0, j] unless it was taken already, then j itself), (k,); where
    n < k, k uniform draws with replacement instead."""
    u = jax.random.uniform(key, (k,))
    n = jnp.asarray(n, jnp.int32)

    def step(i: jax.Array, taken: jax.Array) -> jax.Array:
        j = n - k + i
        t = jnp.minimum((u[i] * (j + 1).astype(jnp.float32)).astype(jnp.int32), j)
        return taken.at[i].set(jnp.where(jnp.any(taken == t), j, t))

    distinct = jax.lax.fori_loop(0, k, step, jnp.full((k,), -1, jnp.int32))
    with_replacement = jnp.minimum((u * n.astype(jnp.float32)).astype(jnp.int32), n - 1)
    return jnp.where(n >= k, distinct, with_replacement)


# The S seeds' writes of one environment step in one call; the old columns are donated, so the
# write happens in place.
_write_group = jax.jit(jax.vmap(write, in_axes=(0, None, 0)), donate_argnums=0)


class ReplayBuffers:
    """The replay buffers of S seeds: columns of shape (S, capacity, ...), on the device
    (``on_device``) or in host memory, and the shared write position and fill level on the
    host."""

    def __init__(
        self, seeds: int, capacity: int, obs_dim: int, act_dim: int, on_device: bool = True
    ) -> None:
        self.seeds, self.capacity = int(seeds), int(capacity)
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.on_device = on_device
        zeros = jnp.zeros if on_device else np.zeros
        shapes = columns_shape(capacity, obs_dim, act_dim)
        self.columns = Batch(*(zeros((self.seeds, *s), np.float32) for s in shapes))
        self.ptr = 0  # next slot to write
        self.size = 0

    def add(self, transitions: Batch) -> None:
        """Store one transition per seed (host arrays with a leading seed axis)."""
        rows = Batch(*(np.asarray(x, np.float32) for x in transitions))
        if self.on_device:
            self.columns = _write_group(self.columns, np.int32(self.ptr), rows)
        else:
            for col, x in zip(self.columns, rows):
                col[:, self.ptr] = x
        self.ptr = (self.ptr + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample_host(
        self, rngs: list[np.random.Generator], shape: tuple[int, ...], replace: bool = True
    ) -> Batch:
        """Host buffers: seed i's minibatches drawn with ``rngs[i]``, leading dims (S, *shape);
        without ``replace`` each minibatch (the last dim of ``shape``) holds distinct slots
        (with replacement while the buffer holds fewer)."""
        idx = np.stack([self._indices(rng, shape, replace) for rng in rngs])
        # One gather along the first axis of the (S * capacity, ...) view: numpy's fast path.
        flat = idx + self.capacity * np.arange(self.seeds).reshape(-1, *([1] * len(shape)))
        return Batch(*(col.reshape(-1, *col.shape[2:])[flat] for col in self.columns))

    def _indices(self, rng: np.random.Generator, shape: tuple[int, ...], replace: bool):
        if replace or self.size < shape[-1]:
            return rng.integers(0, self.size, size=shape)
        rows = int(np.prod(shape[:-1], dtype=int))
        drawn = [rng.choice(self.size, shape[-1], replace=False) for _ in range(rows)]
        return np.stack(drawn).reshape(shape)

    def member_state(self, i: int) -> dict[str, np.ndarray]:
        """Seed i's filled slots (as they lie in the ring) and the position, for a checkpoint."""
        out = {name: np.asarray(col[i, : self.size]) for name, col in zip(COLUMNS, self.columns)}
        out["ptr_size"] = np.array([self.ptr, self.size], np.int64)
        return out

    def load(self, members: list[dict[str, np.ndarray]]) -> None:
        """Fill every seed's buffer from :meth:`member_state` dicts (one per seed, equal
        positions)."""
        if len(members) != self.seeds:
            raise ValueError(f"{len(members)} buffers for a group of {self.seeds}")
        positions = {tuple(int(v) for v in m["ptr_size"]) for m in members}
        if len(positions) != 1:
            raise ValueError("the seeds' buffers are at different positions")
        ((ptr, size),) = positions
        if size > self.capacity or not (0 <= ptr < max(self.capacity, 1)):
            raise ValueError(f"buffer of size {size} does not fit capacity {self.capacity}")
        filled = []
        for name, shape in zip(COLUMNS, columns_shape(self.capacity, self.obs_dim, self.act_dim)):
            col = np.zeros((self.seeds, *shape), np.float32)
            for i, m in enumerate(members):
                col[i, :size] = m[name]
            filled.append(jnp.asarray(col) if self.on_device else col)
        self.columns = Batch(*filled)
        self.ptr, self.size = ptr, size

    def keep(self, members: list[int]) -> None:
        """Drop every seed's buffer but ``members`` (in that order)."""
        idx = np.asarray(members)
        self.columns = Batch(*(col[idx] for col in self.columns))
        self.seeds = len(members)


@partial(jax.jit, static_argnums=(2, 4))
def sample_group(
    columns: Batch, size: jax.Array, shape: tuple[int, ...], keys: jax.Array, replace: bool = True
) -> Batch:
    """Each seed's sample from its own buffer with its own key (for tests and benchmarks; the
    training update samples inside its own compiled call)."""
    return jax.vmap(lambda c, k: sample(c, size, k, shape, replace))(columns, keys)


# --- on-policy rollouts -------------------------------------------------------------------------


class Rollout(NamedTuple):
    """One seed's on-policy transitions in the order they happened; leading dim (steps,)."""

    obs: Any  # (T, obs_dim)
    action: Any  # (T, act_dim)
    reward: Any  # (T,)
    cost: Any  # (T,)
    next_obs: Any  # (T, obs_dim)
    done: Any  # (T,) 1.0 where the values do not bootstrap (the reward critic's flag)
    boundary: Any  # (T,) 1.0 where the advantage recursion stops: done, or the episode ended
    discount: Any  # (T,) gamma_c ** (the step's index in its episode)


ROLLOUT_COLUMNS = Rollout._fields


class RolloutBuffers:
    """The rollouts of S seeds in host memory: columns (S, capacity, ...), filled in step
    order from index 0 and emptied after each update; the fill level is shared."""

    def __init__(self, seeds: int, capacity: int, obs_dim: int, act_dim: int) -> None:
        self.seeds, self.capacity = int(seeds), int(capacity)
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.on_device = False
        self.columns = Rollout(*(np.zeros((self.seeds, *s), np.float32) for s in self._shapes()))
        self.size = 0

    def _shapes(self) -> Rollout:
        c = self.capacity
        return Rollout(
            (c, self.obs_dim), (c, self.act_dim), (c,), (c,), (c, self.obs_dim), (c,), (c,), (c,)
        )

    @property
    def full(self) -> bool:
        return self.size >= self.capacity

    def add(self, transitions: Rollout) -> None:
        """Append one transition per seed (host arrays with a leading seed axis)."""
        if self.full:
            raise ValueError("the rollout is full")
        for col, x in zip(self.columns, transitions):
            col[:, self.size] = np.asarray(x, np.float32)
        self.size += 1

    def clear(self) -> None:
        self.size = 0

    def member_state(self, i: int) -> dict[str, np.ndarray]:
        """Seed i's transitions so far, for a checkpoint."""
        out = {n: np.asarray(c[i, : self.size]) for n, c in zip(ROLLOUT_COLUMNS, self.columns)}
        out["ptr_size"] = np.array([self.size, self.size], np.int64)
        return out

    def load(self, members: list[dict[str, np.ndarray]]) -> None:
        """Refill from :meth:`member_state` dicts (one per seed, equal sizes)."""
        if len(members) != self.seeds:
            raise ValueError(f"{len(members)} rollouts for a group of {self.seeds}")
        sizes = {int(m["ptr_size"][1]) for m in members}
        if len(sizes) != 1:
            raise ValueError("the seeds' rollouts have different lengths")
        (size,) = sizes
        if size > self.capacity:
            raise ValueError(f"rollout of {size} steps does not fit capacity {self.capacity}")
        for name, col in zip(ROLLOUT_COLUMNS, self.columns):
            col[:] = 0.0
            for i, m in enumerate(members):
                col[i, :size] = m[name]
        self.size = size

    def keep(self, members: list[int]) -> None:
        """Drop every seed's rollout but ``members`` (in that order)."""
        idx = np.asarray(members)
        self.columns = Rollout(*(col[idx] for col in self.columns))
        self.seeds = len(members)


def rollout_nbytes(capacity: int, obs_dim: int, act_dim: int) -> int:
    """Bytes of one seed's rollout storage."""
    return int(capacity) * (2 * obs_dim + act_dim + 5) * 4
