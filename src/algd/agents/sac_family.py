"""The tanh-Gaussian SAC actor with a learned temperature, and a cost penalty in its loss.

SAC, SAC-Lag, SAC-AugLag and CAL differ only in ``penalty`` (ALGD_METHOD section 8):
actor loss = mean(alpha log pi(a|s) - Q(s, a) + penalty(s, a)), a ~ pi(.|s) reparameterised.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from algd.agents.base import (
    Metrics,
    OffPolicyAgent,
    Params,
    Temperature,
    TrainState,
    adam_step,
)
from algd.buffer import Batch
from algd.config import TrainConfig
from algd.envs.base import EnvSpec
from algd.networks import GaussianActor, apply_net, squashed_action

LOG_2 = jnp.log(2.0)


class SACFamily(OffPolicyAgent):
    """Subclasses override :meth:`penalty`; plain SAC has none."""

    def __init__(self, cfg: TrainConfig, spec: EnvSpec) -> None:
        super().__init__(cfg, spec)
        init = "xavier" if self.a.init == "reference" else "lecun"
        self.actor_net = GaussianActor(spec.act_dim, self.a.actor_hidden, init_scheme=init)
        self.alpha_tx = optax.adam(self.a.sac.alpha_lr)
        self.target_entropy = -float(spec.act_dim)

    def init_actor(self, key: jax.Array) -> tuple[Params, optax.OptState, Temperature]:
        params = self.actor_net.init(key, jnp.zeros((1, self.obs_dim)))["params"]
        log_alpha = jnp.log(jnp.float32(self.a.sac.alpha_init))
        temperature = Temperature(log_alpha, self.alpha_tx.init(log_alpha))
        return params, self.actor_tx.init(params), temperature

    def sample(self, params: Params, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Reparameterised a ~ pi(.|s) in the box and log pi(a|s) (with the tanh correction)."""
        mean, log_std = apply_net(self.actor_net, params, obs)
        u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        log_gauss = -0.5 * (
            jnp.square((u - mean) / jnp.exp(log_std)) + 2 * log_std + jnp.log(2 * jnp.pi)
        )
        return jnp.tanh(u) * self.act_scale + self.act_bias, (log_gauss - self.log_det(u)).sum(-1)

    def log_det(self, u: jax.Array) -> jax.Array:
        """log |d squash / du| per action component (``log_prob``)."""
        if self.a.sac.log_prob == "reference":
            # The authors' form: 1e-6 inside the log, so it flattens at -13.8 once tanh
            # saturates and its gradient vanishes there.
            return jnp.log(self.act_scale * (1.0 - jnp.square(jnp.tanh(u))) + 1e-6)
        # log(1 - tanh(u)^2) computed stably as 2 (log 2 - u - softplus(-2u)).
        return 2.0 * (LOG_2 - u - jax.nn.softplus(-2.0 * u)) + jnp.log(self.act_scale)

    def noise_shape(self) -> tuple[int, ...]:
        return (self.act_dim,)

    def policy_from_noise(
        self, actor: Params, obs: jax.Array, noise: jax.Array | None, deterministic: bool
    ) -> jax.Array:
        mean, log_std = apply_net(self.actor_net, actor, obs)
        return squashed_action(mean, log_std, noise, deterministic, self.act_scale, self.act_bias)

    def alpha(self, state: TrainState) -> jax.Array:
        assert state.temperature is not None
        return jnp.exp(state.temperature.log_alpha)

    def next_action(
        self, state: TrainState, obs: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        a, logp = self.sample(state.actor, obs, key)
        return a, -self.alpha(state) * logp

    def penalty(self, state: TrainState, b: Batch, action: jax.Array) -> jax.Array:
        """Per-sample cost penalty added to the actor loss at actions (B, act) for the batch's
        states; (B,)."""
        return jnp.zeros(action.shape[:-1])

    def actor_step(self, state: TrainState, b: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
        alpha = self.alpha(state)

        def loss(p: Params) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
            action, logp = self.sample(p, b.obs, key)
            q = self.q_all(state.q, b.obs, action).min(0)
            pen = self.penalty(state, b, action)
            return (alpha * logp - q + pen).mean(), (logp, pen)

        (l_actor, (logp, pen)), g = jax.value_and_grad(loss, has_aux=True)(state.actor)
        actor, actor_opt = adam_step(self.actor_tx, state.actor, g, state.actor_opt)
        temperature = state.temperature
        if self.a.sac.learn_alpha:
            assert temperature is not None
            entropy_gap = jax.lax.stop_gradient(logp + self.target_entropy).mean()
            # d/dlog_alpha of the temperature loss: reference alpha * (-logp - target_entropy)
            # gives -alpha * gap; the SAC paper's -log_alpha * (logp + target_entropy), -gap.
            g_alpha = -entropy_gap * (alpha if self.a.sac.alpha_loss == "alpha" else 1.0)
            log_alpha, alpha_opt = adam_step(
                self.alpha_tx, temperature.log_alpha, g_alpha, temperature.opt
            )
            temperature = Temperature(log_alpha, alpha_opt)
        state = state.replace(actor=actor, actor_opt=actor_opt, temperature=temperature)
        metrics = {
            "loss/actor": l_actor,
            "grad_norm/actor": optax.global_norm(g),
            "alpha": alpha,
            "entropy": -logp.mean(),
            "penalty": pen.mean(),
        }
        return state, metrics
