"""Schedules against their formulas, the Monte-Carlo score against an analytic score, samplers."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd.agents import build_agent, default_config
from algd.config import agent_from_dict
from algd.diffusion import Squash, ddpm_schedule, mc_boltzmann_score, reverse_chain, ve_schedule
from algd.envs.base import EnvSpec

SPEC = EnvSpec("T", 3, 2, (-1.0, -1.0), (1.0, 1.0), 10, 5.0, "episode")


def test_ve_schedule_formula() -> None:
    s = ve_schedule(5, 0.01, 1.0)
    sig = [0.01 * 100 ** (t / 4) for t in range(5)]
    np.testing.assert_allclose(s.sigma, sig, rtol=1e-6)
    d2 = [sig[0] ** 2] + [sig[t] ** 2 - sig[t - 1] ** 2 for t in range(1, 5)]
    np.testing.assert_allclose(s.step_var, d2, rtol=1e-5)
    assert float(jnp.sum(s.step_var)) == pytest.approx(1.0, rel=1e-5)


def test_ve_schedule_with_one_level() -> None:
    """K = 1: the reference's geometric schedule sigma_min (sigma_max / sigma_min)^linspace(0, 1,
    1) is sigma_min, and ALGD's chain starts from it; ve_single_level=sigma_max starts from the
    largest noise instead."""
    for level, sigma in (("sigma_min", 0.01), ("sigma_max", 1.0)):
        s = ve_schedule(1, 0.01, 1.0, level)
        np.testing.assert_allclose(s.sigma, [sigma], rtol=1e-6)
        np.testing.assert_allclose(s.step_var, [sigma**2], rtol=1e-5)
        cfg = default_config(
            "algd",
            agent=agent_from_dict({"denoise_steps": 1, "ve_single_level": level}),
        )
        assert build_agent(cfg, SPEC).start_std == pytest.approx(sigma, rel=1e-6)


def test_ddpm_schedule_formula() -> None:
    s = ddpm_schedule(5, 1e-4, 0.02)
    betas = [1e-4 + (0.02 - 1e-4) * t / 4 for t in range(5)]
    np.testing.assert_allclose(s.beta, betas, rtol=1e-5)
    ab = np.cumprod([1 - b for b in betas])
    np.testing.assert_allclose(s.alpha_bar, ab, rtol=1e-6)
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    # The reference's posterior variance, with its 1e-8 guards.
    np.testing.assert_allclose(
        s.step_var, np.array(betas) * (1 - ab_prev) / (1 - ab + 1e-8) + 1e-8, rtol=1e-4, atol=1e-9
    )
    assert float(s.alpha_bar[-1]) == pytest.approx(0.9498, abs=1e-3)  # the "barely noised" fact


def test_mc_score_approaches_gaussian_score() -> None:
    """Boltzmann of a quadratic energy E = |a - mu|^2 / (2 s^2) at beta = 1 is N(mu, s^2); the
    estimator targets the score of N(mu, s^2 + sigma^2): -(y - mu) / (s^2 + sigma^2)."""
    mu, s2, sigma = jnp.array([0.3, -0.2]), 0.25, 0.5
    y = jnp.array([[1.0, 0.5], [-0.4, 0.1], [0.3, -0.2]])
    exact = -(y - mu) / (s2 + sigma**2)

    def log_p(a):
        return -jnp.sum((a - mu) ** 2, -1) / (2 * s2)

    errors = []
    for n in (4, 64, 4096):
        keys = jax.random.split(jax.random.PRNGKey(0), 64)
        est = jax.vmap(lambda k, n=n: mc_boltzmann_score(log_p, y, jnp.full(3, sigma), k, n))(keys)
        errors.append(float(jnp.mean(jnp.abs(est - exact))))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.05


def _chain(kind: str, squash: Squash, deterministic: bool, key) -> jnp.ndarray:
    sched = ve_schedule(5, 0.01, 1.0) if kind == "ve" else ddpm_schedule(5, 1e-4, 0.02)

    def model(x, t):
        out = 5.0 * jnp.sin(3 * x + t)  # a large, arbitrary field
        return out if kind == "ve" else jnp.concatenate([out, -out], -1)

    k1, k2 = jax.random.split(key)
    x_init = jnp.zeros((256, 2)) if deterministic else jax.random.normal(k1, (256, 2))
    noise = jax.random.normal(k2, (5, 256, 2))
    chain = reverse_chain(
        kind,
        model,
        sched,
        squash,
        x_init,
        None if deterministic else noise,
        latent_input=False,
        guidance=1.0,
    )
    assert chain.inputs.shape == chain.outputs.shape == (5, 256, 2)
    np.testing.assert_array_equal(chain.outputs[0], chain.x0)
    np.testing.assert_array_equal(chain.inputs[:-1], chain.outputs[1:])
    return squash(chain.x0)


@pytest.mark.parametrize("kind", ["ve", "ddpm"])
def test_actions_stay_in_the_box(kind: str) -> None:
    low, high = jnp.array([-2.0, 0.0]), jnp.array([1.0, 3.0])
    squash = Squash((high - low) / 2, (high + low) / 2)
    a = _chain(kind, squash, False, jax.random.PRNGKey(0))
    assert bool(jnp.all(a >= low)) and bool(jnp.all(a <= high))
    assert float(a[:, 0].std()) > 0.1


def test_deterministic_ve_chain_ignores_noise() -> None:
    squash = Squash(jnp.ones(2), jnp.zeros(2))
    a1 = _chain("ve", squash, True, jax.random.PRNGKey(0))
    a2 = _chain("ve", squash, True, jax.random.PRNGKey(1))
    np.testing.assert_array_equal(a1, a2)


def _fields(x: Any, t: Any, xp: Any = np) -> tuple[Any, Any]:
    """Two arbitrary, distinguishable fields of a network input: (eps head, guidance head), in
    numpy (float64) or, with ``xp=jnp``, traced inside the chain."""
    return 0.7 * x + 0.1 * (t + 1), xp.sin(2.0 * x) + 0.05 * t


@pytest.mark.parametrize("kind", ["ve", "ddpm"])
def test_chain_follows_the_schedule_formulas_at_known_weights(kind: str) -> None:
    """The reverse chain against a float64 chain written from the reference formulas: VE-SDE
    x <- x + d_sigma2_t phi(s, a_t, t) + sqrt(d_sigma2_t) z; DDPM's posterior-mean step
    x <- c1_t x0_pred + c2_t x + g phi(s, a_t, t) / |phi| + sqrt(var_t) z, x0_pred =
    (x - sqrt(1 - abar_t) eps(s, x_t, t)) / sqrt(abar_t): the eps head reads the latent x_t, the
    guidance head the action a_t = tanh(x_t) scale + bias; no noise at t = 0. A flipped sign, a
    dropped step size or a head reading the wrong input fails this."""
    k, guidance = 5, (1.0 if kind == "ve" else 0.05)
    scale, bias = np.array([2.0, 0.5]), np.array([0.5, -0.25])
    squash = Squash(jnp.asarray(scale, jnp.float32), jnp.asarray(bias, jnp.float32))
    rng = np.random.default_rng(0)
    x_init = rng.normal(size=(64, 2))
    z = rng.normal(size=(k, 64, 2))

    def model(inp, t):
        eps, phi = _fields(inp, t, jnp)
        return phi if kind == "ve" else jnp.concatenate([eps, phi], -1)

    sched = ve_schedule(k, 0.01, 1.0) if kind == "ve" else ddpm_schedule(k, 1e-4, 0.02)
    chain = reverse_chain(
        kind,
        model,
        sched,
        squash,
        jnp.asarray(x_init, jnp.float32),
        jnp.asarray(z, jnp.float32),
        latent_input=False,
        guidance=guidance,
    )

    x = x_init.copy()
    if kind == "ve":
        sigma = 0.01 * (1.0 / 0.01) ** (np.arange(k) / (k - 1))
        d2 = sigma**2 - np.concatenate([[0.0], sigma[:-1] ** 2])
    else:
        # The reference's schedule buffers are float32 (1 - abar_0 is then 1.0002e-4, not 1e-4).
        beta = np.linspace(1e-4, 0.02, k).astype(np.float32)
        alpha = (1 - beta).astype(np.float32)
        abar = np.cumprod(alpha, dtype=np.float32)
        beta, alpha, abar = (v.astype(np.float64) for v in (beta, alpha, abar))
        abar_prev = np.concatenate([[1.0], abar[:-1]])
    for t in reversed(range(k)):
        a_t = np.tanh(x) * scale + bias
        if kind == "ve":
            mean = x + guidance * d2[t] * _fields(a_t, t)[1]
            std = np.sqrt(d2[t])
        else:
            eps = _fields(x, t)[0]
            # The reference's arithmetic, its 1e-8 guards included.
            x0_pred = (x - np.sqrt(1 - abar[t]) * eps) / np.sqrt(abar[t] + 1e-8)
            c1 = np.sqrt(abar_prev[t]) * beta[t] / (1 - abar[t] + 1e-8)
            c2 = np.sqrt(alpha[t]) * (1 - abar_prev[t]) / (1 - abar[t] + 1e-8)
            phi = _fields(a_t, t)[1]
            norm = np.linalg.norm(phi, axis=-1, keepdims=True) + 1e-8
            mean = c1 * x0_pred + c2 * x + guidance * phi / norm
            std = np.sqrt(beta[t] * (1 - abar_prev[t]) / (1 - abar[t] + 1e-8) + 1e-8)
        x = mean + (std * z[t] if t > 0 else 0.0)
    np.testing.assert_allclose(np.asarray(chain.x0), x, rtol=2e-5, atol=2e-5)
