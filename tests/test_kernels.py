"""The compiled critic kernel (algd/kernels.py) against the JAX computation it replaces."""

from __future__ import annotations

import shutil
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd import kernels
from algd.agents import build_agent, resolve_config
from algd.buffer import Batch
from algd.config import TrainConfig
from algd.envs.base import EnvSpec
from algd.networks import CriticEnsemble, apply_net
from helpers import run_cli

# Where the CPU has AVX-512 and a compiler exists, the test command has built the kernel
# (scripts/setup.sh), so it must be usable: these tests then fail rather than skip.
BUILDABLE = kernels.cpu_supported() and shutil.which("g++") is not None
needs_kernel = pytest.mark.skipif(not BUILDABLE, reason="no AVX-512 CPU or no C++ compiler")


def _critic(obs_dim: int, act_dim: int, hidden: tuple[int, int], num: int, act: str, seed: int):
    net = CriticEnsemble(obs_dim, act_dim, hidden, num, act)
    params = net.init(jax.random.PRNGKey(seed), jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim)))
    # Non-zero biases, so that every parameter takes part.
    leaves, tree = jax.tree_util.tree_flatten(params["params"])
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    leaves = [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    return net, jax.tree_util.tree_unflatten(tree, leaves)


@needs_kernel
def test_kernel_is_available_here() -> None:
    assert kernels.unavailable_reason((256, 256), "silu") is None


@needs_kernel
@pytest.mark.parametrize(
    ("act", "hidden", "act_dim", "n", "states"),
    [
        ("relu", (256, 256), 2, 5, 256),  # the reference shapes
        ("silu", (256, 256), 2, 5, 256),
        ("silu", (64, 96), 3, 3, 7),  # rows not a multiple of the block or micro-tile
        ("relu", (32, 32), 1, 1, 1),
    ],
)
def test_kernel_matches_jax(act: str, hidden: tuple, act_dim: int, n: int, states: int) -> None:
    net, params = _critic(11, act_dim, hidden, 2, act, seed=3)
    r = np.random.default_rng(0)
    obs = jnp.asarray(r.standard_normal((states, 11)), jnp.float32)
    actions = jnp.asarray(r.uniform(-1.5, 1.5, (n, states, act_dim)), jnp.float32)
    feats = apply_net(net, params, obs, method="state_features")
    q_ref, g_ref = kernels.critic_value_grad_reference(net, params, feats, actions)
    for j in range(2):
        q, g = jax.jit(kernels.critic_value_grad, static_argnums=(3, 4))(
            feats[j], actions, params, j, act
        )
        assert q.shape == (n, states) and g.shape == (n, states, act_dim)
        scale_q = float(jnp.abs(q_ref[j]).max())
        scale_g = float(jnp.abs(g_ref[j]).max())
        assert float(jnp.abs(q - q_ref[j]).max()) <= 2e-6 * scale_q + 1e-6
        assert float(jnp.abs(g - g_ref[j]).max()) <= 2e-6 * scale_g + 1e-6


def _min_reference(net, params, feats, actions):
    """Q (2, *N, S) and the action gradient of Q.min(0), by reverse mode through JAX."""
    lead = tuple(f.reshape((1,) * (actions.ndim - f.ndim) + f.shape) for f in feats)
    q, pull = jax.vjp(lambda a: apply_net(net, params, lead, a, method="from_features"), actions)
    q_min, pull_min = jax.vjp(lambda v: v.min(0), q)
    return q, pull(pull_min(jnp.ones_like(q_min))[0])[0]


@needs_kernel
@pytest.mark.parametrize(
    ("act", "hidden", "act_dim", "n", "states"),
    [
        ("relu", (256, 256), 2, 5, 256),  # the reward critics at the reference shapes
        ("silu", (64, 96), 3, 3, 7),
        ("relu", (32, 32), 1, 1, 1),
    ],
)
def test_min_kernel_matches_reverse_mode_of_the_minimum(
    act: str, hidden: tuple, act_dim: int, n: int, states: int
) -> None:
    net, params = _critic(11, act_dim, hidden, 2, act, seed=5)
    r = np.random.default_rng(1)
    obs = jnp.asarray(r.standard_normal((states, 11)), jnp.float32)
    actions = jnp.asarray(r.uniform(-1.5, 1.5, (n, states, act_dim)), jnp.float32)
    feats = apply_net(net, params, obs, method="state_features")
    q_ref, g_ref = _min_reference(net, params, feats, actions)
    smaller = np.asarray(q_ref[0] < q_ref[1])
    if n * states > 20:  # both members are the minimum somewhere
        assert smaller.any() and (~smaller).any()
    q, g = jax.jit(kernels.critic_min_value_grad, static_argnums=3)(feats, actions, params, act)
    assert q.shape == (2, n, states) and g.shape == (n, states, act_dim)
    assert float(jnp.abs(q - q_ref).max()) <= 2e-6 * float(jnp.abs(q_ref).max()) + 1e-6
    assert float(jnp.abs(g - g_ref).max()) <= 2e-6 * float(jnp.abs(g_ref).max()) + 1e-6


@needs_kernel
def test_min_kernel_splits_ties_and_propagates_nan() -> None:
    """Equal members: half of each member's gradient (reverse mode's rule for min), which is
    the one gradient; a value that is not a number gives a gradient that is not a number."""
    net, params = _critic(5, 2, (32, 64), 2, "relu", seed=7)
    twin = {k.replace("m0_", "m1_"): v for k, v in params.items() if k.startswith("m0_")}
    params = {**params, **twin}
    r = np.random.default_rng(2)
    obs = jnp.asarray(r.standard_normal((6, 5)), jnp.float32)
    actions = jnp.asarray(r.uniform(-1, 1, (2, 6, 2)), jnp.float32)
    feats = apply_net(net, params, obs, method="state_features")
    q_ref, g_ref = kernels.critic_value_grad_reference(net, params, feats, actions)
    q, g = kernels.critic_min_value_grad(feats, actions, params, "relu")
    assert np.array_equal(np.asarray(q[0]), np.asarray(q[1]))
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref[0]), rtol=2e-6, atol=1e-6)
    actions = actions.at[1, 3, 0].set(jnp.nan)
    q, g = kernels.critic_min_value_grad(feats, actions, params, "relu")
    bad = np.zeros((2, 6), bool)
    bad[1, 3] = True
    assert np.isnan(np.asarray(g)[bad]).all() and np.isfinite(np.asarray(g)[~bad]).all()


