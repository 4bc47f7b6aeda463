"""Known values of the energies, the budget and the multiplier updates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd.config import LagrangianConfig
from algd.lagrangian import (
    LAMBDA_CEILING,
    augmented_energy,
    augmented_penalty,
    ensemble_upper_bound,
    init_multiplier,
    lagrangian_energy,
    per_state_budget,
    update_multiplier,
)
from algd.networks import CriticEnsemble


@pytest.mark.parametrize("jit", [False, True])
def test_augmented_energy_piecewise(jit: bool) -> None:
    f = jax.jit(augmented_energy, static_argnums=(3, 4)) if jit else augmented_energy
    q, lam, h, rho = 2.0, 0.5, 1.0, 2.0
    # Active side: lam + rho (qc - h) = 0.5 + 2 * 0.3 > 0 -> L + rho/2 (qc - h)^2.
    active = f(jnp.float32(q), jnp.float32(1.3), jnp.float32(lam), h, rho)
    assert float(active) == pytest.approx(-2.0 + 0.5 * 0.3 + 1.0 * 0.09, rel=1e-6)
    # Inactive side: 0.5 + 2 * (0.2 - 1) < 0 -> -Q - lam^2 / (2 rho).
    inactive = f(jnp.float32(q), jnp.float32(0.2), jnp.float32(lam), h, rho)
    assert float(inactive) == pytest.approx(-2.0 - 0.25 / 4.0, rel=1e-6)
    assert float(
        lagrangian_energy(jnp.float32(q), jnp.float32(1.3), jnp.float32(lam), h)
    ) == pytest.approx(-2.0 + 0.15, rel=1e-6)


def test_augmented_equals_lagrangian_plus_quadratic_where_active() -> None:
    rng = np.random.default_rng(0)
    q, qc = rng.normal(size=100), rng.normal(size=100) * 3
    lam, h, rho = 0.7, 0.4, 1.5
    la = np.asarray(augmented_energy(q, qc, lam, h, rho))
    active = lam + rho * (qc - h) > 0
    expected = np.where(
        active,
        np.asarray(lagrangian_energy(q, qc, lam, h)) + rho / 2 * (qc - h) ** 2,
        -q - lam**2 / (2 * rho),
    )
    np.testing.assert_allclose(la, expected, rtol=1e-5, atol=1e-6)
    assert 10 < active.sum() < 90  # both sides exercised


def test_hessian_gains_rank_one_term_on_active_side() -> None:
    """H(L_A) - H(L) = rho (Qc - h) H(Qc) + rho g g^T with g = grad Qc (active side), 0 elsewhere,
    on small MLP critics; with a linear cost critic it is exactly rho g g^T."""
    obs = jnp.ones((3,))
    q_net = CriticEnsemble(3, 2, (16, 16), 1)
    qc_net = CriticEnsemble(3, 2, (16, 16), 1, "silu")
    pq = q_net.init(jax.random.PRNGKey(0), obs[None], jnp.zeros((1, 2)))
    pqc = qc_net.init(jax.random.PRNGKey(1), obs[None], jnp.zeros((1, 2)))

    def q(a):
        return q_net.apply(pq, obs, a)[0]

    def qc(a):
        return qc_net.apply(pqc, obs, a)[0]

    rho, lam = 2.0, 0.3
    a = jnp.array([0.2, -0.4])
    for h, active in ((float(qc(a)) - 0.5, True), (float(qc(a)) + 5.0, False)):
        h_a = jax.hessian(lambda x, h=h: augmented_energy(q(x), qc(x), lam, h, rho))(a)
        h_l = jax.hessian(lambda x, h=h: lagrangian_energy(q(x), qc(x), lam, h))(a)
        g = jax.grad(qc)(a)
        if active:
            expected = rho * (qc(a) - h) * jax.hessian(qc)(a) + rho * jnp.outer(g, g)
        else:
            expected = -lam * jax.hessian(qc)(a)  # L_A = -Q + const there
        np.testing.assert_allclose(h_a - h_l, expected, rtol=1e-4, atol=1e-5)
    # Linear cost critic: exactly the rank-one term, positive semi-definite.
    w = jnp.array([1.0, -2.0])
    h_a = jax.hessian(lambda x: augmented_energy(-jnp.sum(x**2), w @ x, 0.1, -1.0, rho))(a)
    np.testing.assert_allclose(h_a, 2 * jnp.eye(2) + rho * jnp.outer(w, w), rtol=1e-6)


def test_augmented_penalty_is_shared_term() -> None:
    qc = jnp.array([0.0, 1.0, 3.0])
    pen = augmented_penalty(qc, 1.0, 1.0, 2.0)
    np.testing.assert_allclose(pen, [(0.0 - 1.0) / 4, 0.0, (25.0 - 1.0) / 4], rtol=1e-6)


def test_ensemble_upper_bound() -> None:
    qc = jnp.array([[1.0], [2.0], [3.0], [6.0]])
    assert float(ensemble_upper_bound(qc, 1.0)[0]) == pytest.approx(
        3.0 + np.std([1, 2, 3, 6], ddof=1)
    )
    assert float(ensemble_upper_bound(qc[:1], 1.0)[0]) == 1.0


def test_ensemble_upper_bound_gradient_where_members_agree() -> None:
    """Two members with equal outputs (which happens over a run of an ensemble of 2): the
    bound's gradient is the mean's, not NaN; with a spread it is jnp.std's."""

    def bound(a: jax.Array, offset: float) -> jax.Array:
        qc = jnp.stack([2.0 * a, 2.0 * a + offset])  # two members, d/da = 2 each
        return ensemble_upper_bound(qc, 1.0)

    assert float(jax.grad(bound)(jnp.float32(0.5), 0.0)) == 2.0
    ref = jax.grad(
        lambda a: jnp.stack([2.0 * a, 3.0 * a]).mean() + jnp.stack([2 * a, 3 * a]).std(ddof=1)
    )
    mine = jax.grad(lambda a: ensemble_upper_bound(jnp.stack([2.0 * a, 3.0 * a]), 1.0))
    assert float(mine(jnp.float32(0.5))) == pytest.approx(float(ref(jnp.float32(0.5))))
    assert float(ensemble_upper_bound(jnp.stack([jnp.ones(3), jnp.ones(3)]), 1.0)[0]) == 1.0


