"""Energies L and L_A, the per-state budget h, and the multiplier updates (pure functions).

Equations are ALGD_METHOD section 3 (energies), section 1 (budget) and section 5.3 (multiplier).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from algd.config import LagrangianConfig, MultiplierKind


def per_state_budget(limit: float, kind: str, horizon: int, gamma_c: float) -> float:
    """Budget h the cost critic is compared with.

    Episode limit d over T steps: h = d (1 - gamma_c^T) / ((1 - gamma_c) T), the discounted sum of
    a constant per-step cost d / T (the reference's conversion). Discounted limit: h = d.
    """
    if kind == "discounted":
        return float(limit)
    return float(limit) * (1.0 - gamma_c**horizon) / ((1.0 - gamma_c) * horizon)


def augmented_penalty(qc: jax.Array, lam: jax.Array, h: float, rho: float) -> jax.Array:
    """(1 / (2 rho)) (max(0, lam + rho (qc - h))^2 - lam^2): the augmented-Lagrangian term.

    Where lam + rho (qc - h) > 0 it equals lam (qc - h) + (rho / 2)(qc - h)^2; elsewhere it is the
    constant -lam^2 / (2 rho). Shared by ALGD's energy and SAC-AugLag's actor penalty.
    """
    return (jnp.square(jnp.maximum(0.0, lam + rho * (qc - h))) - jnp.square(lam)) / (2.0 * rho)


def lagrangian_energy(q: jax.Array, qc_bar: jax.Array, lam: jax.Array, h: float) -> jax.Array:
    """L(s, a, lam) = -Q + lam (Qc_bar - h) (the LGD ablation)."""
    return -q + lam * (qc_bar - h)


def augmented_energy(
    q: jax.Array, qc_bar: jax.Array, lam: jax.Array, h: float, rho: float
) -> jax.Array:
    """L_A(s, a, lam) = -Q + (1/(2 rho)) (max(0, lam + rho (Qc_bar - h))^2 - lam^2)."""
    return -q + augmented_penalty(qc_bar, lam, h, rho)


def ensemble_upper_bound(qc: jax.Array, k: float) -> jax.Array:
    """Qc_bar = mean_j Qc^j + k std_j Qc^j over the leading ensemble axis of qc (E, *B).

    The std uses Bessel's correction (torch's default, as the reference code uses); a single
    member has no spread and gives Qc_bar = Qc. Where the members agree exactly the std's
    gradient is taken as 0 (sqrt's derivative is infinite at 0, so torch's and jnp.std's give
    NaN there: with two members, two float32 outputs coincide often enough over a run to end it);
    everywhere else values and gradients are jnp.std's.
    """
    if qc.shape[0] == 1:
        return qc[0]
    var = qc.var(0, ddof=1)
    spread = var > 0
    std = jnp.where(spread, jnp.sqrt(jnp.where(spread, var, 1.0)), 0.0)
    return qc.mean(0) + k * std


# --- multiplier updates -------------------------------------------------------------------------

# Bounds that keep every update method's float32 state finite: lambda never exceeds
# LAMBDA_CEILING (the reference keeps log lambda in float64 and is unbounded; a multiplier of
# 1e15 already outweighs any float32 return), and the dual's gradient is clipped to
# +-GRAD_CEILING, so Adam's second moment (the gradient squared) stays below float32's 3.4e38.
LAMBDA_CEILING = 1e15
GRAD_CEILING = 1e18


class Multiplier(struct.PyTreeNode):
    """The Lagrange multiplier and what its update method carries between steps (scalars)."""

    lam: jax.Array
    log_lam: jax.Array  # dual: the variable Adam moves
    adam_m: jax.Array  # dual: Adam's moments
    adam_v: jax.Array
    count: jax.Array  # updates so far, held ones included
    pid_i: jax.Array  # pid: the integral term
    pid_prev: jax.Array  # pid: the smoothed violation of the previous step


def init_multiplier(kind: MultiplierKind, lam0: float, pid_ki: float) -> Multiplier:
    f = jnp.float32
    return Multiplier(
        lam=f(lam0),
        log_lam=f(jnp.log(jnp.maximum(lam0, 1e-8))),
        adam_m=f(0.0),
        adam_v=f(0.0),
        count=jnp.int32(0),
        # Start the PID integral where it reproduces lam0, so all three methods start equal.
        pid_i=f(lam0 / pid_ki if (kind == "pid" and pid_ki > 0) else 0.0),
        pid_prev=f(0.0),
    )


def update_multiplier(
    kind: MultiplierKind, state: Multiplier, violation: jax.Array, cfg: LagrangianConfig
) -> Multiplier:
    """One multiplier step from violation = mean(Qc_bar(s, a) - h) (``step_multiplier``); for
    the first ``cfg.hold_updates`` calls lambda and the method's state stay as they are (only
    the count moves), and call hold_updates + n is the method's n-th step."""
    stepped = step_multiplier(kind, state, violation, cfg)
    if cfg.hold_updates == 0:
        return stepped
    held = state.replace(count=stepped.count)
    holding = stepped.count <= cfg.hold_updates
    return jax.tree.map(lambda h, s: jnp.where(holding, h, s), held, stepped)


