"""algd against the authors' ALGD code, through the fixture scripts/reference_parity.py wrote.

The fixture holds the authors' VE-SDE and DDPM agents' weights, every random draw they made and
what they computed: at the initial weights (chains, L_A, the score target) and over three
consecutive updates (velocity mode for both variants; VE-SDE also in their Safety-Gym mode).
Here algd gets the same weights, batches and draws. Tolerance: float32
arithmetic in a different order (PyTorch vs XLA)
agrees to about 1e-6 relative; a few quantities pass through tanh, softmax and several layers,
so values are compared at rtol 1e-4 / atol 1e-5, gradients at rtol 1e-3 / atol 1e-6 (a gradient
entry near zero is a difference of large terms).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd.agents import build_agent, default_config
from algd.buffer import Batch
from algd.config import agent_from_dict
from algd.envs.base import EnvSpec, SafeEnv
from helpers import ROOT, Capture

FIXTURE = np.load(ROOT / "tests" / "fixtures" / "reference_parity.npz")
OBS, ACT, K, E, HIDDEN, UPDATES = 5, 2, 5, 4, 16, 3
BOX = ((-1.0, -1.0), (2.0, 1.0))
SPECS = {  # velocity mode: a discounted limit; navigation mode: limit 10 per 400-step episode
    "ve": EnvSpec("parity", OBS, ACT, *BOX, 1000, 3.0, "discounted"),
    "ddpm": EnvSpec("parity", OBS, ACT, *BOX, 1000, 3.0, "discounted"),
    "ve_nav": EnvSpec("parity-nav", OBS, ACT, *BOX, 400, 10.0, "episode"),
}
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
        agent=agent_from_dict(
            {
                "diffusion": "ddpm" if variant == "ddpm" else "ve",
                "critic_hidden": (HIDDEN, HIDDEN),
                "score_hidden": (HIDDEN, HIDDEN, HIDDEN),
                **agent,
            }
        ),
    )
    ag = build_agent(cfg, SPECS[variant])
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
        heads = ["eps_head", "score_head"] if variant == "ddpm" else ["score_head"]
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


def batch(variant: str, i: int) -> Batch:
    """Update i's minibatch, with the end-of-episode flags algd's loop stores for it: velocity
    mode, both critics stop where the authors' mask is 0; navigation mode, the flags
    of a Safety-Gymnasium navigation adapter (``reference_end = "goal"``) from the
    transition's terminated and goal_met."""
    b = {k: fx(variant, f"update{i}/batch/{k}") for k in ("state", "action", "reward", "cost")}
    reward_done = cost_done = 1.0 - fx(variant, f"update{i}/batch/mask")
    if variant == "ve_nav":
        env = SafeEnv(SPECS[variant])
        env.reference_end = "goal"
        flags = [
            env.reference_episode_end(bool(t), False, {"goal_met": bool(g)})
            for t, g in zip(
                fx(variant, f"update{i}/batch/terminated"),
                fx(variant, f"update{i}/batch/goal_met"),
                strict=True,
            )
        ]
        reward_done, cost_done = (np.asarray(f, np.float32) for f in zip(*flags, strict=True))
    next_obs = fx(variant, f"update{i}/batch/next_state")
    return Batch(b["state"], b["action"], b["reward"], b["cost"], next_obs, reward_done, cost_done)


@pytest.mark.parametrize("variant", ["ve", "ddpm"])
def test_reverse_chains(variant: str) -> None:
    ag, state = make(variant)
    obs = jnp.asarray(fx(variant, "point/state"))
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
def test_augmented_lagrangian_and_score_target(variant: str) -> None:
    ag, state = make(variant)
    obs = jnp.asarray(fx(variant, "point/state"))
    feats = ag.critic_features(state, obs)
    points = jnp.asarray(fx(variant, "point/action"))[None]
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


def assert_trees_close(got: Any, want: Any, **tol: float) -> None:
    """Leaf by leaf, with the same structure (no leaf unpaired)."""
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(g, w, **tol)


def update_draws(variant: str, i: int, n: int) -> dict[str, jax.Array]:
    """Update i's draws in the authors' order: the critic target's chain at s' (start, K-1 step
    noises), then the actor's chain start, tau, its K-1 step noises, the Monte-Carlo
    perturbations."""
    d = draws_of(variant, f"update{i}")
    assert len(d) == 2 * K + 2
    return {
        "next": chain_draws(d[0], d[1:K], n),
        "actor": chain_draws(d[K], d[K + 2 : 2 * K + 1], n),
        "tau": jnp.asarray(d[K + 1]),
        "mc": jnp.asarray(d[2 * K + 1].transpose(1, 0, 2)),
    }


