"""algd's SAC-Lag, SAC-AugLag and CAL against the authors' PyTorch agents, through the fixture
scripts/parity_sac_family.py wrote (three consecutive updates of each agent).

Each algorithm runs at its registry defaults (only the network widths changed to the
fixture's), in the fixture's setting (Safety-Gym for SAC-Lag and CAL, velocity for SAC-AugLag),
holding the authors' initial weights, on the authors' batches, with the policy's
standard-normal draws replaced by theirs. The three updates run as algd's update runs them
(``OffPolicyAgent.update_steps``: a scan of ``grad_step``, critics -> actor and temperature ->
multiplier -> targets, over the keys ``split(key, 3)`` and the indices 0, 1, 2, the indices the
authors' ``main.py`` passes within a block), compiled once per algorithm.

Tolerances: float32 arithmetic in a different order (PyTorch vs XLA) agrees to about 1e-6
relative; values are compared at rtol 1e-4 / atol 1e-5, gradients at rtol 1e-3 / atol 1e-6 (a
gradient entry near zero is a difference of large terms), as in tests/test_parity.py. The
fixture's draws keep the pre-tanh samples out of 2 < |u| < 10, where the authors' log-prob term
log(scale (1 - tanh^2) + 1e-6) is ill-conditioned in float32 (XLA's tanh is within 4 ulps of
the true value, PyTorch's within 0.5, and 1 - tanh^2 cancels: at |u| = 5.6 the two frameworks'
log pi differ by 4e-3); one sample per draw sits at |u| = 10.5, where both round tanh to 1.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd.agents import build_agent, default_config
from algd.agents.base import Temperature, copy_tree
from algd.agents.cal import CAL, rectified_multiplier
from algd.agents.sac_lag import SACLag
from algd.buffer import Batch
from algd.config import apply_overrides
from algd.envs.base import EnvSpec
from helpers import ROOT, Capture

FIXTURE = np.load(ROOT / "tests" / "fixtures" / "parity_sac_family.npz")
OBS, ACT, HIDDEN, UPDATES = 5, 2, 16, 3
LOW, HIGH = (-1.0, -1.0), (2.0, 1.0)
ALGOS = {"saclag": "sac_lag", "sacauglag": "sac_auglag", "cal": "cal"}
VALUES = {"rtol": 1e-4, "atol": 1e-5}
GRADS = {"rtol": 1e-3, "atol": 1e-6}
# Parameters after an update: one Adam step moves each by up to 3e-4, far above this.
PARAMS = {"rtol": 1e-4, "atol": 2e-6}
# A target moves by tau x (the online parameters' change since the last move), about 1e-6:
# compare the moves themselves, to the float32 resolution of the targets (about 3e-8).
MOVES = {"rtol": 0.05, "atol": 5e-8}
# log lambda: the reference's is float64 and moves by about lr = 3e-4 per (sign-like) Adam step.
LOG_LAM = {"rtol": 0.0, "atol": 1e-7}
# The temperature's gradient -alpha mean(log pi + target entropy) is one mean over the batch:
# measured within 2e-7 relative, and alpha moves by only 3e-4 per step from its start at 1, so
# a loss without the alpha factor (alpha_loss=log_alpha) differs by that much in updates 1, 2.
TEMPERATURE_GRAD = {"rtol": 2e-5, "atol": 0.0}
# The dual step's Adam moments: m ~ 1e-3 and v ~ 1e-8, relative only.
MOMENTS = {"rtol": 1e-3, "atol": 0.0}

DEVIATIONS: dict[str, tuple[float, float]] = {}
"""Per quantity (prefix stripped), the largest absolute and relative deviation seen."""


def fx(name: str, key: str) -> np.ndarray:
    return FIXTURE[f"{name}/{key}"]


def close(tag: str, quantity: str, got: Any, want: Any, tol: dict[str, float]) -> None:
    """Compare two pytrees of equal structure leaf by leaf, and keep the largest deviation."""
    what = f"{tag}: {quantity}"
    got_def, want_def = jax.tree_util.tree_structure(got), jax.tree_util.tree_structure(want)
    assert got_def == want_def, f"{what}: {got_def} != {want_def}"
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        assert g.shape == w.shape, f"{what}: shape {g.shape} != {w.shape}"
        err = np.abs(g - w)
        big = np.abs(w) > (tol["atol"] or 0.0)  # relative where the comparison is
        rel = float((err[big] / np.abs(w[big])).max()) if big.any() else 0.0
        old = DEVIATIONS.get(quantity, (0.0, 0.0))
        DEVIATIONS[quantity] = (max(old[0], float(err.max(initial=0.0))), max(old[1], rel))
        np.testing.assert_allclose(g, w, err_msg=what, **tol)


# --- the authors' parameters as algd's --------------------------------------------------------


def unpack(name: str, net: str, flat: np.ndarray) -> dict[str, jax.Array]:
    """A flat parameter array of the fixture, split by the fixture's layout."""
    out, at = {}, 0
    for entry in fx(name, f"layout/{net}"):
        key, shape_s = str(entry).split(":")
        shape = tuple(int(d) for d in shape_s.split(","))
        size = int(np.prod(shape))
        out[key] = jnp.asarray(flat[at : at + size].reshape(shape))
        at += size
    assert at == flat.size
    return out


