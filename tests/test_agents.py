"""Actor penalties and losses of every algorithm against hand-computed values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from algd.agents import build_agent, default_config
from algd.agents.cal import rectified_multiplier
from algd.buffer import Batch
from algd.envs.base import EnvSpec
from algd.lagrangian import augmented_penalty
from algd.presets import make_config

SPEC = EnvSpec("Test-v0", 3, 2, (-1.0, -1.0), (1.0, 1.0), 100, 5.0, "episode")


def make(algo: str, **agent: object):
    widths = {"critic_hidden": (16, 16), "actor_hidden": (16, 16), "score_hidden": (16, 16, 16)}
    fields = {f"agent.{k}": v for k, v in {**widths, **agent}.items()}
    cfg = make_config({"algo": algo, **fields})
    agent_obj = build_agent(cfg, SPEC)
    state = agent_obj.init(jax.random.PRNGKey(0))
    mult = state.mult.replace(lam=jnp.float32(0.8), log_lam=jnp.log(jnp.float32(0.8)))
    return agent_obj, state.replace(mult=mult)


def batch(n: int = 8) -> Batch:
    rng = np.random.default_rng(0)
    return Batch(
        rng.normal(size=(n, 3)).astype(np.float32),
        rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        rng.normal(size=n).astype(np.float32),
        rng.uniform(size=n).astype(np.float32),
        rng.normal(size=(n, 3)).astype(np.float32),
        np.zeros(n, np.float32),
        np.zeros(n, np.float32),
    )


def test_rectified_multiplier_known_values() -> None:
    # mean(h - Qc_bar) = 0.4 -> rect = min(4, 1) = 1 -> weight 0 (well inside the budget).
    assert float(rectified_multiplier(1.0, jnp.array([0.5, 0.7]), 1.0, 10.0)) == pytest.approx(0.0)
    # mean(h - Qc_bar) = -0.1 -> rect = -1 -> weight lambda + 1 = 2 (over budget).
    assert float(rectified_multiplier(1.0, jnp.array([1.05, 1.15]), 1.0, 10.0)) == pytest.approx(
        2.0
    )
    # mean = 0.02 -> rect = 0.2 -> weight 0.8.
    assert float(rectified_multiplier(1.0, jnp.array([0.98]), 1.0, 10.0)) == pytest.approx(
        0.8, rel=1e-5
    )


@pytest.mark.parametrize("algo", ["sac", "sac_lag", "sac_auglag", "cal", "sac_auglag_quadratic"])
def test_sac_family_penalties(algo: str) -> None:
    """As the authors configured them: SAC-Lag lambda Qc; SAC-AugLag (the paper's) CAL's
    rectified weight with one cost critic, k = 0; CAL the same with four critics, k = 1; the
    textbook quadratic augmented-Lagrangian penalty under its own name."""
    agent, state = make(algo)
    b = batch()
    obs, act = jnp.asarray(b.obs), jnp.asarray(b.action) * 0.5
    pen = np.asarray(agent.penalty(state, b, act))
    qc = np.asarray(agent.qc_all(state.qc, obs, act))  # (E, B)
    qc_bar = qc[0] if qc.shape[0] == 1 else qc.mean(0) + agent.a.critics.cost_k * qc.std(0, ddof=1)
    lam, h, rho = 0.8, agent.h, agent.a.lagrangian.rho
    if algo == "sac":
        expected = np.zeros_like(pen)
    elif algo == "sac_lag":
        expected = lam * qc_bar
    elif algo == "sac_auglag_quadratic":
        expected = (np.maximum(0, lam + rho * (qc_bar - h)) ** 2 - lam**2) / (2 * rho)
    else:
        replay = np.asarray(agent.qc_all(state.qc, obs, jnp.asarray(b.action)))
        replay_bar = replay[0] if algo == "sac_auglag" else replay.mean(0) + replay.std(0, ddof=1)
        rect = min(10.0 * np.mean(h - replay_bar), lam)
        expected = (lam - rect) * qc_bar
        assert (agent.a.critics.cost_k, qc.shape[0]) == (
            (0.0, 1) if algo == "sac_auglag" else (1.0, 4)
        )
    np.testing.assert_allclose(pen, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("algo", ["sac_lag", "cal"])
def test_sac_actor_loss_composition(algo: str) -> None:
    agent, state = make(algo)
    b = batch()
    key = jax.random.PRNGKey(5)
    _, metrics = agent.actor_step(state, b, key)
    action, logp = agent.sample(state.actor, jnp.asarray(b.obs), key)
    q = np.asarray(agent.q_all(state.q, jnp.asarray(b.obs), action)).min(0)
    pen = np.asarray(agent.penalty(state, b, action))
    alpha = float(np.exp(state.temperature.log_alpha))
    expected = np.mean(alpha * np.asarray(logp) - q + pen)
    assert float(metrics["loss/actor"]) == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_tanh_gaussian_log_prob_matches_change_of_variables() -> None:
    agent, state = make("sac")
    obs = jnp.zeros((1, 3))
    a, logp = agent.sample(state.actor, obs, jax.random.PRNGKey(0))
    mean, log_std = agent.actor_net.apply({"params": state.actor}, obs)
    u = jnp.arctanh(a)
    std = jnp.exp(log_std)
    gauss = -0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi)
    expected = jnp.sum(gauss - jnp.log(1 - a**2), -1)
    np.testing.assert_allclose(logp, expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    ("algo", "energy"),
    [("algd", "augmented"), pytest.param("lgd", "lagrangian", marks=pytest.mark.slow)],
)
def test_diffusion_actor_energy_term(algo: str, energy: str) -> None:
    """With score weight 0 the actor loss is the mean energy of the chain's final actions."""
    agent, state = make(algo, score_weight=0.0)
    b = batch()
    key = jax.random.PRNGKey(3)
    _, metrics = agent.actor_step(state, b, key)
    k_chain = jax.random.split(key, 3)[0]
    a0 = agent.policy(state.actor, jnp.asarray(b.obs), k_chain, deterministic=False)
    q = np.asarray(agent.q_all(state.q, jnp.asarray(b.obs), a0)).min(0)
    qc = np.asarray(agent.qc_all(state.qc, jnp.asarray(b.obs), a0))
    qc_bar = qc.mean(0) + 1.0 * qc.std(0, ddof=1)
    lam, h = 0.8, agent.h
    if energy == "augmented":
        e = -q + augmented_penalty(qc_bar, lam, h, agent.a.lagrangian.rho)
    else:
        e = -q + lam * (qc_bar - h)
    assert float(metrics["loss/actor"]) == pytest.approx(float(np.mean(e)), rel=1e-4, abs=1e-5)
    assert float(metrics["energy"]) == pytest.approx(float(np.mean(e)), rel=1e-4, abs=1e-5)


# The default update also runs in every training test; DDPM's end to end.
@pytest.mark.parametrize(
    "agent_kw",
    [
        pytest.param({}, marks=pytest.mark.slow),
        pytest.param({"diffusion": "ddpm"}, marks=pytest.mark.slow),
        pytest.param({"score_space": "latent", "score_time": "input"}, marks=pytest.mark.slow),
    ],
)
def test_diffusion_update_runs_and_is_finite(agent_kw: dict) -> None:
    agent, state = make("algd", **agent_kw)
    b = jax.tree_util.tree_map(lambda x: np.stack([x, x]), batch(16))
    state, metrics = agent.update(state, b, jax.random.PRNGKey(0))
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert int(state.step) == 2


def test_multiplier_uses_replayed_actions() -> None:
    agent, state = make("algd")
    b = batch()
    _, m = agent.multiplier_step(state, b, jax.random.PRNGKey(3))
    qc = np.asarray(agent.qc_all(state.qc, jnp.asarray(b.obs), jnp.asarray(b.action)))
    expected = np.mean(qc.mean(0) + qc.std(0, ddof=1) - agent.h)
    assert float(m["violation"]) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert "qc_bar/policy" not in m


def test_multiplier_can_step_on_the_episodes_violation() -> None:
    agent, state = make("algd", violation="episodes")
    b = batch()
    up, m = agent.multiplier_step(state, b, jax.random.PRNGKey(3), jnp.float32(4.0))
    down, _ = agent.multiplier_step(state, b, jax.random.PRNGKey(3), jnp.float32(-4.0))
    assert float(m["violation"]) == 4.0
    assert float(up.mult.lam) > float(state.mult.lam) > float(down.mult.lam)
    agent, state = make("algd", violation="episodes", **{"lagrangian.hold_updates": 1})
    held, _ = agent.multiplier_step(state, b, jax.random.PRNGKey(3), jnp.float32(4.0))
    assert float(held.mult.lam) == float(state.mult.lam)  # the first update is held
    moved, _ = agent.multiplier_step(held, b, jax.random.PRNGKey(3), jnp.float32(4.0))
    assert float(moved.mult.lam) == float(up.mult.lam)  # the next is the method's first step


@pytest.mark.parametrize("algo", ["algd", "sac_lag"])
def test_multiplier_can_use_the_current_policys_actions(algo: str) -> None:
    agent, state = make(algo, violation="policy")
    b = batch()
    key = jax.random.PRNGKey(3)
    new, m = agent.multiplier_step(state, b, key)
    action, _ = agent.next_action(state, jnp.asarray(b.obs), key)
    qc = np.asarray(agent.qc_all(state.qc, jnp.asarray(b.obs), action))
    std = qc.std(0, ddof=1) if qc.shape[0] > 1 else 0.0
    expected = np.mean(qc.mean(0) + agent.a.critics.cost_k * std - agent.h)
    assert float(m["violation"]) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert float(m["qc_bar/policy"]) != pytest.approx(float(m["qc_bar/replay"]), abs=1e-6)
    assert float(new.mult.lam) != float(state.mult.lam)


def capture_grad(tx: optax.GradientTransformation, seen: dict) -> optax.GradientTransformation:
    """``tx`` that records the gradient it is given in ``seen["grad"]``."""

    def update(grad, opt_state, params=None):
        seen["grad"] = grad
        return tx.update(grad, opt_state, params)

    return optax.GradientTransformation(tx.init, update)


@pytest.mark.parametrize(
    ("diffusion", "chain_grad", "penalty"),
    [
        ("ve", True, 0.0),
        ("ve", False, 0.0),
        ("ve", True, 0.3),
        ("ddpm", True, 0.0),
        pytest.param("ddpm", False, 0.0, marks=pytest.mark.slow),
    ],
)
def test_diffusion_actor_gradient_matches_a_plainly_written_loss(
    diffusion, chain_grad, penalty
) -> None:
    """The actor step's gradient (shared critic pass, one VJP through the chain) equals
    jax.grad of the loss written out directly: energy of the final actions plus the score loss
    at the chain state a_tau, which carries the chain's gradient unless score_chain_grad is off
    (the reference does not detach it), plus latent_penalty * mean_B ||x0||^2 on the pre-tanh
    output when that is switched on."""
    agent, state = make(
        "algd", diffusion=diffusion, score_chain_grad=chain_grad, latent_penalty=penalty
    )
    b = batch()
    obs = jnp.asarray(b.obs)
    key = jax.random.PRNGKey(5)
    seen: dict = {}
    agent.actor_tx = capture_grad(agent.actor_tx, seen)
    agent.actor_step(state, b, key)
    got_grad = seen["grad"]

    a = agent.a
    n = obs.shape[0]
    k_chain, k_tau, k_mc = jax.random.split(key, 3)
    draws = jax.random.normal(k_chain, (n, *agent.noise_shape()))
    tau = jax.random.randint(k_tau, (n,), 0, agent.K)
    sigma = agent.sched.sigma[tau]
    lam, h = 0.8, agent.h

    def energy(actions):  # (*N, B, act) -> (*N, B), E = -min Q + augmented penalty
        flat = actions.reshape(-1, n, 2)
        out = []
        for act in flat:
            q = agent.q_all(state.q, obs, act).min(0)
            qc = agent.qc_all(state.qc, obs, act)
            qc_bar = qc.mean(0) + 1.0 * qc.std(0, ddof=1)
            out.append(-q + augmented_penalty(qc_bar, lam, h, a.lagrangian.rho))
        return jnp.stack(out).reshape(actions.shape[:-1])

    def loss(params):
        chain, _, _ = agent.chain(params, obs, draws, deterministic=False)
        a0 = agent.squash(chain.x0)
        x_tau = chain.outputs[tau, jnp.arange(n)]
        if not chain_grad:
            x_tau = jax.lax.stop_gradient(x_tau)
        y_tau = agent.squash(x_tau)
        y_mc = jax.lax.stop_gradient(y_tau)[None] + sigma[None, :, None] * jax.random.normal(
            k_mc, (a.diffusion.mc_samples, n, 2)
        )
        log_p = -energy(y_mc) / a.diffusion.beta
        grads = jax.grad(lambda y: jnp.sum(-energy(y) / a.diffusion.beta))(y_mc)
        w = jax.nn.softmax(log_p, axis=0)
        target = jax.lax.stop_gradient(jnp.sum(w[..., None] * grads, axis=0))
        phi = agent.score_net.apply({"params": params}, obs, y_tau, tau)
        phi = phi if diffusion == "ve" else phi[..., 2:]
        score = jnp.mean(jnp.square(phi - target))
        latent = penalty * jnp.mean(jnp.sum(jnp.square(chain.x0), axis=-1))
        e_term = a.diffusion.energy_weight * jnp.mean(energy(a0))
        return e_term + a.diffusion.score_weight * score + latent

    expected = jax.grad(loss)(state.actor)
    for got, want in zip(jax.tree_util.tree_leaves(got_grad), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6)


@pytest.mark.parametrize(
    ("reduction", "floor"), [("mean", "none"), ("sum", "none"), ("mean", "zero")]
)
def test_critic_targets_stop_where_each_flag_says(reduction: str, floor: str) -> None:
    """y_r = r + gamma (1 - reward_done) min_j Q'_j(s', a'); y_c^j = c + gamma_c (1 - cost_done)
    Qc'_j(s', a') (max(Qc'_j, 0) under cost_floor=zero): a goal-met transition (reward_done
    only), a terminated one (both) and a time-limit one under the reference MuJoCo rule (both),
    against the update's losses."""
    agent, state = make("algd", cost_loss_reduction=reduction, cost_floor=floor)
    b = batch()
    reward_done = np.array([1, 0, 1, 0, 0, 1, 0, 0], np.float32)
    cost_done = np.array([0, 0, 1, 0, 0, 1, 0, 1], np.float32)
    b = b._replace(reward_done=reward_done, cost_done=cost_done)
    key = jax.random.PRNGKey(7)
    _, metrics = agent.critic_step(state, b, key)
    obs, nxt, act = (jnp.asarray(x) for x in (b.obs, b.next_obs, b.action))
    next_a, _ = agent.next_action(state, nxt, key)
    g, gc = agent.a.gamma, agent.a.gamma_c
    y_r = b.reward + g * (1 - reward_done) * np.asarray(agent.q_all(state.q_targ, nxt, next_a)).min(
        0
    )
    qc_next = np.asarray(agent.qc_all(state.qc_targ, nxt, next_a))
    # Freshly initialised critics read both signs, so the floor changes some targets.
    assert (qc_next < 0).any() and (qc_next > 0).any()
    qc_next = np.maximum(qc_next, 0.0) if floor == "zero" else qc_next
    y_c = b.cost + gc * (1 - cost_done) * qc_next
    q = np.asarray(agent.q_all(state.q, obs, act))
    qc = np.asarray(agent.qc_all(state.qc, obs, act))
    loss_q = np.square(q - y_r).mean(-1).sum()
    loss_qc = np.square(qc - y_c).mean(-1).sum() / (qc.shape[0] if reduction == "mean" else 1)
    assert float(metrics["loss/q"]) == pytest.approx(loss_q, rel=1e-4)
    assert float(metrics["loss/qc"]) == pytest.approx(loss_qc, rel=1e-4)


def test_targets_move_after_the_even_steps_of_a_block() -> None:
    """Polyak averaging follows the gradient steps whose index in the UTD block is even, as the
    reference's update counter: a one-step block moves the targets, a two-step block once."""
    agent, state = make("sac_lag")
    q_targ0 = jax.tree_util.tree_map(np.asarray, state.q_targ)
    q0 = jax.tree_util.tree_map(np.asarray, state.q)
    b1 = jax.tree_util.tree_map(lambda x: np.stack([x]), batch(16))
    after, _ = agent.update(state, b1, jax.random.PRNGKey(0))
    # One step: targets = (1 - tau) targets + tau * (critics after that step).
    tau = agent.a.critics.tau

    def leaf(tree):
        return np.asarray(tree["members_0"]["layers_0"]["kernel"])

    expected = (1 - tau) * leaf(q_targ0) + tau * leaf(after.q)
    np.testing.assert_allclose(leaf(after.q_targ), expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(leaf(after.q_targ), leaf(q_targ0))
    assert not np.allclose(leaf(q0), leaf(after.q))


@pytest.mark.parametrize("form", ["alpha", "log_alpha"])
def test_temperature_step_form(form: str) -> None:
    """The reference's temperature loss mean(alpha (-log pi - target)) gives log alpha the
    gradient -alpha * mean(log pi + target); the SAC paper's form gives -mean(log pi + target)."""
    agent, state = make("sac_lag", alpha_loss=form)
    assert state.temperature is not None
    log_alpha = jnp.log(jnp.float32(0.25))
    state = state.replace(temperature=state.temperature.replace(log_alpha=log_alpha))
    seen = {}

    def record(grad, opt_state, params=None):
        seen["g"] = float(grad)
        return jnp.zeros_like(grad), opt_state

    agent.alpha_tx = optax.GradientTransformation(agent.alpha_tx.init, record)
    b = batch()
    key = jax.random.PRNGKey(5)
    agent.actor_step(state, b, key)
    _, logp = agent.sample(state.actor, jnp.asarray(b.obs), key)
    gap = float(np.mean(np.asarray(logp) + agent.target_entropy))
    expected = -gap * (0.25 if form == "alpha" else 1.0)
    assert seen["g"] == pytest.approx(expected, rel=1e-5)


def test_ddpm_chain_start() -> None:
    """DDPM starts from N(0, I) (reference) or N(0, (1 - alpha_bar_K) I) (schedule)."""
    standard, _ = make("algd", diffusion="ddpm")
    schedule, _ = make("algd", diffusion="ddpm", ddpm_start="schedule")
    assert standard.start_std == 1.0
    alpha_bar_k = np.prod(1.0 - np.linspace(1e-4, 0.02, 5))
    assert schedule.start_std == pytest.approx(np.sqrt(1.0 - alpha_bar_k), rel=1e-5)


def test_baselines_are_configured_as_the_authors_ran_them() -> None:
    """Every algorithm warms up with its untrained policy; CAL: 4 critics, k = 1, cost-critic
    learning rate 3e-4; the paper's SAC-AugLag: one critic, k = 0, c = 10."""
    for algo in ("algd", "lgd", "sac_lag", "sac_auglag", "cal", "sac", "sac_auglag_quadratic"):
        assert default_config(algo).warmup_actions == "policy", algo
    cal = default_config("cal").agent
    c, lg = cal.critics, cal.lagrangian
    assert (c.cost_ensemble, c.cost_k, c.cost_critic_lr, lg.cal_c) == (4, 1.0, 3e-4, 10.0)
    auglag = default_config("sac_auglag").agent
    c, lg = auglag.critics, auglag.lagrangian
    assert (c.cost_ensemble, c.cost_k, lg.cal_c) == (1, 0.0, 10.0)


def test_cost_margin_lowers_the_budget_of_every_multiplier_agent() -> None:
    """The agents train for (1 - cost_margin) of the env's limit: the per-state budget h (which
    the energies, penalties and the critic signal compare with) and PPO-Lag's budget."""
    for algo in ("algd", "lgd", "sac_lag", "sac_auglag", "cal", "ppo_lag"):
        plain, _ = make(algo)
        tight, _ = make(algo, cost_margin=0.25)
        assert tight.limit == pytest.approx(0.75 * SPEC.cost_limit), algo
        assert tight.h == pytest.approx(0.75 * plain.h, rel=1e-6), algo
    ppo, _ = make("ppo_lag", cost_margin=0.25, ppo_budget="limit")
    assert ppo.budget() == pytest.approx(0.75 * SPEC.cost_limit)
