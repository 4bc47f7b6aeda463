"""algd against the authors' ALGD code, through the fixture scripts/reference_parity.py wrote.

The fixture holds the authors' VE-SDE and DDPM agents' weights, a batch, every random draw they
made and what they computed. Here algd gets the same weights, batch and draws. Tolerance: float32
arithmetic in a different order (PyTorch vs XLA)
agrees to about 1e-6 relative; a few quantities pass through tanh, softmax and several layers,
so values are compared at rtol 1e-4 / atol 1e-5, gradients at rtol 1e-3 / atol 1e-6 (a gradient
entry near zero is a difference of large terms).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from algd.agents import build_agent, default_config
from algd.buffer import Batch
from algd.config import AgentConfig
from algd.envs.base import EnvSpec
from helpers import ROOT

FIXTURE = np.load(ROOT / "tests" / "fixtures" / "reference_parity.npz")
OBS, ACT, K, E = 5, 2, 5, 4
SPEC = EnvSpec("parity", OBS, ACT, (-1.0, -1.0), (2.0, 1.0), 1000, 3.0, "discounted")
VALUES = {"rtol": 1e-4, "atol": 1e-5}
GRADS = {"rtol": 1e-3, "atol": 1e-6}


def fx(variant: str, key: str) -> np.ndarray:
    return FIXTURE[f"{variant}/{key}"]


def draws_of(variant: str, key: str) -> list[np.ndarray]:
    return [fx(variant, f"{key}/draw{i}") for i in range(int(fx(variant, f"{key}/n_draws")))]


def make(variant: str, **agent: Any):
    """algd's agent at the reference defaults, holding the authors' initial weights."""
    cfg = default_config(
        "algd",
        agent=AgentConfig(
            diffusion=variant,  # type: ignore[arg-type]
            critic_hidden=(32, 32),
            score_hidden=(32, 32, 32),
            **agent,
        ),
    )
    ag = build_agent(cfg, SPEC)
    state = ag.init(jax.random.PRNGKey(0))
    q, qc, actor = (to_algd(variant, "init", net) for net in ("critic", "qc", "policy"))
    state = state.replace(
        q=q,
        q_targ=to_algd(variant, "init", "critic_targ"),
        q_opt=ag.q_tx.init(q),
        qc=qc,
        qc_targ=to_algd(variant, "init", "qc_targ"),
        qc_opt=ag.qc_tx.init(qc),
        actor=actor,
        actor_opt=ag.actor_tx.init(actor),
    )
    assert float(state.mult.log_lam) == pytest.approx(float(fx(variant, "init/log_lam")))
    return ag, state


def to_algd(variant: str, stage: str, net: str) -> dict[str, Any]:
    """The authors' weights (or, with stage "update/grad", gradients) as algd's parameters."""

    def w(key: str) -> jax.Array:
        return jnp.asarray(fx(variant, f"{stage}/{net}/{key}"))

    out: dict[str, Any] = {}

    def member(first: jax.Array, b0: jax.Array, layers: list[tuple[jax.Array, jax.Array]]):
        """One critic's parameters from its (in, out) weights and biases."""
        (w1, b1), (w2, b2) = layers
        return {
            "w_state": first[:OBS],
            "w_action": first[OBS:],
            "b_in": b0,
            "layers_0": {"kernel": w1, "bias": b1},
            "out": {"kernel": w2, "bias": b2},
        }

    if net.startswith("critic"):
        for j, (l1, l2, l3) in enumerate((("1", "2", "3"), ("4", "5", "6"))):
            out[f"members_{j}"] = member(
                w(f"linear{l1}.weight").T,
                w(f"linear{l1}.bias"),
                [(w(f"linear{i}.weight").T, w(f"linear{i}.bias")) for i in (l2, l3)],
            )
    elif net.startswith("qc"):
        for j in range(E):
            out[f"members_{j}"] = member(
                w("nn1.weight")[j],
                w("nn1.bias")[j],
                [(w(f"nn{i}.weight")[j], w(f"nn{i}.bias")[j]) for i in (2, 3)],
            )
    else:
        first = w("mlp.0.weight").T
        heads = ["score_head"] if variant == "ve" else ["eps_head", "score_head"]
        out = {
            "w_s": first[:OBS],
            "w_x": first[OBS : OBS + ACT],
            "w_t": first[OBS + ACT :],
            "b_first": w("mlp.0.bias"),
            "t_table": w("time_embedding.weight"),
            "trunk_0": {"kernel": w("mlp.2.weight").T, "bias": w("mlp.2.bias")},
            "trunk_1": {"kernel": w("mlp.4.weight").T, "bias": w("mlp.4.bias")},
            "head": {
                "kernel": jnp.concatenate([w(f"{h}.weight").T for h in heads], axis=1),
                "bias": jnp.concatenate([w(f"{h}.bias") for h in heads]),
            },
        }
    return out


