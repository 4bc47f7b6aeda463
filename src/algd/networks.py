"""Flax modules: critic ensembles, the tanh-Gaussian actor, and the time-conditioned score network.

Only modules live here; losses are in ``agents/``. Every first layer that reads a concatenation
[s, x] is written as ``W_s s + W_x x + b`` (an exact rewrite of ``Dense([s, x])``), so that a
caller evaluating many actions or many denoising steps at the same state computes the state part
once (``state_features``) and reuses it (``from_features``). This saves first-layer FLOPs across
the K denoising steps and the N Monte-Carlo samples without changing any value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"relu": nn.relu, "silu": nn.silu}


def apply_net(module: nn.Module, params: Any, *args: Any, method: str | None = None) -> Any:
    """``module.apply`` on a params tree (Flax's own return type is too loose to check)."""
    return module.apply({"params": params}, *args, method=method)


@jax.custom_jvp
def _fma_rows(base: jax.Array, x: jax.Array, w: jax.Array) -> jax.Array:
    out = base
    for i in range(x.shape[-1]):
        out = out + x[..., i : i + 1] * w[i]
    return out


@_fma_rows.defjvp
def _fma_rows_jvp(primals: Any, tangents: Any) -> tuple[jax.Array, jax.Array]:
    # The tangent map written with matrix products: its transpose (reverse mode) is then one
    # product g @ w.T for the action's cotangent, so the element-wise work that produced g
    # (the activation's derivative) is done once, not once per action component.
    base, x, w = primals
    d_base, d_x, d_w = tangents
    return _fma_rows(base, x, w), d_base + d_x @ w + x @ d_w


def small_matmul_add(base: jax.Array, x: jax.Array, w: jax.Array) -> jax.Array:
    """base + x @ w for a narrow x (*B, d) with small d (the action): written as d broadcast
    multiply-adds, which XLA fuses into the activation that follows (a matrix product with a
    contraction of 2 is a separate, poorly shaped operation on the CPU backend). Its
    derivative uses matrix products again, so that the cotangent is formed once. Measured side
    by side on the whole ALGD update in docs/performance.md."""
    if x.shape[-1] > 8:
        return base + x @ w
    return _fma_rows(base, x, w)


INIT_SCHEMES = ("lecun", "xavier", "ensemble", "ensemble_truncated", "torch")


def weight_init(scheme: str, fan_in: int, blocks: int = 1) -> Callable[..., jax.Array]:
    """Init of a (rows, out) weight that is the first ``rows`` rows of a (fan_in, out) layer
    (a first layer reading a concatenation stores each part as its own parameter; each part
    gets the distribution it would have inside the whole matrix). ``blocks`` > 1 splits the
    output columns into that many layers initialised separately (two heads on one trunk).

    lecun: LeCun normal (Flax's Dense default). xavier: Glorot uniform, limit
    sqrt(6 / (fan_in + fan_out)) (the reference's reward critics, actors and score network).
    ensemble: normal of std 1 / (2 sqrt(fan_in)) (the reference's cost-critic ensemble: its
    truncation loop rebinds a local variable, so the weights keep the untruncated draw);
    ensemble_truncated: the same normal truncated at two standard deviations. torch: uniform in +-1 / sqrt(fan_in) (PyTorch's default
    for a linear layer, weights and biases; the reference's lambda(s) network)."""

    def one(key: jax.Array, out: int, dtype: Any) -> jax.Array:
        shape = (fan_in, out)
        if scheme == "xavier":
            return nn.initializers.xavier_uniform()(key, shape, dtype)
        if scheme == "ensemble":
            std = 1.0 / (2.0 * float(np.sqrt(fan_in)))
            return std * jax.random.normal(key, shape, dtype)
        if scheme == "ensemble_truncated":
            std = 1.0 / (2.0 * float(np.sqrt(fan_in)))
            return std * jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)
        if scheme == "torch":
            return torch_uniform(fan_in)(key, shape, dtype)
        return nn.initializers.lecun_normal()(key, shape, dtype)

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        width = shape[-1] // blocks
        keys = jax.random.split(key, blocks) if blocks > 1 else [key]
        full = jnp.concatenate([one(k, width, dtype) for k in keys], axis=-1)
        return full[: shape[0]]

    return init


