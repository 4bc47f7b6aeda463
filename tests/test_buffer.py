from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd.buffer import (
    COLUMNS,
    Batch,
    ReplayBuffers,
    distinct_indices,
    nbytes_for,
    sample_group,
)


def _fill(buf: ReplayBuffers, n: int, start: int = 0) -> None:
    """Transition i of seed s holds i + 1000 s in every column (flags: a pattern of i)."""
    seeds = np.arange(buf.seeds)[:, None] * 1000.0
    for i in range(start, start + n):
        buf.add(
            Batch(
                np.full((buf.seeds, 3), i) + seeds,
                np.full((buf.seeds, 2), i) + seeds,
                np.full(buf.seeds, i) + seeds[:, 0],
                (np.full(buf.seeds, i) + seeds[:, 0]) / 10,
                np.full((buf.seeds, 3), i + 1) + seeds,
                np.full(buf.seeds, i % 4 == 3),
                np.full(buf.seeds, i % 4 == 1),
            )
        )


@pytest.mark.parametrize("on_device", [True, False])
def test_wraps_around_and_keeps_the_newest(on_device: bool) -> None:
    buf = ReplayBuffers(2, 5, 3, 2, on_device)
    _fill(buf, 7)
    assert buf.size == 5 and buf.ptr == 2
    reward = np.asarray(buf.columns.reward)
    assert sorted(reward[0].tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert sorted(reward[1].tolist()) == [1002.0, 1003.0, 1004.0, 1005.0, 1006.0]
    # Slots 0 and 1 were overwritten by transitions 5 and 6.
    assert buf.columns.obs[0, 0, 0] == 5 and buf.columns.next_obs[0, 1, 0] == 7


@pytest.mark.parametrize("on_device", [True, False])
def test_stores_both_end_of_episode_flags(on_device: bool) -> None:
    buf = ReplayBuffers(1, 8, 3, 2, on_device)
    _fill(buf, 8)
    np.testing.assert_array_equal(buf.columns.reward_done[0], [0, 0, 0, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(buf.columns.cost_done[0], [0, 1, 0, 0, 0, 1, 0, 0])
    np.testing.assert_allclose(buf.columns.cost[0], np.arange(8) / 10, rtol=1e-6)


def test_each_seed_samples_its_own_buffer_with_its_own_key() -> None:
    buf = ReplayBuffers(3, 100, 3, 2)
    _fill(buf, 30)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(3)])
    batch = sample_group(buf.columns, jnp.int32(buf.size), (4, 16), keys)
    assert batch.obs.shape == (3, 4, 16, 3) and batch.action.shape == (3, 4, 16, 2)
    assert batch.reward.shape == (3, 4, 16) and batch.cost_done.shape == (3, 4, 16)
    obs = np.asarray(batch.obs)
    np.testing.assert_array_equal(np.asarray(batch.next_obs)[..., 0], obs[..., 0] + 1)
    for s in range(3):  # seed s reads only its own rows, never an unfilled slot
        assert ((obs[s, ..., 0] >= 1000 * s) & (obs[s, ..., 0] < 1000 * s + 30)).all()
    # Different keys draw different rows; the same key the same rows.
    rows = np.asarray(batch.reward) - 1000 * np.arange(3)[:, None, None]
    assert not np.array_equal(rows[0], rows[1])
    again = sample_group(buf.columns, jnp.int32(buf.size), (4, 16), keys)
    np.testing.assert_array_equal(np.asarray(again.reward), np.asarray(batch.reward))


def test_host_buffers_sample_each_seed_with_its_own_generator() -> None:
    buf = ReplayBuffers(3, 100, 3, 2, on_device=False)
    _fill(buf, 30)
    rngs = [np.random.default_rng(s) for s in range(3)]
    batch = buf.sample_host(rngs, (4, 16))
    assert batch.obs.shape == (3, 4, 16, 3) and batch.reward.shape == (3, 4, 16)
    np.testing.assert_array_equal(batch.next_obs[..., 0], batch.obs[..., 0] + 1)
    for s in range(3):  # seed s reads its own rows, drawn by its generator, never unfilled ones
        expected = np.random.default_rng(s).integers(0, 30, size=(4, 16)) + 1000.0 * s
        np.testing.assert_array_equal(batch.reward[s], expected)


def test_minibatches_without_replacement_hold_distinct_rows() -> None:
    """replacement=False (the reference's random.sample): no slot twice in one minibatch, on the
    device (inside the compiled update) and on the host; a minibatch larger than the fill falls
    back to draws with replacement."""
    buf = ReplayBuffers(2, 100, 3, 2)
    _fill(buf, 40)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(2)])
    batch = sample_group(buf.columns, jnp.int32(buf.size), (5, 32), keys, False)
    host = ReplayBuffers(2, 100, 3, 2, on_device=False)
    _fill(host, 40)
    drawn = host.sample_host([np.random.default_rng(s) for s in range(2)], (5, 32), False)
    for rows in (np.asarray(batch.reward), drawn.reward):
        assert rows.shape == (2, 5, 32)
        for s in range(2):
            for minibatch in rows[s] - 1000 * s:
                assert len(set(minibatch.tolist())) == 32
                assert minibatch.min() >= 0 and minibatch.max() < 40
    # With replacement, 32 of 40 rows repeat one almost surely (P(no repeat) < 1e-6).
    again = host.sample_host([np.random.default_rng(0)], (5, 32), True)
    assert any(len(set(m.tolist())) < 32 for m in again.reward[0])
    small = host.sample_host([np.random.default_rng(0)], (1, 64), False)
    assert small.reward.shape == (2, 1, 64)