def chain_draws(start: np.ndarray | None, steps: list[np.ndarray], n: int) -> jax.Array:
    """The authors' draws (start point, then the noise of steps K-1..1) in algd's layout
    (B, K + 1, act): [start, noise of step 0 (unused), noise of step 1, ..., of step K-1]."""
    out = np.zeros((n, K + 1, ACT), np.float32)
    if start is not None:
        out[:, 0] = start
    for i, z in enumerate(steps):
        out[:, K - i] = z
    return jnp.asarray(out)


def batch(variant: str) -> Batch:
    b = {k: fx(variant, f"batch/{k}") for k in ("state", "action", "reward", "cost")}
    done = 1.0 - fx(variant, "batch/mask")
    return Batch(
        b["state"], b["action"], b["reward"], b["cost"], fx(variant, "batch/next_state"), done, done
    )


@pytest.mark.parametrize("variant", ["ve", "ddpm"])
def test_reverse_chains(variant: str) -> None:
    ag, state = make(variant)
    obs = jnp.asarray(fx(variant, "batch/state"))
    n = obs.shape[0]
    d = draws_of(variant, "chain/stochastic")
    chain, _, _ = ag.chain(state.actor, obs, chain_draws(d[0], d[1:], n), deterministic=False)
    np.testing.assert_allclose(ag.squash(chain.x0), fx(variant, "chain/stochastic"), **VALUES)
    d = draws_of(variant, "chain/deterministic")  # DDPM's evaluation still injects noise
    draws = chain_draws(None, d, n) if d else None
    assert bool(d) == (variant == "ddpm")
    chain, _, _ = ag.chain(state.actor, obs, draws, deterministic=True)
    np.testing.assert_allclose(ag.squash(chain.x0), fx(variant, "chain/deterministic"), **VALUES)


@pytest.mark.parametrize("variant", ["ve", "ddpm"])
def test_augmented_lagrangian_andscore_target(variant: str) -> None:
    ag, state = make(variant)
    obs = jnp.asarray(fx(variant, "batch/state"))
    feats = ag.critic_features(state, obs)
    points = jnp.asarray(fx(variant, "batch/action"))[None]
    energy, grad = ag.energy_and_grad(state, *feats, points)
    np.testing.assert_allclose(energy[0], fx(variant, "energy/value"), **VALUES)
    np.testing.assert_allclose(grad[0], fx(variant, "energy/grad"), **GRADS)

    a_tau, tau = fx(variant, "score_target/a_tau"), fx(variant, "score_target/tau")
    (noise,) = draws_of(variant, "score_target")  # (B, N, act)
    sigma = np.asarray(ag.sched.sigma)[tau]
    y_mc = jnp.asarray(a_tau[None] + sigma[None, :, None] * noise.transpose(1, 0, 2))
    energies, grads = ag.energy_and_grad(state, *feats, y_mc)
    target = ag.score_target(y_mc, energies, grads)
    np.testing.assert_allclose(target, fx(variant, "score_target/value"), **GRADS)


