"""Known values of the reachability baseline (HJ) and of PPO-Lag's pieces, computed by hand."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd.agents import build_agent, default_config
from algd.agents.hj import HJ, lambda_loss, reach_target
from algd.agents.ppo_lag import PPOLag, clip_grads, clipped_surrogate, episode_cost, gae
from algd.buffer import Batch, Rollout
from algd.config import AgentConfig, CriticsConfig, HJConfig, LagrangianConfig, PPOConfig, SACConfig
from algd.envs.base import EnvSpec
from algd.lagrangian import init_multiplier, update_multiplier

SPEC = EnvSpec("T", 3, 2, (-1.0, -1.0), (1.0, 1.0), 10, 5.0, "episode")


# --- the SAC family's log-probability ------------------------------------------------------------


@pytest.mark.parametrize("algo", ["sac_lag", "cal", "hj"])
def test_log_prob_tanh_correction_forms(algo: str) -> None:
    """log |d squash / du| per component: the reference's log(scale (1 - tanh(u)^2) + 1e-6)
    flattens at log(1e-6) = -13.8 once tanh saturates (u = 12) and its gradient vanishes; the
    exact log(1 - tanh(u)^2) + log(scale) is -22.6 there with gradient -2."""
    spec = EnvSpec("T", 3, 1, (-1.0,), (1.0,), 10, 5.0, "episode")
    u = jnp.array([[0.0], [0.5], [12.0]])  # (B, act)
    forms = {}
    for form in ("reference", "exact"):
        agent = build_agent(
            default_config(algo, agent=AgentConfig(sac=SACConfig(log_prob=form))), spec
        )
        grad = jax.grad(lambda x, ag=agent: ag.log_det(x).sum())(u)
        forms[form] = (agent.log_det(u)[:, 0], grad[:, 0])
    (ref, ref_grad), (exact, exact_grad) = forms["reference"], forms["exact"]
    np.testing.assert_allclose(ref[:2], exact[:2], atol=3e-6)  # equal away from saturation
    assert float(ref[2]) == pytest.approx(np.log(1e-6), rel=1e-6)
    assert float(exact[2]) == pytest.approx(2 * (np.log(2) - 12 - np.log1p(np.exp(-24))), rel=1e-6)
    assert abs(float(ref_grad[2])) < 1e-3 and float(exact_grad[2]) == pytest.approx(-2, rel=1e-4)


# --- HJ -------------------------------------------------------------------------------------------


def test_reach_target_takes_the_max_and_stops_at_the_end() -> None:
    h = jnp.array([0.0, 1.0, 0.5, 0.2])
    qh_next = jnp.array([[0.4, 0.3, 2.0, 0.9]])
    done = jnp.array([0.0, 0.0, 0.0, 1.0])
    y = reach_target(h, qh_next, done, 0.9)
    # (1 - g) h + g max(h, Q'), and h itself where the episode ends.
    expected = [0.9 * 0.4, 0.1 * 1.0 + 0.9 * 1.0, 0.1 * 0.5 + 0.9 * 2.0, 0.2]
    np.testing.assert_allclose(np.asarray(y)[0], expected, rtol=1e-6)


def test_lambda_loss_value_and_gradient() -> None:
    raw = jnp.array([0.0, 1.0])
    qh = jnp.array([1.5, 0.5])
    # -mean(softplus(raw) (qh - 1)) = -(log 2 * 0.5 + log(1 + e) * -0.5) / 2
    sp0, sp1 = np.log(2.0), np.log(1.0 + np.e)
    assert float(lambda_loss(raw, qh, 1.0)) == pytest.approx(-(sp0 * 0.5 - sp1 * 0.5) / 2, rel=1e-6)
    # d/draw_i = -sigmoid(raw_i) (qh_i - 1) / 2: ascent raises lambda where Q_h > threshold.
    g = jax.grad(lambda r: lambda_loss(r, qh, 1.0))(raw)
    sig = 1.0 / (1.0 + np.exp(-np.array([0.0, 1.0])))
    np.testing.assert_allclose(np.asarray(g), -sig * np.array([0.5, -0.5]) / 2, rtol=1e-6)
    # Q_h carries no gradient into the multiplier's loss.
    assert float(jax.grad(lambda q: lambda_loss(raw, q, 1.0))(qh).sum()) == 0.0


def test_hj_actor_penalty_is_state_lambda_times_violation() -> None:
    cfg = default_config(
        "hj",
        env="T",
        agent=AgentConfig(
            critics=CriticsConfig(cost_ensemble=1, cost_k=0.0), hj=HJConfig(threshold=0.3)
        ),
    )
    agent = HJ(cfg, SPEC)
    state = agent.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 3))
    action = jnp.tanh(jax.random.normal(jax.random.PRNGKey(2), (5, 2)))
    b = Batch(obs, action, *(jnp.zeros(5),) * 2, obs, *(jnp.zeros(5),) * 2)
    pen = agent.penalty(state, b, action)
    lam = jax.nn.softplus(agent.lam_mlp.apply({"params": state.lam_net}, obs))
    qh = agent.qc_all(state.qc, obs, action)[0]
    np.testing.assert_allclose(np.asarray(pen), np.asarray(lam * (qh - 0.3)), rtol=1e-5)
    # The penalty's gradient reaches the action, not lambda(s)'s parameters.
    g = jax.grad(lambda p: agent.penalty(state.replace(lam_net=p), b, action).sum())(state.lam_net)
    assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree_util.tree_leaves(g))


def test_hj_actor_loss_matches_hand_written_loss() -> None:
    cfg = default_config("hj", env="T")
    agent = HJ(cfg, SPEC)
    state = agent.init(jax.random.PRNGKey(3))
    k = jax.random.PRNGKey(4)
    obs = jax.random.normal(k, (8, 3))
    b = Batch(obs, jnp.zeros((8, 2)), *(jnp.zeros(8),) * 2, obs, *(jnp.zeros(8),) * 2)
    key = jax.random.PRNGKey(5)
    _, metrics = agent.actor_step(state, b, key)
    a, logp = agent.sample(state.actor, obs, key)
    q = agent.q_all(state.q, obs, a).min(0)
    lam = jax.nn.softplus(agent.lam_mlp.apply({"params": state.lam_net}, obs))
    qh = agent.qc_all(state.qc, obs, a)[0]
    alpha = jnp.exp(state.temperature.log_alpha)
    expected = jnp.mean(alpha * logp - q + lam * (qh - cfg.agent.hj.threshold))
    assert float(metrics["loss/actor"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(metrics["loss/lambda"]) == pytest.approx(
        float(-jnp.mean(lam * (qh - cfg.agent.hj.threshold))), rel=1e-5
    )


# --- PPO-Lag --------------------------------------------------------------------------------------


def _gae_by_hand(r, v, v_next, done, cut, gamma, lam):
    adv, a = np.zeros(len(r)), 0.0
    for t in reversed(range(len(r))):
        delta = r[t] + gamma * (1 - done[t]) * v_next[t] - v[t]
        a = delta + gamma * lam * (1 - cut[t]) * a
        adv[t] = a
    return adv


def test_gae_known_values_with_termination_and_padding() -> None:
    r = np.array([1.0, 0.0, 2.0, 1.0, 9.0, 9.0], np.float32)
    v = np.array([0.5, 0.2, 0.1, 0.3, 7.0, 7.0], np.float32)
    v_next = np.array([0.2, 0.1, 0.9, 0.4, 7.0, 7.0], np.float32)
    done = np.array([0, 0, 1, 0, 0, 0], np.float32)
    cut = done.copy()
    valid = np.array([1, 1, 1, 1, 0, 0], np.float32)  # 4 real rows, 2 rows of padding
    adv, ret = gae((r, v, v_next), done, cut, valid, 0.9, 0.8)
    # By hand: t=3 bootstraps from V(s') alone (the padding does not leak in):
    # d3 = 1 + .9 * .4 - .3 = 1.06; t=2 is terminal: d2 = 2 - .1 = 1.9, A2 = 1.9;
    # d1 = 0 + .9 * .1 - .2 = -.11, A1 = -.11 + .72 * 1.9 = 1.258;
    # d0 = 1 + .9 * .2 - .5 = .68, A0 = .68 + .72 * 1.258 = 1.58576.
    np.testing.assert_allclose(
        np.asarray(adv), [1.58576, 1.258, 1.9, 1.06, 0, 0], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(np.asarray(ret)[:4], np.asarray(adv)[:4] + v[:4], rtol=1e-6)
    rng = np.random.default_rng(0)
    r, v, vn = (rng.normal(size=20).astype(np.float32) for _ in range(3))
    done = (rng.random(20) < 0.2).astype(np.float32)
    cut = np.maximum(done, (rng.random(20) < 0.2).astype(np.float32))  # resets without done
    adv, _ = gae((r, v, vn), done, cut, np.ones(20, np.float32), 0.99, 0.95)
    np.testing.assert_allclose(
        np.asarray(adv), _gae_by_hand(r, v, vn, done, cut, 0.99, 0.95), rtol=1e-4, atol=1e-5
    )


def test_cost_gae_uses_the_cost_discount() -> None:
    cost = np.array([1.0, 1.0], np.float32)
    zeros = np.zeros(2, np.float32)
    adv, _ = gae((cost, zeros, zeros), zeros, zeros, np.ones(2, np.float32), 0.5, 1.0)
    np.testing.assert_allclose(np.asarray(adv), [1.5, 1.0], rtol=1e-6)


def test_episode_cost_estimate() -> None:
    cost = jnp.array([1.0, 0.0, 2.0, 1.0, 3.0, 0.0])
    valid = jnp.array([1.0, 1, 1, 1, 1, 0])
    # Done flags after rows 1 and 3: segments cost 1 and 3, mean 2; row 4's tail is left out.
    done = jnp.array([0.0, 1, 0, 1, 0, 0])
    assert float(episode_cost(cost, done, valid, 100)) == pytest.approx(2.0)
    # No done flag: the mean cost per step (7 / 5) times the episode length.
    assert float(episode_cost(cost, jnp.zeros(6), valid, 5)) == pytest.approx(7.0)
    assert float(episode_cost(cost, jnp.zeros(6), valid, 10)) == pytest.approx(14.0)


def test_clipped_surrogate_known_values() -> None:
    logp = jnp.log(jnp.array([1.5, 0.5, 1.1, 0.7]))
    old = jnp.zeros(4)
    adv = jnp.array([1.0, 1.0, -2.0, -1.0])
    w = jnp.array([1.0, 1.0, 1.0, 0.0])  # the last row is padding
    loss, frac = clipped_surrogate(logp, old, adv, 0.2, w)
    # min(r A, clip(r) A): 1.2 (clipped), 0.5, -2.2 (unclipped, smaller) -> -mean = 0.5/3
    assert float(loss) == pytest.approx(-(1.2 + 0.5 - 2.2) / 3, rel=1e-6)
    assert float(frac) == pytest.approx(2 / 3, rel=1e-6)  # ratios 1.5 and 0.5 outside 1 +- .2


def test_clip_grads_like_torch() -> None:
    g = {"a": jnp.array([3.0, 4.0])}
    clipped, norm = clip_grads(g, 0.5)
    assert float(norm) == pytest.approx(5.0)
    np.testing.assert_allclose(
        np.asarray(clipped["a"]), np.array([3.0, 4.0]) * 0.5 / (5.0 + 1e-6), rtol=1e-6
    )
    same, _ = clip_grads({"a": jnp.array([0.1, 0.1])}, 0.5)
    np.testing.assert_allclose(np.asarray(same["a"]), [0.1, 0.1])


def test_ppo_multiplier_step_is_adam_on_log_lambda() -> None:
    a = LagrangianConfig(lambda_lr=5e-3)
    m = init_multiplier("dual", 0.6931, a.pid_ki)
    m = update_multiplier("dual", m, jnp.float32(12.0 - 10.0), a)  # episode cost 12 > budget 10
    # Adam's first step moves log lambda by lr against the gradient's sign: lambda rises.
    assert float(m.log_lam) == pytest.approx(np.log(0.6931) + 5e-3, abs=1e-6)
    capped = update_multiplier(
        "dual",
        init_multiplier("dual", 79.99, 0.0),
        jnp.float32(5.0),
        LagrangianConfig(lambda_lr=0.1, lambda_max=80.0),
    )
    assert float(capped.lam) == pytest.approx(80.0, rel=1e-6)


def test_ppo_update_loss_and_steps() -> None:
    """One update on a hand-made rollout: the first minibatch's surrogate equals the one
    written out (ratio 1 at the first step: loss = -mean(normalised advantage) = 0), the
    multiplier moves on the rollout's episode cost, and ceil(n / mb) x epochs steps run."""
    cfg = default_config(
        "ppo_lag",
        env="T",
        agent=AgentConfig(ppo=PPOConfig(epochs=2, minibatch=4, epoch_flush=False, rollout=8)),
    )
    agent = PPOLag(cfg, SPEC)
    state = agent.init(jax.random.PRNGKey(0))
    k = jax.random.split(jax.random.PRNGKey(1), 4)
    obs = jax.random.normal(k[0], (8, 3))
    action = jnp.tanh(jax.random.normal(k[1], (8, 2)))
    cost = jnp.array([1.0, 0, 1, 1, 0, 0, 0, 0])
    r = Rollout(
        obs,
        action,
        jax.random.normal(k[2], (8,)),
        cost,
        obs,
        jnp.zeros(8),
        jnp.zeros(8),
        jnp.ones(8),
    )
    new, m = jax.jit(agent.update_rollout)(state, r, jnp.int32(6), k[3])
    assert float(m["ppo/grad_steps"]) == 2 * 2  # 6 rows in minibatches of 4: 2 per pass
    assert int(new.step) == 4
    # Cost 3 over 6 steps, no done flag: 0.5 per step x 10-step episodes = 5 > h = budget.
    assert float(m["ppo/episode_cost"]) == pytest.approx(5.0, rel=1e-6)
    assert float(new.mult.lam) > float(state.mult.lam)
    lp, _ = agent.log_prob(state.actor, obs, action)
    mean, log_std = agent.actor_net.apply({"params": state.actor}, obs)
    u = jnp.arctanh(jnp.clip(action, -1 + 1e-6, 1 - 1e-6))
    gauss = (-0.5 * ((u - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi)).sum(
        -1
    )
    det = jnp.log(1 - action**2 + 1e-6).sum(-1)
    np.testing.assert_allclose(np.asarray(lp), np.asarray(gauss - det), rtol=1e-4, atol=1e-4)