@needs_kernel
@pytest.mark.parametrize(
    ("act", "hidden", "act_dim", "rows"),
    [("silu", (256, 256), 2, 256), ("relu", (64, 96), 3, 7), ("silu", (32, 64), 1, 50)],
)
def test_training_kernel_matches_value_and_grad(act: str, hidden: tuple, act_dim: int, rows: int):
    """The critics' regression loss and its gradient for every parameter of every member."""
    net, params = _critic(11, act_dim, hidden, 2, act, seed=7)
    r = np.random.default_rng(3)
    obs = jnp.asarray(r.standard_normal((rows, 11)), jnp.float32)
    actions = jnp.asarray(r.uniform(-1, 1, (rows, act_dim)), jnp.float32)
    targets = jnp.asarray(r.standard_normal((2, rows)), jnp.float32)
    for j in range(2):

        def loss(p, j=j):
            return jnp.mean(jnp.square(apply_net(net, p, obs, actions)[j] - targets[j]))

        ref_loss, ref_grad = jax.value_and_grad(loss)(params)
        got_loss, got_grad = jax.jit(kernels.critic_loss_grad, static_argnums=(4, 5))(
            obs, actions, targets[j], params, j, act
        )
        assert float(got_loss) == pytest.approx(float(ref_loss), rel=1e-5)
        assert set(got_grad) == {k for k in params if k.startswith(f"m{j}_")}
        for name, g in got_grad.items():
            scale = float(jnp.abs(ref_grad[name]).max())
            assert scale > 0, name  # every parameter of the member gets a gradient
            assert float(jnp.abs(g - ref_grad[name]).max()) <= 1e-5 * scale + 1e-7, name


@needs_kernel
def test_kernel_is_deterministic() -> None:
    net, params = _critic(76, 2, (256, 256), 1, "silu", seed=5)
    r = np.random.default_rng(1)
    obs = jnp.asarray(r.standard_normal((256, 76)), jnp.float32)
    actions = jnp.asarray(r.uniform(-1, 1, (5, 256, 2)), jnp.float32)
    feats = apply_net(net, params, obs, method="state_features")
    f = jax.jit(lambda a: kernels.critic_value_grad(feats[0], a, params, 0, "silu"))
    first = jax.device_get(f(actions))
    for _ in range(3):
        again = jax.device_get(f(actions))
        assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])


def _agent(critic_kernel: str, **agent: object):
    cfg = resolve_config(TrainConfig(algo="algd", env="shapes", utd=2, batch_size=64))
    cfg = replace(cfg, agent=replace(cfg.agent, critic_kernel=critic_kernel, **agent))
    spec = EnvSpec("shapes", 9, 2, (-1.0, -2.0), (1.0, 2.0), 100, 5.0, "episode")
    return build_agent(cfg, spec)


