"""Host-side standard-normal noise for single-state actions, drawn in seeded blocks.

Drawing randomness inside the compiled action costs more than the action itself on a CPU
(threefry's fold_in and normal draws are tens of small XLA ops: ~40 us of a ~100 us action).
Instead the loop asks for the noise of step t here: block t // BLOCK is generated once from
(seed, stream, *index, block) with numpy, so the noise of every step is a pure function of the
run seed and t. Resumed runs regenerate exactly the same noise.
"""

from __future__ import annotations

import numpy as np

BLOCK = 1024


class NoiseStream:
    def __init__(self, shape: tuple[int, ...], seed: int, stream: int, *index: int) -> None:
        self.shape = tuple(shape)
        self.key = (seed, stream, *index)
        self._block = -1
        self._data = np.zeros((BLOCK, *self.shape), np.float32)

    def __call__(self, t: int) -> np.ndarray:
        block, offset = divmod(int(t), BLOCK)
        if block != self._block:
            rng = np.random.default_rng([*self.key, block])
            self._data = rng.standard_normal((BLOCK, *self.shape), dtype=np.float32)
            self._block = block
        return self._data[offset]