def member(first: jax.Array, b0: jax.Array, w1: jax.Array, b1: jax.Array, w2: jax.Array, b2):
    """One algd critic from its (in, out) weights and biases."""
    return {
        "b_in": b0,
        "layers_0": {"bias": b1, "kernel": w1},
        "out": {"bias": b2, "kernel": w2},
        "w_action": first[OBS:],
        "w_state": first[:OBS],
    }


def to_algd(name: str, key: str, net: str) -> dict[str, Any]:
    """The fixture's ``key`` (a flat parameter or gradient array of ``net``: critic, qc or
    policy, or their targets) as algd's parameter tree."""
    layout = net.removesuffix("_targ")
    w = unpack(name, layout, fx(name, key))
    if layout == "critic":  # torch Linear weights are (out, in)
        return {
            f"members_{j}": member(
                w[f"linear{a}.weight"].T,
                w[f"linear{a}.bias"],
                w[f"linear{b}.weight"].T,
                w[f"linear{b}.bias"],
                w[f"linear{c}.weight"].T,
                w[f"linear{c}.bias"],
            )
            for j, (a, b, c) in enumerate(((1, 2, 3), (4, 5, 6)))
        }
    if layout == "qc":  # EnsembleFC weights are (E, in, out)
        return {
            f"members_{j}": member(
                w["nn1.weight"][j],
                w["nn1.bias"][j],
                w["nn2.weight"][j],
                w["nn2.bias"][j],
                w["nn3.weight"][j],
                w["nn3.bias"][j],
            )
            for j in range(int(fx(name, "ens")))
        }
    layers = ("linear1", "linear2", "mean_linear", "log_std_linear")
    return {
        f"Dense_{i}": {"bias": w[f"{layer}.bias"], "kernel": w[f"{layer}.weight"].T}
        for i, layer in enumerate(layers)
    }


# --- algd's agent at its defaults, holding the authors' weights -------------------------------


