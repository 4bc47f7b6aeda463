"""Noise schedules and the K-step reverse chain (VE-SDE and DDPM), as pure functions.

Equations are ALGD_METHOD section 4. The chain moves a latent x; actions are a = squash(x) =
tanh(x) * scale + bias. The network phi reads squash(x) (the reference, ``score_space=action``)
or x itself (``score_space=latent``); DDPM's noise head reads x in both cases, as the
reference's posterior-mean step does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Schedule(NamedTuple):
    """Per-step constants, each of shape (K,), indexed by the step t = 0..K-1."""

    sigma: jax.Array  # noise level of the input of step t (the Monte-Carlo perturbation scale)
    step_var: jax.Array  # VE: delta sigma^2_t; DDPM: posterior variance of step t
    alpha: jax.Array  # DDPM alpha_t (1 for VE)
    alpha_bar: jax.Array  # DDPM cumulative alpha_bar_t (1 for VE)
    beta: jax.Array  # DDPM beta_t (0 for VE)


def ve_schedule(
    k: int, sigma_min: float, sigma_max: float, single_level: str = "sigma_min"
) -> Schedule:
    """sigma_t geometric from sigma_min to sigma_max; delta_sigma2_t = sigma_t^2 - sigma_{t-1}^2
    with sigma_{-1} = 0. With k = 1 the one level is ``single_level`` (the reference's
    sigma_min (sigma_max / sigma_min)^linspace(0, 1, 1) gives sigma_min)."""
    one_level = sigma_min if single_level == "sigma_min" else sigma_max
    sigma = np.geomspace(sigma_min, sigma_max, k) if k > 1 else np.array([one_level])
    prev = np.concatenate([[0.0], sigma[:-1]])
    d2 = sigma**2 - prev**2
    one = np.ones(k)
    return Schedule(*(jnp.asarray(v, jnp.float32) for v in (sigma, d2, one, one, np.zeros(k))))


def ddpm_schedule(k: int, beta_min: float, beta_max: float) -> Schedule:
    """Linear betas; posterior variance beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) and
    noise level sqrt(1 - alpha_bar_t), with the reference's 1e-8 guards."""
    beta = np.linspace(beta_min, beta_max, k) if k > 1 else np.array([beta_min])
    alpha = 1.0 - beta
    alpha_bar = np.cumprod(alpha)
    alpha_bar_prev = np.concatenate([[1.0], alpha_bar[:-1]])
    post_var = beta * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar + 1e-8) + 1e-8
    sigma = np.sqrt(1.0 - alpha_bar + 1e-8)
    return Schedule(
        *(jnp.asarray(v, jnp.float32) for v in (sigma, post_var, alpha, alpha_bar, beta))
    )


class Squash(NamedTuple):
    scale: jax.Array  # (act_dim,)
    bias: jax.Array

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.tanh(x) * self.scale + self.bias

    def log_det_jacobian(self, x: jax.Array) -> jax.Array:
        """log |det d squash / dx| summed over the last axis."""
        return jnp.sum(jnp.log(self.scale) + jnp.log1p(-jnp.square(jnp.tanh(x)) + 1e-6), axis=-1)


ModelFn = Callable[[jax.Array, jax.Array], jax.Array]  # (net input (*B, act), step t) -> output


class Chain(NamedTuple):
    x0: jax.Array  # final latent (*B, act)
    inputs: jax.Array  # (K, *B, act): inputs[t] is the latent entering step t
    outputs: jax.Array  # (K, *B, act): outputs[t] is the latent leaving step t