@needs_kernel
@pytest.mark.parametrize("algo_kw", [{}, {"diffusion": "ddpm", "score_space": "latent"}])
def test_algd_update_with_kernel_matches_xla(algo_kw: dict) -> None:
    """Three fused updates (two gradient steps each) from the same state: every metric and
    every parameter agree with the plain JAX path to float rounding."""
    r = np.random.default_rng(2)
    u, b = 2, 64
    batch = Batch(
        r.standard_normal((u, b, 9)).astype(np.float32),
        r.uniform(-1, 1, (u, b, 2)).astype(np.float32),
        r.standard_normal((u, b)).astype(np.float32),
        (r.uniform(size=(u, b)) < 0.1).astype(np.float32),
        r.standard_normal((u, b, 9)).astype(np.float32),
        r.uniform(size=(u, b)).astype(np.float32),
        r.uniform(size=(u, b)).astype(np.float32),
    )
    out = {}
    for choice in ("xla", "native"):
        agent = _agent(choice, **algo_kw)
        assert agent.critic_kernel == (choice == "native")
        state = agent.init(jax.random.PRNGKey(0))
        for i in range(3):
            state, metrics = agent.update(state, batch, jax.random.PRNGKey(1), np.uint32(i))
        out[choice] = jax.device_get((state, metrics))
    (s_x, m_x), (s_n, m_n) = out["xla"], out["native"]
    for k in m_x:
        assert m_n[k] == pytest.approx(m_x[k], rel=1e-4, abs=1e-6), k
    for a, b_ in zip(jax.tree_util.tree_leaves(s_x), jax.tree_util.tree_leaves(s_n)):
        np.testing.assert_allclose(np.asarray(b_), np.asarray(a), rtol=1e-3, atol=1e-5)
    # The actor moved (the comparison is not between two untouched initial states).
    init = _agent("xla", **algo_kw).init(jax.random.PRNGKey(0))["actor"]
    moved = jax.tree_util.tree_map(lambda x, y: float(np.abs(x - y).max()), s_n["actor"], init)
    assert max(jax.tree_util.tree_leaves(moved)) > 1e-5


def test_unusable_kernel_is_an_error_only_when_required() -> None:
    hidden = {"critic_hidden": (256, 256, 256)}
    assert _agent("auto", **hidden).critic_kernel is False
    assert _agent("xla").critic_kernel is False
    with pytest.raises(kernels.KernelError, match="two hidden layers"):
        _agent("native", **hidden)


def test_cli_names_the_reason_in_one_line(tmp_path) -> None:
    out = run_cli(
        "train",
        "--preset",
        "toy",
        "--algo",
        "algd",
        "--run-dir",
        str(tmp_path / "run"),
        "--agent.critic-kernel",
        "native",
        "--agent.critic-hidden",
        "64",
        "64",
        "64",
    )
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "critic_kernel=native" in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()


@needs_kernel
def test_bench_speed_counts_the_kernels_flops() -> None:
    """bench-speed names the critic path, and its FLOPs include the critic pass that XLA's cost
    analysis cannot see inside the kernel: at batch 32 the six critics' forward and backward to
    the action at the 5 x 32 chain and Monte-Carlo points alone are 6 x 2 x (2 x 160 x 256 x 256)
    FLOPs (the hidden layer's two products)."""
    from algd.bench.speed import bench_speed

    out = bench_speed("algd", "ToyRing-v0", utd=1, batch_size=32, seconds=0.2, seed=0)
    assert out["critic_kernel"] == "native"
    assert out["flops_per_update"] > 6 * 2 * (2 * 160 * 256 * 256)


@needs_kernel
@pytest.mark.parametrize("act", ["relu", "silu"])
def test_kernel_propagates_nan(act: str) -> None:
    """A non-finite input stays non-finite (the training loop's divergence check relies on it)."""
    net, params = _critic(5, 2, (32, 32), 1, act, seed=9)
    obs = jnp.zeros((4, 5))
    actions = jnp.zeros((1, 4, 2)).at[0, 1, 0].set(jnp.nan)
    feats = apply_net(net, params, obs, method="state_features")
    q, g = kernels.critic_value_grad(feats[0], actions, params, 0, act)
    assert np.isnan(np.asarray(q)[0, 1]) and np.isfinite(np.asarray(q)[0, [0, 2, 3]]).all()
    assert np.isfinite(np.asarray(g)[0, [0, 2, 3]]).all()
