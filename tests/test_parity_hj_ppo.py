"""algd's HJ and PPO-Lag against the authors' PyTorch code, through the fixture
scripts/parity_hj_ppo.py wrote (its docstring says what it holds and how to regenerate it).

Each test builds algd's agent at its registry defaults (network sizes, PPO's minibatch and
epochs changed only), loads the authors' initial weights, and runs algd's own update (HJ: the
UTD block ``update_steps`` over three batches; PPO-Lag: ``update_rollout``) once, jitted, with the
authors' random draws replayed: ``jax.random.normal`` (HJ's actor samples) and
``jax.random.uniform`` (PPO-Lag's minibatch order) are replaced, for the test, by look-ups of
the recorded draw by the key algd hands them. What happens inside the compiled update comes
out through ``jax.debug.callback`` taps on the optimisers (every gradient each one is handed)
and on the sub-steps (losses, targets, the state after each gradient step).

Tolerances, as tests/test_parity.py: float32 arithmetic in a different order (PyTorch vs XLA);
values rtol 1e-4 / atol 1e-5, gradients rtol 1e-3 / atol 1e-6, parameters after Adam steps
rtol 1e-4 / atol 2e-6, the targets' moves (tau x the online moves, ~1e-6) rtol 5% / atol 5e-8.
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from algd.agents import build_agent, default_config
from algd.agents import ppo_lag as ppo_lag_module
from algd.agents.base import Temperature
from algd.buffer import Batch, Rollout
from algd.config import apply_overrides
from algd.envs.base import EnvSpec
from algd.networks import apply_net
from helpers import ROOT

FIXTURE = np.load(ROOT / "tests" / "fixtures" / "parity_hj_ppo.npz")
OBS, ACT, HIDDEN = 5, 2, 32
LOW, HIGH = (-1.0, -1.0), (2.0, 1.0)
VALUES = {"rtol": 1e-4, "atol": 1e-5}
GRADS = {"rtol": 1e-3, "atol": 1e-6}
PARAMS = {"rtol": 1e-4, "atol": 2e-6}
MOVES = {"rtol": 0.05, "atol": 5e-8}
DEVIATION: dict[str, float] = defaultdict(float)  # the largest |algd - reference| per kind


def fx(key: str) -> np.ndarray:
    return FIXTURE[key]


def compare(got: Any, want: Any, tol: dict[str, float], what: str, kind: str) -> None:
    """Equal tree structures and shapes, then every leaf pair within tol."""
    got_leaves, got_def = jax.tree_util.tree_flatten_with_path(got)
    want_leaves, want_def = jax.tree_util.tree_flatten_with_path(want)
    assert got_def == want_def, f"{what}: {got_def} != {want_def}"
    for (path, g), (_, w) in zip(got_leaves, want_leaves, strict=True):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        where = what + jax.tree_util.keystr(path)
        assert g.shape == w.shape, f"{where}: shape {g.shape} != {w.shape}"
        np.testing.assert_allclose(g, w, err_msg=where, **tol)
        DEVIATION[kind] = max(DEVIATION[kind], float(np.abs(g - w).max(initial=0.0)))


def report(name: str) -> None:
    print(f"\n{name} max |algd - reference|:", {k: f"{v:.2e}" for k, v in DEVIATION.items()})
    DEVIATION.clear()


# --- the authors' weights as algd's parameters ------------------------------------------------


def linear(prefix: str, name: str) -> dict[str, jax.Array]:
    return {"kernel": fx(f"{prefix}/{name}.weight").T, "bias": fx(f"{prefix}/{name}.bias")}


def critic_member(prefix: str, first: str, hidden: str, out: str) -> dict[str, Any]:
    w = fx(f"{prefix}/{first}.weight").T
    return {
        "w_state": w[:OBS],
        "w_action": w[OBS:],
        "b_in": fx(f"{prefix}/{first}.bias"),
        "layers_0": linear(prefix, hidden),
        "out": linear(prefix, out),
    }


def reward_critics(prefix: str) -> dict[str, Any]:
    return {
        "members_0": critic_member(prefix, "linear1", "linear2", "linear3"),
        "members_1": critic_member(prefix, "linear4", "linear5", "linear6"),
    }


def safety_critic(prefix: str) -> dict[str, Any]:
    return {"members_0": critic_member(prefix, "linear1", "linear2", "linear3")}


def gaussian_actor(prefix: str) -> dict[str, Any]:
    names = ("linear1", "linear2", "mean_linear", "log_std_linear")
    return {f"Dense_{i}": linear(prefix, n) for i, n in enumerate(names)}


def state_mlp(prefix: str, names: tuple[str, ...]) -> dict[str, Any]:
    """lambda(s) (torch Sequential "0", "2") or a value network ("linear1".."linear3")."""
    return {f"Dense_{i}": linear(prefix, n) for i, n in enumerate(names)}


def value_net(prefix: str) -> dict[str, Any]:
    return state_mlp(prefix, ("linear1", "linear2", "linear3"))


def lambda_net(prefix: str) -> dict[str, Any]:
    return state_mlp(prefix, ("0", "2"))


def loaded(algd_tree: Any, ref_tree: Any, what: str) -> Any:
    """The reference's parameters, after checking they pair leaf by leaf with algd's."""
    compare(
        jax.tree_util.tree_map(jnp.shape, algd_tree),
        jax.tree_util.tree_map(jnp.shape, ref_tree),
        {"rtol": 0, "atol": 0},
        what + " (shapes)",
        "structure",
    )
    return jax.tree_util.tree_map(jnp.asarray, ref_tree)


# --- replaying draws, tapping the compiled update ---------------------------------------------


def key_data(key: jax.Array) -> jax.Array:
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


def replay(keys: list[jax.Array], draws: list[np.ndarray]):
    """A stand-in for a jax.random sampler: the recorded draw of the key it is handed (NaN for
    a key it does not know, so that a draw algd takes elsewhere fails every comparison)."""
    table = jnp.stack([key_data(k) for k in keys])
    values = jnp.asarray(np.stack(draws))

    def sampler(key: jax.Array, shape: Any = (), dtype: Any = jnp.float32, *a: Any, **k: Any):
        assert tuple(shape) == values.shape[1:], (shape, values.shape)
        hit = jnp.all(table == key_data(key), axis=-1)
        return jnp.where(hit.any(), values[jnp.argmax(hit)], jnp.nan).astype(dtype)

    return sampler


class Taps:
    """Values sent out of the compiled update, in execution order, per name."""

    def __init__(self) -> None:
        self.log: dict[str, list[Any]] = defaultdict(list)

    def __call__(self, name: str, tree: Any) -> None:
        jax.debug.callback(partial(self.store, name), tree, ordered=True)

    def store(self, name: str, tree: Any) -> None:
        self.log[name].append(jax.tree_util.tree_map(np.asarray, tree))

    def optimiser(self, name: str, tx: optax.GradientTransformation):
        """tx, telling the taps every gradient it is handed."""

        def update(grads: Any, opt_state: Any, params: Any = None) -> Any:
            self(name, grads)
            return tx.update(grads, opt_state, params)

        return optax.GradientTransformation(tx.init, update)

    def after(self, name: str, method, pick):
        """An agent method, telling the taps pick(its result)."""

        def wrapped(*a: Any, **k: Any) -> Any:
            out = method(*a, **k)
            self(name, pick(out))
            return out

        return wrapped


# --- HJ ----------------------------------------------------------------------------------------

N_UPDATES = int(fx("hj/n_updates"))
HJ_SPEC = EnvSpec("parity", OBS, ACT, LOW, HIGH, 1000, 3.0, "discounted")


def hj_batch(u: int) -> Batch:
    b = {k: fx(f"hj/u{u}/batch/{k}") for k in ("state", "action", "reward", "cost", "next_state")}
    done = 1.0 - fx(f"hj/u{u}/batch/mask")
    return Batch(b["state"], b["action"], b["reward"], b["cost"], b["next_state"], done, done)


def hj_nets(stage: str, targets: bool = True) -> dict[str, Any]:
    """HJ's networks at ``stage`` (weights, or gradients, which have no targets)."""
    p = f"hj/{stage}"
    nets = {
        "q": reward_critics(f"{p}/critic"),
        "qc": safety_critic(f"{p}/safety_critic"),
        "actor": gaussian_actor(f"{p}/policy"),
        "lam_net": lambda_net(f"{p}/lambda_net"),
    }
    if targets:
        nets["q_targ"] = reward_critics(f"{p}/critic_target")
        nets["qc_targ"] = safety_critic(f"{p}/safety_critic_target")
    return nets