def make(name: str, **agent: Any):
    """algd's agent for ``name`` at its registry defaults (widths changed to the fixture's, and
    ``agent``), in the fixture's setting, with the authors' initial weights."""
    if bool(fx(name, "safetygym")):  # an episode limit over 400 steps: h = d (1-g^T)/((1-g)T)
        spec = EnvSpec(
            "parity-sac", OBS, ACT, LOW, HIGH, 400, float(fx(name, "cost_lim")), "episode"
        )
    else:  # the velocity tasks' discounted limit: h = d
        spec = EnvSpec(
            "parity-sac", OBS, ACT, LOW, HIGH, 1000, float(fx(name, "cost_lim")), "discounted"
        )
    cfg = default_config(ALGOS[name])
    widths = {"critic_hidden": (HIDDEN, HIDDEN), "actor_hidden": (HIDDEN, HIDDEN)}
    cfg = apply_overrides(cfg, {f"agent.{k}": v for k, v in {**widths, **agent}.items()})
    ag = build_agent(cfg, spec)
    assert ag.h == pytest.approx(float(fx(name, "target_cost")), rel=1e-6)
    assert ag.a.critics.cost_ensemble == int(fx(name, "ens"))
    state = ag.init(jax.random.PRNGKey(0))
    q, qc, actor = (to_algd(name, f"init/{net}", net) for net in ("critic", "qc", "policy"))
    for got, want in ((q, state.q), (qc, state.qc), (actor, state.actor)):
        assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
        for g, w in zip(
            jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True
        ):
            assert g.shape == w.shape
    log_alpha = jnp.float32(fx(name, "init/log_alpha")[0])
    state = state.replace(
        q=q,
        q_targ=copy_tree(q),  # the authors' targets start as copies (checked when recording)
        q_opt=ag.q_tx.init(q),
        qc=qc,
        qc_targ=copy_tree(qc),
        qc_opt=ag.qc_tx.init(qc),
        actor=actor,
        actor_opt=ag.actor_tx.init(actor),
        temperature=Temperature(log_alpha, ag.alpha_tx.init(log_alpha)),
    )
    assert float(log_alpha) == pytest.approx(float(np.log(ag.a.sac.alpha_init)))  # alpha = 1
    assert float(state.mult.log_lam) == pytest.approx(float(fx(name, "init/log_lam")), abs=1e-7)
    return ag, state


def batch(name: str, u: int) -> Batch:
    b = {k: fx(name, f"u{u}/batch/{k}") for k in ("state", "action", "reward", "cost")}
    done = 1.0 - fx(name, f"u{u}/batch/mask")
    # Safety-Gym setting: the authors' cost critics always bootstrap; velocity: the same flag.
    cost_done = np.zeros_like(done) if bool(fx(name, "safetygym")) else done
    return Batch(
        b["state"],
        b["action"],
        b["reward"],
        b["cost"],
        fx(name, f"u{u}/batch/next_state"),
        done,
        cost_done,
    )


def replay_draws(monkeypatch: pytest.MonkeyPatch, name: str, key: jax.Array) -> None:
    """jax.random.normal gives the authors' draws where algd's update asks with the keys it
    derives from ``key``: update u's critic key (the policy at s') gets their draw0 of update u,
    its actor key (the policy at s) their draw1. Any other key gets a fresh draw."""
    real = jax.random.normal
    table = []
    for u, k_u in enumerate(jax.random.split(key, UPDATES)):  # as OffPolicyAgent.update_steps
        k_critic, k_actor = jax.random.split(k_u)  # as OffPolicyAgent.grad_step
        table += [(k_critic, fx(name, f"u{u}/draw0")), (k_actor, fx(name, f"u{u}/draw1"))]

    def normal(k: jax.Array, shape: Any = (), dtype: Any = jnp.float32) -> jax.Array:
        out = real(k, shape, dtype)
        for k_i, z in table:
            if tuple(shape) == z.shape:
                out = jnp.where(jnp.all(k == k_i), jnp.asarray(z, dtype), out)
        return out

    monkeypatch.setattr(jax.random, "normal", normal)


KEY = jax.random.PRNGKey(7)