def test_distinct_indices_are_uniform() -> None:
    """Floyd's algorithm: every slot equally likely (a chi-square bound over 4000 draws of 16 of
    40), all in range, none twice; with fewer slots than the draw, uniform with replacement."""
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    idx = np.asarray(jax.jit(jax.vmap(lambda k: distinct_indices(k, 40, 16)))(keys))
    assert all(len(set(r)) == 16 for r in idx) and idx.min() >= 0 and idx.max() < 40
    counts = np.bincount(idx.ravel(), minlength=40)
    expected = 4000 * 16 / 40
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert chi2 < 80  # 39 degrees of freedom: P(chi2 > 80) < 1e-4
    few = np.asarray(jax.jit(lambda k: distinct_indices(k, 3, 8))(keys[0]))
    assert few.min() >= 0 and few.max() < 3


@pytest.mark.parametrize("on_device", [True, False])
def test_member_state_round_trip(on_device: bool) -> None:
    buf = ReplayBuffers(2, 10, 3, 2, on_device)
    _fill(buf, 13)
    other = ReplayBuffers(2, 10, 3, 2, not on_device)  # a checkpoint moves between the two
    other.load([buf.member_state(0), buf.member_state(1)])
    assert (other.ptr, other.size) == (buf.ptr, buf.size)
    for name in COLUMNS:
        np.testing.assert_array_equal(
            np.asarray(getattr(other.columns, name)), np.asarray(getattr(buf.columns, name))
        )
    one = ReplayBuffers(1, 10, 3, 2)  # seed 1's buffer alone, as a run of that seed holds it
    one.load([buf.member_state(1)])
    np.testing.assert_array_equal(np.asarray(one.columns.obs[0]), np.asarray(buf.columns.obs[1]))


@pytest.mark.parametrize("on_device", [True, False])
def test_keep_drops_seeds(on_device: bool) -> None:
    buf = ReplayBuffers(3, 10, 3, 2, on_device)
    _fill(buf, 4)
    buf.keep([0, 2])
    assert buf.seeds == 2
    assert float(buf.columns.reward[1, 0]) == 2000.0


@pytest.mark.parametrize("on_device", [True, False])
def test_memory_is_fixed_at_construction(on_device: bool) -> None:
    buf = ReplayBuffers(2, 1000, 76, 2, on_device)
    total = sum(getattr(buf.columns, n).nbytes for n in COLUMNS)
    assert total == 2 * nbytes_for(1000, 76, 2) == 2 * 1000 * (2 * 76 + 2 + 4) * 4