def hj_agent() -> tuple[Any, Any]:
    """algd's HJ at its registry defaults (network sizes changed) and a fresh state."""
    widths = {
        "agent.critic_hidden": (HIDDEN, HIDDEN),
        "agent.actor_hidden": (HIDDEN, HIDDEN),
        "agent.hj_lambda_hidden": (HIDDEN,),
    }
    ag = build_agent(apply_overrides(default_config("hj"), widths), HJ_SPEC)
    return ag, ag.init(jax.random.PRNGKey(0))


def test_hj_log_prob_where_the_action_saturates(monkeypatch: pytest.MonkeyPatch) -> None:
    """log pi(a|s) and its parameter gradient where tanh saturates (u in 5..6.4), where the
    authors' log(scale (1 - y^2) + 1e-6) and the exact log-det part: their gradients differ by
    0.5-3% per sample."""
    ag, state = hj_agent()
    p = "hj/saturated/"
    params = loaded(state.actor, gaussian_actor(p + "policy"), "saturated actor")
    obs, draw, key = fx(p + "state"), fx(p + "draw"), jax.random.PRNGKey(3)
    monkeypatch.setattr(jax.random, "normal", replay([key], [draw]))

    def total(actor: Any) -> tuple[jax.Array, jax.Array]:
        _, logp = ag.sample(actor, obs, key)
        return logp.sum(), logp

    (_, logp), grad = jax.jit(jax.value_and_grad(total, has_aux=True))(params)
    # Looser than GRADS: each sample's log-det gradient 2 y x / (x + 1e-6), x = scale (1 - y^2),
    # carries x's float32 noise (below, up to ~1% at u = 6.4) times 1e-6 / x (~5%); summed over
    # the batch that is up to ~5e-4 on entries of size ~5. The exact form's gradient differs by
    # ~0.1 (measured), 100x this tolerance.
    compare(grad, gaussian_actor(p + "grad"), {"rtol": 1e-3, "atol": 1e-3}, p + "grad", "sat")
    # Values: near saturation 1 - tanh(u)^2 is a difference of nearly equal float32 numbers; a
    # few units in the last place of tanh(u) (torch's and XLA's tanh are different
    # approximations) move log(1 - tanh(u)^2) by 2^-23 / (1 - tanh(u)^2) each: allow 4 of them
    # per component (about 1e-3 here). The gradient above has no such cancellation.
    mean, log_std = apply_net(ag.actor_net, params, obs)
    u = np.asarray(mean, np.float64) + np.exp(np.asarray(log_std, np.float64)) * draw
    allowance = (4 * 2.0**-23 / (1.0 - np.tanh(u) ** 2)).sum(-1)
    deviation = np.abs(np.asarray(logp, np.float64) - fx(p + "log_prob"))
    np.testing.assert_array_less(deviation, allowance + 1e-5)
    DEVIATION["sat log_prob"] = float(deviation.max())
    report("HJ saturated log-prob")