def reverse_chain(
    kind: str,
    model: ModelFn,
    sched: Schedule,
    squash: Squash,
    x_init: jax.Array,
    noise: jax.Array | None,
    *,
    latent_input: bool,
    guidance: float,
) -> Chain:
    """Run t = K-1..0 from ``x_init`` (*B, act); ``noise`` (K, *B, act) is injected at every
    step but the last, or nowhere when None.

    VE-SDE: x <- x + guidance * d2_t * phi(x_t, t) + sqrt(d2_t) z   (no noise at t = 0).
    DDPM:   x <- mu_t(x, eps) + guidance * phi / (||phi|| + 1e-8) + sqrt(var_t) z  (no noise at
            t = 0), mu_t the posterior mean c1 x0_pred + c2 x in the reference's form, with
            eps = eps-head(x_t, t) on the latent and phi = guidance-head(phi's input, t).

    One ``lax.scan`` over the K steps, each step's constants computed in float64 and read as
    float32: XLA compiles the step once, where an unrolled chain compiled K copies (the ALGD
    update compiles up to a third faster, and runs at the same speed at the reference
    settings; docs/performance.md has the side-by-side figures).
    """
    c = {name: np.asarray(v, np.float64) for name, v in sched._asdict().items()}
    order = np.arange(c["sigma"].shape[0] - 1, -1, -1)  # t = K-1..0
    if kind == "ve":
        keep = drop = np.zeros(len(order))
        step_size = guidance * c["step_var"][order]
    else:
        keep, drop = np.asarray([_posterior_mean_coefficients(c, int(t)) for t in order]).T
        step_size = np.zeros(len(order))
    spread = np.sqrt(c["step_var"][order]) * (order > 0)  # no noise at t = 0
    consts = tuple(jnp.asarray(v, jnp.float32) for v in (step_size, keep, drop, spread))

    def step(x: jax.Array, xs: tuple[Any, ...]) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        t, size, keep_t, drop_t, spread_t, z = xs
        out = model(x if latent_input else squash(x), t)
        if kind == "ve":
            x_new = x + size * out
        else:
            act_dim = x.shape[-1]
            # The eps head always reads the latent x_t (the posterior-mean step); the guidance
            # head reads phi's space. One network pass serves both when the spaces agree.
            eps = (out if latent_input else model(x, t))[..., :act_dim]
            phi = out[..., act_dim:]
            # |phi| + 1e-8 as the reference (the 1e-30 only keeps the gradient finite at 0).
            norm = jnp.sqrt(jnp.sum(jnp.square(phi), axis=-1, keepdims=True) + 1e-30) + 1e-8
            x_new = keep_t * x - drop_t * eps + guidance * phi / norm
        if z is not None:
            x_new = jnp.where(t > 0, x_new + spread_t * z, x_new)
        return x_new, (x, x_new)

    zs = None if noise is None else noise[order]
    x0, (ins, outs) = jax.lax.scan(step, x_init, (jnp.asarray(order), *consts, zs))
    return Chain(x0=x0, inputs=ins[::-1], outputs=outs[::-1])


def _posterior_mean_coefficients(c: dict[str, np.ndarray], t: int) -> tuple[float, float]:
    """DDPM's posterior mean c1 x0_pred + c2 x_t with x0_pred = (x_t - sqrt(1 - abar) eps) /
    sqrt(abar), written as keep * x_t - drop * eps, with the reference's 1e-8 guards (they move
    the last step's c1 by 1e-4 relative: 1 - abar_0 = beta_0 = 1e-4)."""
    abar = float(c["alpha_bar"][t])
    abar_prev = 1.0 if t == 0 else float(c["alpha_bar"][t - 1])
    beta, alpha = float(c["beta"][t]), float(c["alpha"][t])
    c1 = np.sqrt(abar_prev) * beta / (1.0 - abar + 1e-8)
    c2 = np.sqrt(alpha) * (1.0 - abar_prev) / (1.0 - abar + 1e-8)
    root = np.sqrt(abar + 1e-8)
    return float(c1 / root + c2), float(c1 * np.sqrt(1.0 - abar) / root)


def mc_boltzmann_score(
    log_p: Callable[[jax.Array], jax.Array], y: jax.Array, sigma: jax.Array, key: jax.Array, n: int
) -> jax.Array:
    """Monte-Carlo score of the Boltzmann target smoothed at noise level sigma (ALGD_METHOD 5.2).

    With y_i = y + sigma eps_i (i = 1..n), returns sum_i w_i grad log p(y_i), w = softmax_i
    log p(y_i). This self-normalised estimate of E[grad log p(x) | y] tends to the score of p
    convolved with N(0, sigma^2) as n grows. ``log_p`` maps (n, *B, d) -> (n, *B);
    y is (*B, d), sigma (*B,). No gradient flows through the result.
    """
    sig = sigma[None, ..., None]
    points = y[None] + sig * jax.random.normal(key, (n, *y.shape))
    vals, pullback = jax.vjp(log_p, points)
    (grads,) = pullback(jnp.ones_like(vals))
    return self_normalised_score(vals, grads)


def self_normalised_score(log_p: jax.Array, grads: jax.Array) -> jax.Array:
    """sum_i w_i grad log p(y_i) with w = softmax_i log p(y_i), from log p (n, *B) and its
    gradients (n, *B, d) at the n samples; no gradient flows through the result."""
    w = jax.nn.softmax(log_p, axis=0)
    return jax.lax.stop_gradient(jnp.sum(w[..., None] * grads, axis=0))
