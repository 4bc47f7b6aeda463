"""SAC-AugLag: SAC whose actor penalty is the augmented-Lagrangian term
(1 / (2 rho)) (max(0, lambda + rho (Qc - h))^2 - lambda^2), the same code as ALGD's energy.

It separates what the augmented Lagrangian contributes from what the diffusion policy does.
"""

from __future__ import annotations

import jax

from algd.agents.base import TrainState
from algd.agents.sac_family import SACFamily
from algd.buffer import Batch
from algd.lagrangian import augmented_penalty


class SACAugLagQuadratic(SACFamily):
    def penalty(self, state: TrainState, b: Batch, action: jax.Array) -> jax.Array:
        lam = jax.lax.stop_gradient(state.mult.lam)
        return augmented_penalty(
            self.qc_bar(state.qc, b.obs, action), lam, self.h, self.a.lagrangian.rho
        )