def run_updates(ag: Any, state: Any, batches: list[Batch]) -> list[dict[str, Any]]:
    """The three updates as algd's update runs them (OffPolicyAgent.update_steps: a scan of
    grad_step over the batches, the keys split(KEY, 3) and the indices 0, 1, 2), compiled once,
    with what each optimiser was handed and the quantities the fixture holds."""
    txs = ("q_tx", "qc_tx", "actor_tx", "alpha_tx")
    for tx in txs:
        setattr(ag, tx, Capture.of(getattr(ag, tx)))

    def one(state: Any, xs: tuple[Batch, jax.Array, jax.Array]) -> tuple[Any, dict[str, Any]]:
        b, key, index = xs
        k_critic, k_actor = jax.random.split(key)
        # The critics' per-sample targets from the update's own pieces at the state before it
        # (critic_step computes them the same way; its loss and gradients are compared too).
        next_a, bonus = ag.next_action(state, b.next_obs, k_critic)
        q_next = ag.q_all(state.q_targ, b.next_obs, next_a).min(0)
        y_r = b.reward + ag.a.gamma * (1.0 - b.reward_done) * (q_next + bonus)
        y_c = ag.cost_target(state, b, next_a, k_critic)
        action, log_prob = ag.sample(state.actor, b.obs, k_actor)
        lam = state.mult.lam
        new, m = ag.grad_step(state, b, key, index)
        replay = ag.qc_bar(new.qc, b.obs, b.action)
        return new, {
            "state": new,
            "metrics": m,
            "grads": {tx: getattr(ag, tx).grads[-1] for tx in txs},
            "y_r": y_r,
            "y_c": y_c,
            "log_prob": log_prob,
            "qc_actor": ag.qc_all(new.qc, b.obs, action),
            "qc_replay": ag.qc_all(new.qc, b.obs, b.action),
            "weight": rectified_multiplier(lam, replay, ag.h, ag.a.lagrangian.cal_c),
            "lam": lam,
        }

    @jax.jit
    def run(state: Any, batches: Batch, key: jax.Array) -> dict[str, Any]:
        keys = jax.random.split(key, UPDATES)
        return jax.lax.scan(one, state, (batches, keys, jnp.arange(UPDATES)))[1]

    stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *batches)
    outs = run(state, stacked, KEY)
    return [jax.tree_util.tree_map(lambda x, u=u: x[u], outs) for u in range(UPDATES)]


