from __future__ import annotations

import numpy as np

from algd.buffer import ReplayBuffer


def _fill(buf: ReplayBuffer, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        buf.add(
            np.full(3, i),
            np.full(2, i),
            float(i),
            float(i) / 10,
            np.full(3, i + 1),
            i % 4 == 3,
            i % 4 == 1,
        )


def test_wraps_around_and_keeps_the_newest() -> None:
    buf = ReplayBuffer(5, 3, 2)
    _fill(buf, 7)
    assert buf.size == 5 and buf.ptr == 2
    assert sorted(buf.reward.tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]
    # Slots 0 and 1 were overwritten by transitions 5 and 6.
    assert buf.obs[0, 0] == 5 and buf.next_obs[1, 0] == 7


def test_stores_both_end_of_episode_flags() -> None:
    buf = ReplayBuffer(8, 3, 2)
    _fill(buf, 8)
    np.testing.assert_array_equal(buf.reward_done, [0, 0, 0, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(buf.cost_done, [0, 1, 0, 0, 0, 1, 0, 0])
    np.testing.assert_allclose(buf.cost, np.arange(8) / 10, rtol=1e-6)


def test_sample_shapes_and_consistency() -> None:
    buf = ReplayBuffer(100, 3, 2)
    _fill(buf, 30)
    batch = buf.sample(np.random.default_rng(0), (4, 16))
    assert batch.obs.shape == (4, 16, 3) and batch.action.shape == (4, 16, 2)
    assert batch.reward.shape == (4, 16) and batch.cost_done.shape == (4, 16)
    np.testing.assert_array_equal(batch.next_obs[..., 0], batch.obs[..., 0] + 1)
    assert batch.reward.max() < 30  # never reads unfilled slots


def test_state_dict_round_trip() -> None:
    buf = ReplayBuffer(10, 3, 2)
    _fill(buf, 13)
    other = ReplayBuffer(10, 3, 2)
    other.load_state_dict(buf.state_dict())
    assert (other.ptr, other.size) == (buf.ptr, buf.size)
    for name in ("obs", "action", "reward", "cost", "next_obs", "reward_done", "cost_done"):
        np.testing.assert_array_equal(getattr(other, name), getattr(buf, name))


def test_memory_is_fixed_at_construction() -> None:
    buf = ReplayBuffer(1000, 76, 2)
    total = sum(
        getattr(buf, n).nbytes
        for n in ("obs", "action", "reward", "cost", "next_obs", "reward_done", "cost_done")
    )
    assert total == ReplayBuffer.nbytes_for(1000, 76, 2) == 1000 * (2 * 76 + 2 + 4) * 4
