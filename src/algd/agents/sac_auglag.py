"""SAC-AugLag: SAC whose actor penalty is the augmented-Lagrangian term
(1 / (2 rho)) (max(0, lambda + rho (Qc - h))^2 - lambda^2), the same code as ALGD's energy.

It separates what the augmented Lagrangian contributes from what the diffusion policy does.
"""

from __future__ import annotations

import jax

from algd.agents.base import State
from algd.agents.sac_family import SACFamily
from algd.buffer import Batch
from algd.lagrangian import augmented_penalty


class SACAugLagQuadratic(SACFamily):
    name = "sac_auglag_quadratic"

    def penalty(self, state: State, b: Batch, obs: jax.Array, action: jax.Array) -> jax.Array:
        lam = jax.lax.stop_gradient(self.lam(state))
        return augmented_penalty(self.qc_bar(state["qc"], obs, action), lam, self.h, self.a.rho)