def torch_uniform(fan_in: int) -> Callable[..., jax.Array]:
    """Uniform in +-1 / sqrt(fan_in), any shape."""
    bound = 1.0 / float(np.sqrt(fan_in))

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, tuple(shape), dtype, -bound, bound)

    return init


def dense(width: int, scheme: str, fan_in: int, blocks: int = 1) -> nn.Dense:
    bias = torch_uniform(fan_in) if scheme == "torch" else nn.initializers.zeros
    return nn.Dense(width, kernel_init=weight_init(scheme, fan_in, blocks), bias_init=bias)


class StateMLP(nn.Module):
    """An MLP on the state: obs (*B, obs_dim) -> (*B,) (a value V(s), or HJ's lambda(s) before
    its softplus). ReLU hidden layers."""

    hidden: Sequence[int]
    init_scheme: str = "lecun"  # one of INIT_SCHEMES

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        h = obs
        for width in self.hidden:
            h = nn.relu(dense(width, self.init_scheme, h.shape[-1])(h))
        return dense(1, self.init_scheme, h.shape[-1])(h)[..., 0]


class Critic(nn.Module):
    """One MLP critic Q(s, a) on the concatenation [s, a].

    The first layer is stored as its state rows ``w_state`` and action rows ``w_action`` (the
    same layer as ``Dense([s, a])``), so that many actions at one state share the state part.
    """

    obs_dim: int
    act_dim: int
    hidden: Sequence[int]
    activation: str = "relu"
    init_scheme: str = "lecun"  # one of INIT_SCHEMES

    def setup(self) -> None:
        first = weight_init(self.init_scheme, self.obs_dim + self.act_dim)
        width = self.hidden[0]
        self.w_state = self.param("w_state", first, (self.obs_dim, width))
        self.w_action = self.param("w_action", first, (self.act_dim, width))
        self.b_in = self.param("b_in", nn.initializers.zeros, (width,))
        widths = list(self.hidden)
        self.layers = [dense(w, self.init_scheme, fan) for fan, w in zip(widths, widths[1:])]
        self.out = dense(1, self.init_scheme, widths[-1])

    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        return self.from_features(self.state_features(obs), action)

    def state_features(self, obs: jax.Array) -> jax.Array:
        """obs (*S, obs_dim) -> the first layer's state part plus bias, (*S, hidden[0])."""
        return obs @ self.w_state + self.b_in

    def from_features(self, feat: jax.Array, action: jax.Array) -> jax.Array:
        """State features broadcastable with action (*T, act_dim) -> Q (*T')."""
        act = ACTIVATIONS[self.activation]
        h = act(small_matmul_add(feat, action, self.w_action))
        for layer in self.layers:
            h = act(layer(h))
        return self.out(h)[..., 0]


class CriticEnsemble(nn.Module):
    """``num`` independent critics Q_j(s, a): obs (*B, obs_dim), action (*B, act_dim) ->
    (num, *B). Member j's parameters are ``params["members_j"]``.

    The members run as separate products rather than one batched product over stacked weights:
    on XLA's CPU backend the batched form was the slower one (docs/performance.md).
    """

    obs_dim: int
    act_dim: int
    hidden: Sequence[int]
    num: int
    activation: str = "relu"
    init_scheme: str = "lecun"  # one of INIT_SCHEMES

    def setup(self) -> None:
        self.members = [
            Critic(self.obs_dim, self.act_dim, self.hidden, self.activation, self.init_scheme)
            for _ in range(self.num)
        ]

    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        return self.from_features(self.state_features(obs), action)

    def state_features(self, obs: jax.Array) -> tuple[jax.Array, ...]:
        """obs (*S, obs_dim) -> each member's state features, num x (*S, hidden[0])."""
        return tuple(m.state_features(obs) for m in self.members)

    def from_features(self, feats: Sequence[jax.Array], action: jax.Array) -> jax.Array:
        """feats num x (*S, h0), each broadcastable with action (*T, act_dim) -> Q (num, *T')."""
        return jnp.stack([m.from_features(f, action) for m, f in zip(self.members, feats)])