def test_hj_updates_match_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three consecutive gradient steps (the targets move after the first and the third), as
    the authors' update_parameters(batch, u) for u = 0, 1, 2."""
    ag, state = hj_agent()
    init = hj_nets("init")
    nets = {name: loaded(getattr(state, name), tree, name) for name, tree in init.items()}
    assert state.temperature is not None
    log_alpha = jnp.float32(fx("hj/init/log_alpha")[0])
    assert float(state.temperature.log_alpha) == float(log_alpha)  # alpha = 1 at the start
    state = state.replace(
        **nets,
        q_opt=ag.q_tx.init(nets["q"]),
        qc_opt=ag.qc_tx.init(nets["qc"]),
        actor_opt=ag.actor_tx.init(nets["actor"]),
        lam_net_opt=ag.lam_tx.init(nets["lam_net"]),
        temperature=Temperature(log_alpha, ag.alpha_tx.init(log_alpha)),
    )

    # algd's UTD block splits its key per step, and each step's into the critics' and the
    # actor's; the safety target draws from fold_in(critic key, 1). The reference's draws per
    # update: reward target a', safety target a'', the actor's a (lambda(s) reuses it).
    key = jax.random.PRNGKey(7)
    keys, draws = [], []
    for u, k in enumerate(jax.random.split(key, N_UPDATES)):
        k_critic, k_actor = jax.random.split(k)
        keys += [k_critic, jax.random.fold_in(k_critic, 1), k_actor]
        draws += [fx(f"hj/u{u}/draw{i}") for i in range(3)]
    monkeypatch.setattr(jax.random, "normal", replay(keys, draws))

    taps = Taps()
    txs = {"q": "q_tx", "qc": "qc_tx", "actor": "actor_tx", "alpha": "alpha_tx", "lam": "lam_tx"}
    for name, attr in txs.items():
        setattr(ag, attr, taps.optimiser(name, getattr(ag, attr)))
    ag.next_action = taps.after("next", ag.next_action, lambda out: out)  # type: ignore[method-assign]
    ag.cost_target = taps.after("y_h", ag.cost_target, lambda y: y)  # type: ignore[method-assign]
    ag.critic_step = taps.after("critic_step", ag.critic_step, lambda out: out[1])  # type: ignore[method-assign]
    ag.actor_step = taps.after("actor_step", ag.actor_step, lambda out: out[1])  # type: ignore[method-assign]
    ag.target_step = taps.after("state", ag.target_step, lambda s: s)  # type: ignore[method-assign]

    batches = jax.tree_util.tree_map(
        lambda *x: jnp.stack(x), *(hj_batch(u) for u in range(N_UPDATES))
    )
    final, _ = jax.jit(ag.update_steps)(state, batches, key)
    jax.block_until_ready(final)
    jax.effects_barrier()
    log = taps.log
    for name in (
        "q",
        "qc",
        "actor",
        "alpha",
        "lam",
        "next",
        "y_h",
        "critic_step",
        "actor_step",
        "state",
    ):
        assert len(log[name]) == N_UPDATES, name

    before = state
    for u in range(N_UPDATES):
        p = f"hj/u{u}/"
        b = hj_batch(u)
        # The constraint matters: costs above the threshold, and the reachability target's
        # max picks h(s) for some continuing samples and Q_h(s', a'') for others.
        go_on, y_h = b.reward_done == 0, fx(p + "y_h")
        assert (b.cost > ag.a.hj.threshold).any()
        assert (go_on & (y_h > b.cost + 1e-4)).any() and (go_on & (y_h < b.cost + 1e-6)).any()
        # The reward target as algd's critic_step forms it from its a' and entropy bonus.
        next_a, bonus = log["next"][u]
        q_next = ag.q_all(before.q_targ, b.next_obs, next_a).min(0)
        y_r = b.reward + ag.a.gamma * (1.0 - b.reward_done) * (q_next + bonus)
        compare(y_r, fx(p + "y_r"), VALUES, f"{p}y_r", "targets")
        compare(log["y_h"][u][0], fx(p + "y_h"), VALUES, f"{p}y_h", "targets")
        m_critic, m_actor = log["critic_step"][u], log["actor_step"][u]
        for got, want in (
            (m_critic["loss/q"], "loss_q"),
            (m_critic["loss/qc"], "loss_qh"),
            (m_actor["loss/actor"], "loss_actor"),
            (m_actor["loss/lambda"], "loss_lambda"),
        ):
            compare(got, fx(p + want), VALUES, p + want, "losses")
        grads = hj_nets(f"u{u}/grad", targets=False)
        for tap, net in (("q", "q"), ("qc", "qc"), ("actor", "actor"), ("lam", "lam_net")):
            compare(log[tap][u], grads[net], GRADS, f"{p}grad/{net}", "gradients")
        compare(log["alpha"][u], fx(p + "grad/log_alpha"), GRADS, p + "grad/log_alpha", "gradients")

        after, want = log["state"][u], hj_nets(f"u{u}/after")
        for net in ("q", "qc", "actor", "lam_net"):
            compare(getattr(after, net), want[net], PARAMS, f"{p}after/{net}", "parameters")
        compare(
            after.temperature.log_alpha,
            fx(p + "after/log_alpha")[0],
            {"rtol": 0, "atol": 1e-7},
            p + "after/log_alpha",
            "parameters",
        )
        compare(after.mult.lam, fx(p + "lambda_mean"), VALUES, p + "lambda_mean", "values")
        # The targets: equal where neither side moved them (u = 1), else the same move.
        prev = init if u == 0 else hj_nets(f"u{u - 1}/after")
        for net in ("q_targ", "qc_targ"):
            compare(getattr(after, net), want[net], PARAMS, f"{p}after/{net}", "parameters")
            moved = jax.tree_util.tree_map(np.subtract, want[net], prev[net])
            got = jax.tree_util.tree_map(np.subtract, getattr(after, net), getattr(before, net))
            size = max(float(np.abs(x).max()) for x in jax.tree_util.tree_leaves(moved))
            assert (size > 1e-7) == (u % ag.a.critics.target_every == 0), (net, u, size)
            compare(got, moved, MOVES, f"{p}move/{net}", "target moves")
        before = after
    compare(final, log["state"][-1], {"rtol": 0, "atol": 0}, "final state", "structure")
    report("HJ")