def step_multiplier(
    kind: MultiplierKind, state: Multiplier, violation: jax.Array, cfg: LagrangianConfig
) -> Multiplier:
    """One multiplier step from violation = mean(Qc_bar(s, a) - h), kept in [lambda_min,
    lambda_max] where those are set.

    - dual: Adam step on log lam minimising lam * mean(h - Qc_bar) (the reference), with the
      gradient -lam * violation (dual_grad=lambda) or -violation (dual_grad=log).
    - multipliers: every ``mom_every`` calls, lam <- max(0, lam + mom_step * violation).
    - pid: lam = max(0, Kp e + Ki I + Kd max(0, e_ema - e_ema_prev)), I = max(0, I + e).

    Every method keeps lam <= LAMBDA_CEILING (and the PID integral where Ki I stays below it),
    so its state stays finite and comes back down once the violation turns negative.
    """
    violation = jnp.asarray(jax.lax.stop_gradient(violation), jnp.float32)
    count = state.count + 1
    state = state.replace(count=count)
    # This method's step (Adam's bias correction, mom_every): the count, less the held calls.
    n = count if cfg.hold_updates == 0 else jnp.maximum(count - cfg.hold_updates, 1)
    ceiling = LAMBDA_CEILING if cfg.lambda_max is None else min(cfg.lambda_max, LAMBDA_CEILING)
    if kind == "dual":
        # d/dlog_lam of lam * (h - Qc_bar) (reference), or of log_lam * (h - Qc_bar).
        scale = jnp.exp(state.log_lam) if cfg.dual_grad == "lambda" else 1.0
        grad = jnp.clip(-scale * violation, -GRAD_CEILING, GRAD_CEILING)
        b1, b2, eps = 0.9, 0.999, 1e-8
        m = b1 * state.adam_m + (1 - b1) * grad
        v = b2 * state.adam_v + (1 - b2) * grad**2
        m_hat = m / (1 - b1 ** n.astype(jnp.float32))
        v_hat = v / (1 - b2 ** n.astype(jnp.float32))
        log_lam = state.log_lam - cfg.lambda_lr * m_hat / (jnp.sqrt(v_hat) + eps)
        log_lam = jnp.minimum(log_lam, jnp.log(jnp.float32(ceiling)))
        if cfg.lambda_min is not None:
            log_lam = jnp.maximum(log_lam, jnp.log(jnp.float32(cfg.lambda_min)))
        return state.replace(log_lam=log_lam, adam_m=m, adam_v=v, lam=jnp.exp(log_lam))
    floor = 0.0 if cfg.lambda_min is None else cfg.lambda_min
    if kind == "multipliers":
        stepped = jnp.clip(state.lam + cfg.mom_step * violation, floor, ceiling)
        return state.replace(lam=jnp.where(n % cfg.mom_every == 0, stepped, state.lam))
    if kind == "pid":
        ema = cfg.pid_ema * state.pid_prev + (1 - cfg.pid_ema) * violation
        top = ceiling / cfg.pid_ki if cfg.pid_ki > 0 else jnp.inf
        integral = jnp.clip(state.pid_i + violation, 0.0, top)
        deriv = jnp.maximum(0.0, ema - state.pid_prev)
        lam = jnp.clip(
            cfg.pid_kp * violation + cfg.pid_ki * integral + cfg.pid_kd * deriv, floor, ceiling
        )
        return state.replace(pid_i=integral, pid_prev=ema, lam=lam)
    raise ValueError(kind)  # pragma: no cover - the config validates the choice