class GaussianActor(nn.Module):
    """Tanh-squashed Gaussian policy head: obs (*B, obs_dim) -> mean, log_std (*B, act_dim)."""

    act_dim: int
    hidden: Sequence[int]
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    init_scheme: str = "lecun"  # one of INIT_SCHEMES

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = obs
        for width in self.hidden:
            h = nn.relu(dense(width, self.init_scheme, h.shape[-1])(h))
        fan_in = h.shape[-1]
        mean = dense(self.act_dim, self.init_scheme, fan_in)(h)
        log_std = dense(self.act_dim, self.init_scheme, fan_in)(h)
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


def squashed_action(
    mean: jax.Array,
    log_std: jax.Array,
    noise: jax.Array | None,
    deterministic: bool,
    scale: jax.Array,
    bias: jax.Array,
) -> jax.Array:
    """The tanh-Gaussian actor's action in the box: tanh(mean + std noise) scaled (tanh(mean)
    when deterministic or without noise)."""
    u = mean if deterministic or noise is None else mean + jnp.exp(log_std) * noise
    return jnp.tanh(u) * scale + bias


def time_embedding(t: jax.Array, dim: int) -> jax.Array:
    """Sinusoidal embedding of integer steps t (*B,) -> (*B, dim)."""
    half = dim // 2
    freqs = jnp.exp(-jnp.log(10000.0) * jnp.arange(half) / max(half - 1, 1))
    angles = t.astype(jnp.float32)[..., None] * freqs
    emb = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
    return jnp.pad(emb, [(0, 0)] * t.ndim + [(0, dim - 2 * half)])


class ScoreNet(nn.Module):
    """Time-conditioned network phi(s, x, t) (MLP on [s, x, embedding(t)]).

    ``out_heads`` = 1 gives the VE-SDE score; 2 gives DDPM's eps head and its energy-guidance
    head on one trunk. Output: (*B, out_heads * act_dim).
    """

    obs_dim: int
    act_dim: int
    hidden: Sequence[int]
    time_dim: int = 16
    out_heads: int = 1
    init_scheme: str = "lecun"  # one of INIT_SCHEMES
    time_table: int = 0  # K > 0: a learned (K, time_dim) embedding table; 0: sinusoidal

    def setup(self) -> None:
        first = weight_init(self.init_scheme, self.obs_dim + self.act_dim + self.time_dim)
        self.w_s = self.param("w_s", first, (self.obs_dim, self.hidden[0]))
        self.w_x = self.param("w_x", first, (self.act_dim, self.hidden[0]))
        self.w_t = self.param("w_t", first, (self.time_dim, self.hidden[0]))
        self.b_first = self.param("b_first", nn.initializers.zeros, (self.hidden[0],))
        if self.time_table:  # initialised N(0, 1), as torch's nn.Embedding
            table_init = nn.initializers.normal(1.0)
            self.t_table = self.param("t_table", table_init, (self.time_table, self.time_dim))
        widths = list(self.hidden)
        self.trunk = [dense(w, self.init_scheme, fan) for fan, w in zip(widths, widths[1:])]
        out = self.out_heads * self.act_dim
        self.head = dense(out, self.init_scheme, widths[-1], blocks=self.out_heads)

    def __call__(self, obs: jax.Array, x: jax.Array, t: jax.Array) -> jax.Array:
        return self.from_features(self.state_features(obs), x, self.time_features(t))

    def state_features(self, obs: jax.Array) -> jax.Array:
        """obs (*S, obs_dim) -> W_s s + b, (*S, hidden[0])."""
        return obs @ self.w_s + self.b_first

    def time_features(self, t: jax.Array) -> jax.Array:
        """Integer steps t (*T,) -> W_t embedding(t), (*T, hidden[0])."""
        emb = self.t_table[t] if self.time_table else time_embedding(t, self.time_dim)
        return emb @ self.w_t

    def from_features(self, s_feat: jax.Array, x: jax.Array, t_feat: jax.Array) -> jax.Array:
        """State features, latent/action x (*B, act_dim), time features -> (*B, heads * act)."""
        h = nn.relu(small_matmul_add(s_feat + t_feat, x, self.w_x))
        for layer in self.trunk:
            h = nn.relu(layer(h))
        return self.head(h)
