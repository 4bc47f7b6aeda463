"""networks.py: the modules compute what the method states, and the rewrites that save work
(split first layers, the narrow-action product) compute what they replace."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd.networks import CriticEnsemble, ScoreNet, small_matmul_add


@pytest.mark.parametrize(
    ("base_shape", "x_shape"),
    [((1, 7, 16), (5, 7, 2)), ((7, 16), (7, 2)), ((16,), (3, 7, 2)), ((4, 1, 16), (4, 7, 3))],
)
def test_small_matmul_add_value_gradient_and_hessian(base_shape: tuple, x_shape: tuple) -> None:
    """Value, reverse-mode gradients (all three arguments, with broadcasting) and the
    forward-over-reverse Hessian in x agree with the plain ``base + x @ w``."""
    r = np.random.default_rng(0)
    base = jnp.asarray(r.standard_normal(base_shape), jnp.float32)
    x = jnp.asarray(r.standard_normal(x_shape), jnp.float32)
    w = jnp.asarray(r.standard_normal((x_shape[-1], 16)), jnp.float32)

    def ours(b: jax.Array, x: jax.Array, w: jax.Array) -> jax.Array:
        return jnp.sum(jnp.sin(small_matmul_add(b, x, w)))

    def plain(b: jax.Array, x: jax.Array, w: jax.Array) -> jax.Array:
        return jnp.sum(jnp.sin(b + x @ w))

    np.testing.assert_allclose(ours(base, x, w), plain(base, x, w), rtol=1e-5)
    for a, b in zip(
        jax.grad(ours, (0, 1, 2))(base, x, w), jax.grad(plain, (0, 1, 2))(base, x, w), strict=True
    ):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    h_ours = jax.hessian(lambda x: ours(base, x, w))(x)
    h_plain = jax.hessian(lambda x: plain(base, x, w))(x)
    np.testing.assert_allclose(h_ours, h_plain, rtol=1e-4, atol=1e-5)


def test_critic_ensemble_is_independent_mlps_on_the_concatenation() -> None:
    """Member j equals an MLP on [s, a] (SiLU) whose first weight is [w_state; w_action];
    members differ."""
    net = CriticEnsemble(5, 2, (32, 32), 3, "silu")
    r = np.random.default_rng(1)
    obs = jnp.asarray(r.standard_normal((8, 5)), jnp.float32)
    act = jnp.asarray(r.uniform(-1, 1, (8, 2)), jnp.float32)
    p = net.init(jax.random.PRNGKey(0), obs, act)["params"]
    out = net.apply({"params": p}, obs, act)
    assert out.shape == (3, 8)
    x = jnp.concatenate([obs, act], -1)
    for j in range(3):
        m = p[f"members_{j}"]
        w0 = jnp.concatenate([m["w_state"], m["w_action"]], 0)
        h = jax.nn.silu(x @ w0 + m["b_in"])
        h = jax.nn.silu(h @ m["layers_0"]["kernel"] + m["layers_0"]["bias"])
        expected = (h @ m["out"]["kernel"] + m["out"]["bias"])[:, 0]
        np.testing.assert_allclose(out[j], expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(out[0], out[1])


def test_split_first_layers_keep_dense_init_scale() -> None:
    """Each stored block of a first layer has the LeCun scale of the whole layer's fan-in
    (variance 1 / (obs + act [+ time])), as ``nn.Dense`` on the concatenation would."""
    net = CriticEnsemble(200, 56, (512,), 1)
    p = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 200)), jnp.zeros((1, 56)))["params"]
    for name in ("w_state", "w_action"):
        assert float(jnp.std(p["members_0"][name])) == pytest.approx(1 / np.sqrt(256), rel=0.05)
    score = ScoreNet(200, 40, (512,), time_dim=16)
    q = score.init(jax.random.PRNGKey(1), jnp.zeros((1, 200)), jnp.zeros((1, 40)), jnp.zeros(1))
    for name in ("w_s", "w_x", "w_t"):
        assert float(jnp.std(q["params"][name])) == pytest.approx(1 / np.sqrt(256), rel=0.08)


@pytest.mark.parametrize("scheme", ["xavier", "ensemble", "ensemble_truncated"])
def test_reference_initialisation(scheme: str) -> None:
    """Glorot uniform (limit sqrt(6 / (fan_in + fan_out))); the cost ensemble's normal of std
    1 / (2 sqrt(fan_in)), untruncated as the authors' code leaves it (4.55% beyond 2 std) or
    truncated at 2 std; for split first layers as for whole ones."""
    net = CriticEnsemble(76, 2, (256, 256), 2, "relu", scheme)
    p = net.init(jax.random.PRNGKey(0), np.zeros((1, 76)), np.zeros((1, 2)))["params"]
    layers = (
        (("members_0", "w_state"), 78, 256),
        (("members_1", "layers_0", "kernel"), 256, 256),
        (("members_0", "out", "kernel"), 256, 1),
    )
    for path, fan_in, fan_out in layers:
        w = p
        for part in path:
            w = w[part]
        w, name = np.asarray(w), "/".join(path)
        if scheme == "xavier":
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            std = bound / np.sqrt(3.0)
            assert np.abs(w).max() <= bound * (1 + 1e-6)
        elif scheme == "ensemble":
            std = 1.0 / (2.0 * np.sqrt(fan_in))
            if w.size > 10_000:  # enough draws for the tail share to be tight
                assert np.mean(np.abs(w) > 2 * std) == pytest.approx(0.0455, abs=0.006), name
        else:
            bound = 2.0 / (2.0 * np.sqrt(fan_in))
            std = 0.8796 / (2.0 * np.sqrt(fan_in))  # a standard normal cut at +-2 has std 0.88
            assert np.abs(w).max() <= bound * (1 + 1e-6)
        assert w.std() == pytest.approx(std, rel=0.15), name
    assert not np.asarray(p["members_0"]["b_in"]).any()


def test_score_net_heads_and_learned_step_table() -> None:
    """Each DDPM head is initialised as its own layer; the step embedding is a learned (K, 16)
    table drawn from N(0, 1), and steps index it."""
    net = ScoreNet(5, 2, (128, 128, 128), 16, 2, init_scheme="xavier", time_table=5)
    p = net.init(jax.random.PRNGKey(0), np.zeros((1, 5)), np.zeros((1, 2)), np.zeros(1, int))
    head = np.asarray(p["params"]["head"]["kernel"])
    assert head.shape == (128, 4) and np.abs(head).max() <= np.sqrt(6.0 / 130)
    table = np.asarray(p["params"]["t_table"])
    assert table.shape == (5, 16) and table.std() == pytest.approx(1.0, rel=0.2)
    t_feat = net.apply(p, jnp.arange(5), method="time_features")
    np.testing.assert_allclose(t_feat, table @ np.asarray(p["params"]["w_t"]), atol=1e-5)
