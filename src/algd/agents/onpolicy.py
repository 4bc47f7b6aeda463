"""What every on-policy algorithm supplies to the on-policy loop
(:class:`algd.training.onpolicy.OnPolicyLoop`): a rollout capacity, the gradient steps of one
update, and its pure update on one rollout; the group's compiled update is shared."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from algd.agents.base import Agent, Metrics
from algd.buffer import Rollout


class OnPolicyAgent(Agent):
    """Base class of the on-policy algorithms (PPO-Lag)."""

    capacity: int
    """Rows one rollout holds (a rollout is padded to it, so every length shares one
    program)."""

    def grad_steps(self, n: int) -> int:
        """Gradient steps of one update on a rollout of ``n`` steps."""
        raise NotImplementedError

    def update_rollout(self, state: Any, r: Rollout, n: jax.Array, key: jax.Array) -> Any:
        """One update from a rollout padded to ``capacity`` rows, ``n`` of them real (pure):
        -> (state, metrics)."""
        raise NotImplementedError

    def update_group(
        self, state: Any, rollouts: Rollout, n: ArrayLike, k_update: ArrayLike, t: ArrayLike
    ) -> tuple[Any, Metrics]:
        """Every seed's update on its own rollout (leading seed axis S; ``n`` real rows each) in
        one compiled call, vmapped over the seeds: seed i draws from fold_in(k_update[i], t).
        Donates ``state``."""
        return _compiled_update_group(self, state, rollouts, n, k_update, t)


@partial(jax.jit, static_argnums=0, donate_argnums=1)
def _compiled_update_group(
    agent: OnPolicyAgent,
    state: Any,
    rollouts: Rollout,
    n: jax.Array,
    k_update: jax.Array,
    t: jax.Array,
) -> tuple[Any, Metrics]:
    def one(s: Any, r: Rollout, k: jax.Array) -> Any:
        return agent.update_rollout(s, r, n, jax.random.fold_in(k, t))

    return jax.vmap(one)(state, jax.tree_util.tree_map(jnp.asarray, rollouts), k_update)