def test_per_state_budget() -> None:
    assert per_state_budget(25.0, "episode", 1000, 0.99) == pytest.approx(
        25 * (1 - 0.99**1000) / 10
    )
    assert per_state_budget(82.748, "discounted", 1000, 0.99) == 82.748


def test_dual_update_raises_lambda_under_violation_and_lowers_it_otherwise() -> None:
    cfg = LagrangianConfig(lambda_lr=0.1)
    s = init_multiplier("dual", 0.6931, cfg.pid_ki)
    up = update_multiplier("dual", s, jnp.float32(2.0), cfg)
    down = update_multiplier("dual", s, jnp.float32(-2.0), cfg)
    # First Adam step moves log lambda by lr (bias-corrected m / sqrt(v) = sign).
    assert float(up.log_lam) == pytest.approx(np.log(0.6931) + 0.1, rel=1e-5)
    assert float(down.lam) == pytest.approx(0.6931 * np.exp(-0.1), rel=1e-5)


@pytest.mark.parametrize("kind", ["dual", "multipliers", "pid"])
def test_lambda_floor_holds_under_slack_and_lets_lambda_rise(kind: str) -> None:
    cfg = LagrangianConfig(lambda_lr=0.1, lambda_min=0.05)
    free = LagrangianConfig(lambda_lr=0.1)
    s = f = init_multiplier(kind, 0.6931, cfg.pid_ki)
    for _ in range(200):  # a long slack spell
        s = update_multiplier(kind, s, jnp.float32(-5.0), cfg)
        f = update_multiplier(kind, f, jnp.float32(-5.0), free)
    assert float(s.lam) == pytest.approx(0.05, rel=1e-5)
    assert float(f.lam) < 0.02  # without the floor it goes below
    for _ in range(35):  # Adam's momentum turns first
        s = update_multiplier(kind, s, jnp.float32(5.0), cfg)
    assert float(s.lam) > 0.1


@pytest.mark.parametrize("kind", ["dual", "multipliers", "pid"])
def test_multiplier_holds_still_for_its_first_updates(kind: str) -> None:
    """Held calls change nothing but the count; the call after them is the method's first
    step, as if the multiplier had just been made (mom_every counts from there too)."""
    held_cfg = LagrangianConfig(lambda_lr=0.1, mom_step=0.5, mom_every=2, hold_updates=3)
    cfg = LagrangianConfig(lambda_lr=0.1, mom_step=0.5, mom_every=2)
    s = s0 = init_multiplier(kind, 0.6931, cfg.pid_ki)
    for i in range(3):
        s = update_multiplier(kind, s, jnp.float32(4.0), held_cfg)
        assert int(s.count) == i + 1
        assert jax.tree.map(float, s.replace(count=0)) == jax.tree.map(float, s0)
    free = s0
    for _ in range(2):
        s = update_multiplier(kind, s, jnp.float32(4.0), held_cfg)
        free = update_multiplier(kind, free, jnp.float32(4.0), cfg)
        assert jax.tree.map(float, s.replace(count=0)) == jax.tree.map(float, free.replace(count=0))
    assert float(s.lam) > 0.6931 + 0.1  # and it moved