def run_updates(variant: str, **agent: Any) -> tuple[Any, list[Any]]:
    """UPDATES consecutive gradient steps of algd, in its own order (critics, actor,
    multiplier, targets at block index i), with the authors' batches and draws. Returns the
    final state and, per update, the metrics, the gradient handed to each optimiser and the
    state after it."""
    ag, state = make(variant, **agent)
    current: dict[str, jax.Array] = {}

    def next_action(st: Any, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        chain, _, _ = ag.chain(st.actor, obs, current["next"], deterministic=False)
        return ag.squash(chain.x0), jnp.zeros(obs.shape[:-1])

    ag.next_action = next_action  # type: ignore[method-assign]
    ag.q_tx, ag.qc_tx, ag.actor_tx = (Capture.of(tx) for tx in (ag.q_tx, ag.qc_tx, ag.actor_tx))
    captures = (ag.q_tx, ag.qc_tx, ag.actor_tx)

    @jax.jit  # one compiled call per update: much faster than running it op by op
    def one_update(state: Any, b: Batch, draws: dict[str, jax.Array], index: jax.Array) -> Any:
        current.update(draws)
        state, m_critic = ag.critic_step(state, b, jax.random.PRNGKey(0))
        state, m_actor = ag.actor_update(state, b, draws["actor"], draws["tau"], draws["mc"])
        mult_before = state.mult
        state, m_mult = ag.multiplier_step(state, b, jax.random.PRNGKey(0))
        state = ag.target_step(state.replace(step=state.step + 1), index)
        grads = [c.grad for c in captures]
        return state, {**m_critic, **m_actor, **m_mult}, grads, mult_before

    out = []
    for i in range(UPDATES):
        b = batch(variant, i)
        state, metrics, grads, mult_before = one_update(
            state, b, update_draws(variant, i, b.obs.shape[0]), jnp.int32(i)
        )
        out.append((metrics, grads, mult_before, state))
    return state, out


# The tests of the three updates share one worker, so each variant's updates compile and run
# once.
ON_ONE_WORKER = pytest.mark.xdist_group("parity_updates")


@pytest.fixture(scope="module", params=["ve", "ddpm", "ve_nav"])
def updates(request: pytest.FixtureRequest) -> tuple[str, Any]:
    return request.param, run_updates(request.param)[1]


@pytest.mark.parametrize("variant", ["ve", "ddpm", "ve_nav"])
def test_budget(variant: str) -> None:
    ag, _ = make(variant)
    assert ag.h == pytest.approx(float(fx(variant, "h")), rel=1e-6)


@ON_ONE_WORKER
def test_updates_losses_and_gradients(updates: tuple[str, Any]) -> None:
    """critics -> actor -> multiplier -> targets, as the authors' update_parameters(..., i)
    for i = 0, 1, 2: regression targets' losses, score loss, every parameter gradient."""
    variant, steps = updates
    for i, (metrics, grads, _, _) in enumerate(steps):
        p = f"update{i}/"
        for key, want, rel in (
            ("loss/q", "loss_q", 1e-4),
            ("loss/qc", "loss_qc", 1e-4),
            ("loss/score", "loss_score", 1e-3),
        ):
            assert float(metrics[key]) == pytest.approx(float(fx(variant, p + want)), rel=rel)
        for net, grad in zip(("critic", "qc", "policy"), grads, strict=True):
            assert_trees_close(grad, to_algd(variant, p + "grad", net), **GRADS)


@ON_ONE_WORKER
def test_updates_multiplier(updates: tuple[str, Any]) -> None:
    """The multiplier's gradient (d/d log lambda of mean(lambda (h - Qc_bar(s, a_replay))))
    and its value after each Adam step: a wrong violation magnitude, k, or the policy's actions
    in place of the replayed ones moves the gradient."""
    variant, steps = updates
    for i, (_, _, before, state) in enumerate(steps):
        p = f"update{i}/"
        want_grad = float(fx(variant, p + "log_lam_grad"))
        assert abs(want_grad) > 1e-3  # the constraint is far from slack or tight
        # The gradient algd's Adam took: its first moment is 0.9 m + 0.1 g.
        got_grad = (float(state.mult.adam_m) - 0.9 * float(before.adam_m)) / 0.1
        assert got_grad == pytest.approx(want_grad, rel=1e-4)
        want = float(fx(variant, p + "after/log_lam"))
        assert float(state.mult.log_lam) == pytest.approx(want, abs=1e-6)


@ON_ONE_WORKER
def test_updates_parameters_and_targets(updates: tuple[str, Any]) -> None:
    """Every parameter after each update; the targets move by tau x (online - target) at block
    indices 0 and 2 and stay put at 1."""
    variant, steps = updates
    for i, (_, _, _, state) in enumerate(steps):
        p = f"update{i}/after"
        for net, key in (("critic", "q"), ("qc", "qc"), ("policy", "actor")):
            assert_trees_close(getattr(state, key), to_algd(variant, p, net), rtol=1e-4, atol=2e-6)
        before_stage = "init" if i == 0 else f"update{i - 1}/after"
        for net, key in (("critic_targ", "q_targ"), ("qc_targ", "qc_targ")):
            before = jax.tree_util.tree_leaves(to_algd(variant, before_stage, net))
            after = jax.tree_util.tree_leaves(to_algd(variant, p, net))
            got = jax.tree_util.tree_leaves(getattr(state, key))
            if i == 1:  # no target update at an odd index: neither moves
                assert all(np.array_equal(b0, w) for b0, w in zip(before, after, strict=True))
                previous = jax.tree_util.tree_leaves(getattr(steps[0][3], key))
                for g, g0 in zip(got, previous, strict=True):
                    np.testing.assert_array_equal(np.asarray(g), np.asarray(g0))
                continue
            for g, b0, w in zip(got, before, after, strict=True):
                want = np.asarray(w) - np.asarray(b0)
                assert np.abs(want).max() > 1e-7
                np.testing.assert_allclose(
                    np.asarray(g) - np.asarray(b0), want, rtol=0.05, atol=5e-8
                )


# --- initialisation: the same distribution per layer as the authors' ----------------------------


def layer_scale(net: str, path: str) -> tuple[str, float]:
    """(kind, scale) of an initial weight leaf of algd's ``net``: ``normal`` (the value / scale
    is N(0, 1)), ``uniform`` (uniform in +-scale), ``zero`` or ``table`` (N(0, 1))."""
    if "b_in" in path or "bias" in path or "b_first" in path:
        return "zero", 1.0
    if "t_table" in path:
        return "table", 1.0
    first = OBS + ACT + (16 if net == "policy" else 0)
    if path.endswith(("w_state']", "w_action']", "w_s']", "w_x']", "w_t']")):
        fan_in, fan_out = first, HIDDEN
    else:
        fan_in = HIDDEN
        fan_out = ACT if "head" in path else (1 if "out" in path else HIDDEN)
    if net == "qc":
        return "normal", 1.0 / (2.0 * np.sqrt(fan_in))
    return "uniform", float(np.sqrt(6.0 / (fan_in + fan_out)))


def init_statistics(trees: list[Any], net: str) -> dict[str, np.ndarray]:
    """Every leaf of ``trees`` divided by its nominal scale, pooled by kind."""
    pooled: dict[str, list[np.ndarray]] = {}
    for tree in trees:
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            kind, scale = layer_scale(net, jax.tree_util.keystr(path))
            pooled.setdefault(kind, []).append(np.ravel(np.asarray(leaf)) / scale)
    return {k: np.concatenate(v) for k, v in pooled.items()}


def tail_share(values: np.ndarray, kind: str) -> float:
    """The share beyond 2 (normal kinds: 4.55%, none once truncated at 2 std) or 0.9 (uniform
    in +-1: 10%)."""
    return float(np.mean(np.abs(values) > (0.9 if kind == "uniform" else 2.0)))


@pytest.mark.parametrize("net", ["critic", "qc", "policy"])
def test_initial_weights_match_the_authors_distribution(net: str) -> None:
    """algd's initial weights, pooled over eight keys, against the authors' init/ arrays (one
    variant's: the authors' variants share one seed, so their critics and trunks are the same
    draws; DDPM's policy has both heads): the same standard deviation and share in the tails
    per kind of layer, within five standard errors of the authors' sample; biases zero."""
    variant = "ddpm" if net == "policy" else "ve"
    ag, _ = make(variant)
    key = {"critic": "q", "qc": "qc", "policy": "actor"}[net]
    ours = [getattr(ag.init(jax.random.PRNGKey(s)), key) for s in range(8)]
    got = init_statistics(ours, net)
    want = init_statistics([to_algd(variant, "init", net)], net)
    assert set(got) == set(want)
    for kind, w in want.items():
        g = got[kind]
        if kind == "zero":
            assert not np.any(g) and not np.any(w)
            continue
        n = len(w)
        assert np.std(g) == pytest.approx(np.std(w), abs=5 * np.std(w) / np.sqrt(2 * n))
        p = tail_share(w, kind)
        se = np.sqrt(max(p, 0.01) * (1 - p) / n)
        assert abs(tail_share(g, kind) - p) < 5 * se, kind