class Capture(NamedTuple):
    """An optimiser (optax.GradientTransformation) that records the gradient it is handed."""

    init: Any
    update: Any
    grads: list[Any]

    @classmethod
    def of(cls, inner: optax.GradientTransformation) -> Capture:
        grads: list[Any] = []

        def update(g: Any, opt_state: Any, params: Any = None) -> Any:
            grads.append(g)
            return inner.update(g, opt_state, params)

        return cls(inner.init, update, grads)

    @property
    def grad(self) -> Any:
        return self.grads[-1]


@pytest.mark.parametrize("variant", ["ve", pytest.param("ddpm", marks=pytest.mark.slow)])
def test_one_whole_update(variant: str) -> None:
    """critics -> actor -> multiplier -> targets, as the authors' update_parameters(…, 0)."""
    ag, state = make(variant)
    b = batch(variant)
    n = b.obs.shape[0]
    d = draws_of(variant, "update")
    # The draws in the authors' order: the critic target's chain at s' (start, K-1 steps),
    # then the actor's chain start, tau, its K-1 step noises, the Monte-Carlo perturbations.
    next_draws = chain_draws(d[0], d[1:K], n)
    start, tau, steps, mc = d[K], d[K + 1], d[K + 2 : 2 * K + 1], d[2 * K + 1]
    actor0 = state.actor

    def next_action(st: Any, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        chain, _, _ = ag.chain(actor0, obs, next_draws, deterministic=False)
        return ag.squash(chain.x0), jnp.zeros(obs.shape[:-1])

    ag.next_action = next_action  # type: ignore[method-assign]
    ag.q_tx, ag.qc_tx, ag.actor_tx = (Capture.of(tx) for tx in (ag.q_tx, ag.qc_tx, ag.actor_tx))

    captures = (ag.q_tx, ag.qc_tx, ag.actor_tx)

    @jax.jit  # one compiled call: much faster than running the update op by op
    def whole_update(state: Any) -> Any:
        state, m_critic = ag.critic_step(state, b, jax.random.PRNGKey(0))
        chain = chain_draws(start, steps, n)
        mc_noise = jnp.asarray(mc.transpose(1, 0, 2))
        state, m_actor = ag.actor_update(state, b, chain, jnp.asarray(tau), mc_noise)
        state, _ = ag.multiplier_step(state, b, jax.random.PRNGKey(0))
        state = ag.target_step(state.replace(step=state.step + 1), jnp.int32(0))
        return state, m_critic, m_actor, [c.grad for c in captures]

    state, m_critic, m_actor, grads = whole_update(state)
    assert float(m_critic["loss/q"]) == pytest.approx(float(fx(variant, "update/loss_q")), rel=1e-4)
    assert float(m_critic["loss/qc"]) == pytest.approx(
        float(fx(variant, "update/loss_qc")), rel=1e-4
    )
    assert float(m_actor["loss/score"]) == pytest.approx(
        float(fx(variant, "update/loss_score")), rel=1e-3
    )
    for net, grad in zip(("critic", "qc", "policy"), grads, strict=True):
        got = jax.tree_util.tree_leaves(grad)
        want = jax.tree_util.tree_leaves(to_algd(variant, "update/grad", net))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, **GRADS)
    assert float(state.mult.log_lam) == pytest.approx(float(fx(variant, "after/log_lam")), abs=1e-7)
    for net, key in (("critic", "q"), ("qc", "qc"), ("policy", "actor")):
        for g, w in zip(
            jax.tree_util.tree_leaves(getattr(state, key)),
            jax.tree_util.tree_leaves(to_algd(variant, "after", net)),
        ):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=2e-6)
    # The targets move by tau x (one Adam step), about 1e-6: compare the moves themselves.
    for net, key in (("critic_targ", "q_targ"), ("qc_targ", "qc_targ")):
        before = jax.tree_util.tree_leaves(to_algd(variant, "init", net))
        after = jax.tree_util.tree_leaves(to_algd(variant, "after", net))
        for g, b0, w in zip(jax.tree_util.tree_leaves(getattr(state, key)), before, after):
            want = np.asarray(w) - np.asarray(b0)
            assert np.abs(want).max() > 1e-7
            np.testing.assert_allclose(np.asarray(g) - np.asarray(b0), want, rtol=0.05, atol=5e-8)
