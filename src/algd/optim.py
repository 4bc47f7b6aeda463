"""Adam computed as one pass per parameter.

``optax.adam`` builds the step from separate tree maps (first moment, second moment, bias
correction and scaling, learning rate, apply), which XLA's CPU backend runs as several passes
over every parameter, with the update tensor written out and read back. :class:`Adam` keeps
optax's state (``optax.adam(lr).init``: same layout in checkpoints) and evaluates exactly the
same expressions, in the same order, per parameter in one function, which XLA fuses into fewer
passes. ``tests/test_networks.py`` checks that both give bit-identical parameters and state.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax


class Adam:
    """Adam (optax's defaults: b1 0.9, b2 0.999, eps 1e-8, eps_root 0) at a constant rate."""

    def __init__(self, learning_rate: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
        self.lr, self.b1, self.b2, self.eps = learning_rate, b1, b2, eps
        self.tx = optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)

    def init(self, params: Any) -> Any:
        return self.tx.init(params)

    def step(self, params: Any, grads: Any, state: Any) -> tuple[Any, Any]:
        """One Adam step: returns (new params, new optimiser state)."""
        adam, *rest = state
        count = optax.safe_increment(adam.count)
        b1, b2, eps, lr = self.b1, self.b2, self.eps, self.lr
        c1 = 1 - b1**count
        c2 = 1 - b2**count

        def leaf(p: jax.Array, g: jax.Array, m: jax.Array, v: jax.Array) -> tuple[Any, ...]:
            m = (1 - b1) * (g**1) + b1 * m
            v = (1 - b2) * (g**2) + b2 * v
            u = (m / c1.astype(m.dtype)) / (jnp.sqrt(v / c2.astype(v.dtype) + 0.0) + eps)
            return jnp.asarray(p + (-lr) * u).astype(p.dtype), m, v

        leaves, tree = jax.tree_util.tree_flatten(params)
        parts = (jax.tree_util.tree_leaves(t) for t in (grads, adam.mu, adam.nu))
        out = [leaf(p, g, m, v) for p, g, m, v in zip(leaves, *parts, strict=True)]
        new_p, mu, nu = (jax.tree_util.tree_unflatten(tree, [o[i] for o in out]) for i in range(3))
        return new_p, (optax.ScaleByAdamState(count=count, mu=mu, nu=nu), *rest)