def test_method_of_multipliers_update() -> None:
    cfg = LagrangianConfig(rho=0.5, mom_step=0.5, mom_every=2)
    s = init_multiplier("multipliers", 1.0, cfg.pid_ki)
    s1 = update_multiplier("multipliers", s, jnp.float32(3.0), cfg)
    assert float(s1.lam) == 1.0  # every second call only
    s2 = update_multiplier("multipliers", s1, jnp.float32(3.0), cfg)
    assert float(s2.lam) == pytest.approx(2.5)
    s3 = update_multiplier(
        "multipliers", update_multiplier("multipliers", s2, -10.0, cfg), -10.0, cfg
    )
    assert float(s3.lam) == 0.0  # max(0, 2.5 - 5)


def test_pid_update() -> None:
    cfg = LagrangianConfig(pid_kp=1.0, pid_ki=0.5, pid_kd=0.0, pid_ema=0.0)
    s = init_multiplier("pid", 0.5, cfg.pid_ki)
    assert float(s.pid_i) == pytest.approx(1.0)
    s1 = update_multiplier("pid", s, jnp.float32(2.0), cfg)
    # lam = Kp e + Ki I = 2 + 0.5 * (1 + 2)
    assert float(s1.lam) == pytest.approx(3.5)


def _drive(kind: str, cfg: LagrangianConfig, up: int, down: int, size: float = 0.1) -> dict:
    """Every multiplier state after ``up`` updates at violation +size, then ``down`` at -size."""
    s = init_multiplier(kind, cfg.lambda_init, cfg.pid_ki)
    signal = jnp.concatenate([jnp.full(up, size), jnp.full(down, -size)])

    def step(s, x):  # type: ignore[no-untyped-def]
        s = update_multiplier(kind, s, x, cfg)
        return s, s

    _, trace = jax.lax.scan(step, s, signal)
    return {k: np.asarray(v) for k, v in vars(trace).items()}


@pytest.mark.parametrize(
    ("kind", "settings", "size"),
    [
        ("dual", {"lambda_lr": 0.01}, 0.1),  # the reference form: a positive feedback
        ("dual", {"lambda_lr": 0.01}, 1e5),  # lambda * violation squared beyond float32
        ("dual", {"lambda_lr": 0.01, "dual_grad": "log"}, 0.1),
        ("multipliers", {"mom_step": 0.05}, 0.1),
        ("multipliers", {"mom_step": 0.05}, 1e13),  # up against the ceiling
        ("pid", {}, 0.1),
        ("pid", {}, 1e14),  # up against the ceiling, the integral with it
    ],
)
def test_multiplier_stays_finite_and_comes_back_down(
    kind: str, settings: dict, size: float
) -> None:
    """A long positive violation, then a long negative one: the reference dual at a step of 0.01
    drove float32 Adam's second moment to overflow within 1500 updates and froze lambda near
    1.9e20 for good. Every method's state stays finite, and lambda falls well below its peak."""
    cfg = LagrangianConfig(**settings)
    t = _drive(kind, cfg, up=3000, down=20000, size=size)
    for name, values in t.items():
        assert np.isfinite(values).all(), name
    lam = t["lam"]
    peak = lam.max()
    assert peak > 2.0 * cfg.lambda_init  # it rose
    assert lam[3020] < peak  # turned within 20 updates (Adam's momentum; no wind-up)
    assert lam[-1] < 1e-3 * peak  # and came back down
    assert (np.diff(lam[-5000:]) <= 0).all()  # still falling, not frozen above 0
    assert peak <= LAMBDA_CEILING * (1 + 1e-6)


def test_log_form_dual_moves_log_lambda_at_its_step_whatever_lambda_is() -> None:
    cfg = LagrangianConfig(lambda_lr=0.01, dual_grad="log")
    t = _drive("dual", cfg, up=500, down=0, size=1e-3)
    steps = np.diff(t["log_lam"])
    np.testing.assert_allclose(steps[10:], 0.01, rtol=1e-3)  # |m_hat / sqrt(v_hat)| = 1
    ref = _drive("dual", LagrangianConfig(lambda_lr=0.01), up=500, down=0, size=1e-3)
    assert ref["lam"][-1] > t["lam"][-1]  # the reference's step grows with lambda
