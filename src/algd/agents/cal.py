"""CAL, Conservative Augmented Lagrangian (Wu et al., ICLR 2024).

SAC-Lag with the ensemble upper bound Qc_bar = mean + k std (k = 1, as the authors ran it) and
a rectified multiplier in the actor loss: (lambda - rect) Qc_bar(s, a) with
rect = min(c * mean(h - Qc_bar(s, a_replay)), lambda), c = 10 (ALGD_METHOD section 8).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from algd.agents.base import TrainState
from algd.agents.sac_family import SACFamily
from algd.buffer import Batch


def rectified_multiplier(lam: jax.Array, qc_bar_replay: jax.Array, h: float, c: float) -> jax.Array:
    """lambda - min(c * mean(h - Qc_bar(s, a_replay)), lambda)."""
    rect = jnp.minimum(c * jnp.mean(h - qc_bar_replay), lam)
    return lam - rect


class CAL(SACFamily):
    def penalty(self, state: TrainState, b: Batch, action: jax.Array) -> jax.Array:
        replay = self.qc_bar(state.qc, b.obs, b.action)
        weight = rectified_multiplier(state.mult.lam, replay, self.h, self.a.lagrangian.cal_c)
        return jax.lax.stop_gradient(weight) * self.qc_bar(state.qc, b.obs, action)