# --- PPO-Lag -----------------------------------------------------------------------------------

T = fx("ppo_lag/rollout/reward").shape[0]
PPO_SPEC = EnvSpec("parity", OBS, ACT, LOW, HIGH, T, 3.0, "episode")


def ppo_rollout(gamma_c: float) -> Rollout:
    r = {k: fx(f"ppo_lag/rollout/{k}") for k in ("obs", "action", "reward", "cost", "next_obs")}
    done = 1.0 - fx("ppo_lag/rollout/mask")
    index = np.zeros(T, np.float32)  # each step's index within its episode
    for t in range(1, T):
        index[t] = 0.0 if done[t - 1] else index[t - 1] + 1.0
    discount = (gamma_c**index).astype(np.float32)
    return Rollout(
        r["obs"], r["action"], r["reward"], r["cost"], r["next_obs"], done, done, discount
    )


def ppo_nets(stage: str) -> dict[str, Any]:
    p = f"ppo_lag/{stage}"
    return {
        "actor": gaussian_actor(f"{p}/policy"),
        "vr": value_net(f"{p}/value_r"),
        "vc": value_net(f"{p}/value_c"),
    }


def test_ppo_lag_update_matches_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """One update on a 40-step rollout with one episode end: 2 epochs of minibatches 16, 16, 8."""

    epochs = int(fx("ppo_lag/n_draws"))
    settings = {
        "agent.actor_hidden": (HIDDEN, HIDDEN),
        "agent.value_hidden": (HIDDEN, HIDDEN),
        "agent.ppo_minibatch": 16,
        "agent.ppo_epochs": epochs,
    }
    ag = build_agent(apply_overrides(default_config("ppo_lag"), settings), PPO_SPEC)
    assert isinstance(ag, ppo_lag_module.PPOLag) and ag.capacity == T
    assert ag.budget() == pytest.approx(float(fx("ppo_lag/target_cost")), rel=1e-6)
    state = ag.init(jax.random.PRNGKey(0))
    nets = {
        name: loaded(getattr(state, name), tree, name) for name, tree in ppo_nets("init").items()
    }
    state = state.replace(
        **nets,
        actor_opt=ag.actor_tx.init(nets["actor"]),
        vr_opt=ag.value_tx.init(nets["vr"]),
        vc_opt=ag.value_tx.init(nets["vc"]),
    )
    assert float(state.mult.log_lam) == pytest.approx(float(fx("ppo_lag/init/log_lam")), abs=1e-7)

    # Each epoch's minibatch order: algd sorts uniform draws from split(key, epochs)[e]; the
    # replayed "uniform draws" are the ranks that sort into the reference's permutation.
    key = jax.random.PRNGKey(11)
    perms = [fx(f"ppo_lag/draw{e}") for e in range(epochs)]
    ranks = []
    for perm in perms:
        rank = np.empty(T, np.float32)
        rank[perm] = (np.arange(T) + 0.5) / T
        ranks.append(rank)
    monkeypatch.setattr(jax.random, "uniform", replay(list(jax.random.split(key, epochs)), ranks))

    taps = Taps()
    ag.actor_tx = taps.optimiser("actor", ag.actor_tx)
    ag.value_tx = taps.optimiser("value", ag.value_tx)  # reward value, then cost value
    ag.grad_step = taps.after("step", ag.grad_step, lambda out: out[1])  # type: ignore[method-assign]
    real_gae, real_grad_step = ppo_lag_module.gae, ag.grad_step

    def gae(*a: Any, **k: Any) -> Any:
        out = real_gae(*a, **k)
        taps("gae", out)
        return out

    def grad_step(s: Any, batch: Any, weight: Any) -> Any:
        taps("batch", (batch, weight))
        return real_grad_step(s, batch, weight)

    monkeypatch.setattr(ppo_lag_module, "gae", gae)
    ag.grad_step = grad_step  # type: ignore[method-assign]

    rollout = ppo_rollout(ag.a.gamma_c)
    final, metrics = jax.jit(ag.update_rollout)(state, rollout, jnp.int32(T), key)
    jax.block_until_ready(final)
    jax.effects_barrier()
    log = taps.log
    n_steps = int(fx("ppo_lag/n_steps"))
    assert float(metrics["ppo/grad_steps"]) == n_steps == ag.grad_steps(T)
    assert float(metrics["ppo/clip_frac"]) > 0.05  # the clipping binds: epsilon matters
    assert len(log["step"]) == len(log["batch"]) == len(log["actor"]) == n_steps
    assert len(log["value"]) == 2 * n_steps

    # Old log-probabilities, GAE, the episode-cost estimate and the multiplier's step.
    (adv_r, ret_r), (adv_c, ret_c) = log["gae"]
    for got, want in ((adv_r, "adv_r"), (ret_r, "ret_r"), (adv_c, "adv_c"), (ret_c, "ret_c")):
        compare(got, fx("ppo_lag/" + want), VALUES, want, "advantages")
    compare(metrics["ppo/episode_cost"], fx("ppo_lag/jc_hat"), VALUES, "jc_hat", "values")
    # One Adam step from zero moments: its first moment is 0.1 x the gradient.
    grad_log_lam = np.asarray(final.mult.adam_m) / 0.1
    compare(grad_log_lam, fx("ppo_lag/grad/log_lam"), GRADS, "grad/log_lam", "gradients")
    compare(
        final.mult.log_lam,
        fx("ppo_lag/after/log_lam"),
        {"rtol": 0, "atol": 1e-7},
        "after/log_lam",
        "parameters",
    )

    old_logp = fx("ppo_lag/old_logp")
    mb = ag.a.ppo.minibatch
    per_epoch = -(-T // mb)
    for j in range(n_steps):
        perm, start = perms[j // per_epoch], (j % per_epoch) * mb
        idx = perm[start : start + mb]
        (obs, _, logp_old, _, _, _), weight = log["batch"][j]
        real = np.asarray(weight) > 0
        assert real.sum() == len(idx)
        np.testing.assert_array_equal(obs[real], fx("ppo_lag/rollout/obs")[idx])
        compare(logp_old[real], old_logp[idx], VALUES, f"step{j}/old_logp", "values")
        compare(log["step"][j][:3], fx("ppo_lag/losses")[j], VALUES, f"step{j}/losses", "losses")
        got = {"actor": log["actor"][j], "vr": log["value"][2 * j], "vc": log["value"][2 * j + 1]}
        compare(got, ppo_nets(f"step{j}/grad"), GRADS, f"step{j}/grad", "gradients")
    after = {name: getattr(final, name) for name in ("actor", "vr", "vc")}
    compare(after, ppo_nets("after"), PARAMS, "after", "parameters")
    report("PPO-Lag")