def check_update(name: str, ag: Any, u: int, out: dict[str, Any]) -> None:
    """Everything the fixture holds for update ``u``."""
    p = f"u{u}/"
    m, state, grads = out["metrics"], out["state"], out["grads"]
    f = lambda key: fx(name, p + key)  # noqa: E731
    tag = f"{name} u{u}"
    # Critics.
    close(tag, "y_r", out["y_r"], f("y_r"), VALUES)
    close(tag, "y_c", out["y_c"], f("y_c"), VALUES)
    close(tag, "loss_q", m["loss/q"], f("loss_q"), VALUES)
    close(tag, "y_r mean (critic_step)", m["q/mean"], f("y_r").mean(), VALUES)
    close(tag, "loss_qc", m["loss/qc"], f("loss_qc"), VALUES)
    close(tag, "grad critic", grads["q_tx"], to_algd(name, p + "grad/critic", "critic"), GRADS)
    close(tag, "grad qc", grads["qc_tx"], to_algd(name, p + "grad/qc", "qc"), GRADS)
    # Actor and its penalty.
    close(tag, "alpha", m["alpha"], f("alpha"), VALUES)
    close(tag, "log_prob", out["log_prob"], f("log_prob"), VALUES)
    close(tag, "entropy", m["entropy"], -f("log_prob").mean(), VALUES)
    close(tag, "qc_actor", out["qc_actor"], f("qc_actor"), VALUES)
    close(tag, "qc_replay", out["qc_replay"], f("qc_replay"), VALUES)
    close(tag, "lambda (actor)", out["lam"], f("lam"), VALUES)
    if isinstance(ag, CAL):  # SAC-AugLag, CAL: the actor's weight lambda - rect
        close(tag, "lambda - rect", out["weight"], f("lam") - f("rect"), VALUES)
    else:
        assert isinstance(ag, SACLag) and float(f("rect")) == 0.0  # c = 0: weight lambda
    close(tag, "penalty", m["penalty"], f("penalty"), VALUES)
    close(tag, "actor_loss", m["loss/actor"], f("actor_loss"), VALUES)
    close(tag, "grad policy", grads["actor_tx"], to_algd(name, p + "grad/policy", "policy"), GRADS)
    # Temperature.
    close(tag, "grad log_alpha", grads["alpha_tx"], f("grad/log_alpha")[0], TEMPERATURE_GRAD)
    assert state.temperature is not None
    close(tag, "log_alpha", state.temperature.log_alpha, f("after/log_alpha")[0], VALUES)
    # Multiplier: d/dlog_lambda of lambda mean(h - Qc_bar(s, a_replay)) = -lambda violation.
    close(tag, "grad log_lam", -out["lam"] * m["violation"], f("grad/log_lam"), GRADS)
    close(tag, "log_lam", state.mult.log_lam, f("after/log_lam"), LOG_LAM)
    close(tag, "lambda", m["lambda"], np.exp(f("after/log_lam")), VALUES)
    # Adam's first steps are sign-like: its moments say whether the gradient's size matched.
    close(tag, "log_lam adam m", state.mult.adam_m, f("after/log_lam_adam_m"), MOMENTS)
    close(tag, "log_lam adam v", state.mult.adam_v, f("after/log_lam_adam_v"), MOMENTS)
    # Every parameter after the update.
    for net, key in (("critic", "q"), ("qc", "qc"), ("policy", "actor")):
        close(
            tag, f"{net} after", getattr(state, key), to_algd(name, p + "after/" + net, net), PARAMS
        )
    # Targets: their moves since the previous update (none after update 1).
    before = "init/" if u == 0 else f"u{u - 1}/after/"
    for net, key in (("critic_targ", "q_targ"), ("qc_targ", "qc_targ")):
        base = to_algd(name, before + net.removesuffix("_targ" if u == 0 else ""), net)
        want = jax.tree_util.tree_map(jnp.subtract, to_algd(name, p + "after/" + net, net), base)
        got = jax.tree_util.tree_map(jnp.subtract, getattr(state, key), base)
        moved = max(float(jnp.abs(x).max()) for x in jax.tree_util.tree_leaves(want))
        # The reference's targets move after the even updates only.
        assert moved > 1e-7 if u % 2 == 0 else moved == 0.0, f"{tag}: {net} moved {moved}"
        close(tag, f"{net} move", got, want, MOVES)


@pytest.mark.parametrize("name", list(ALGOS))
def test_three_updates(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three consecutive updates (indices 0, 1, 2) against the authors' update_parameters."""
    ag, state0 = make(name)
    replay_draws(monkeypatch, name, KEY)
    outs = run_updates(ag, state0, [batch(name, u) for u in range(UPDATES)])
    for u, out in enumerate(outs):
        check_update(name, ag, u, out)
    # What the fixture covers: CAL's and SAC-AugLag's penalties act (the rectifier stays below
    # lambda) and SAC-AugLag's rectifier reaches lambda once (its clamp binds).
    rect_lam = [(float(fx(name, f"u{u}/rect")), float(fx(name, f"u{u}/lam"))) for u in range(3)]
    assert name == "saclag" or any(r < lam - 1e-3 for r, lam in rect_lam)
    assert name != "sacauglag" or any(r == pytest.approx(lam) for r, lam in rect_lam)
    if os.environ.get("ALGD_PARITY_REPORT"):
        print(f"\n{name}: largest deviations (absolute; relative where |value| > atol)")
        for key, (a, r) in sorted(DEVIATIONS.items()):
            print(f"  {key:32s} {a:9.2e} {r:9.2e}")
        DEVIATIONS.clear()
