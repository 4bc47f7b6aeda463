"""SAC-Lag: SAC with a cost critic and a Lagrange multiplier; penalty lambda * Qc(s, a)."""

from __future__ import annotations

import jax

from algd.agents.base import State
from algd.agents.sac_family import SACFamily
from algd.buffer import Batch


class SACLag(SACFamily):
    name = "sac_lag"

    def penalty(self, state: State, b: Batch, obs: jax.Array, action: jax.Array) -> jax.Array:
        return jax.lax.stop_gradient(self.lam(state)) * self.qc_bar(state["qc"], obs, action)
