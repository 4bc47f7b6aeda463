"""SAC-Lag: SAC with a cost critic and a Lagrange multiplier; penalty lambda * Qc(s, a)."""

from __future__ import annotations

import jax

from algd.agents.base import TrainState
from algd.agents.sac_family import SACFamily
from algd.buffer import Batch


class SACLag(SACFamily):
    def penalty(self, state: TrainState, b: Batch, action: jax.Array) -> jax.Array:
        return jax.lax.stop_gradient(state.mult.lam) * self.qc_bar(state.qc, b.obs, action)
