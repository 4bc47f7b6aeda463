"""ALGD: a diffusion policy guided by the augmented Lagrangian (ALGD_METHOD sections 2-5), and
LGD, the same agent with the standard Lagrangian energy (the paper's ablation).

Actor loss (section 5.2) = energy_weight * mean_B E(s, a0) + score_weight * MSE(phi, phi*), where
a0 leaves the K-step reverse chain with gradients, and phi* is the Monte-Carlo Boltzmann score at
the chain state of a random step tau: with N samples y_i = y_tau + sigma_tau eps_i,
phi* = sum_i w_i grad log p(y_i), w = softmax_i(log p(y_i)), log p = -E / beta
(+ log |det d squash / dx| when the score lives in the latent space), plus, when switched on,
latent_penalty * mean_B ||x0||^2 on the chain's pre-tanh output x0.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import optax

from algd.agents.base import Metrics, OffPolicyAgent, Params, TrainState, adam_step
from algd.buffer import Batch
from algd.config import TrainConfig
from algd.diffusion import (
    Chain,
    Squash,
    ddpm_schedule,
    reverse_chain,
    self_normalised_score,
    ve_schedule,
)
from algd.envs.base import EnvSpec
from algd.lagrangian import augmented_energy, ensemble_upper_bound, lagrangian_energy
from algd.networks import ScoreNet, apply_net

Energy = Literal["augmented", "lagrangian"]


def _lead(feats: tuple[jax.Array, ...], ndim: int) -> tuple[jax.Array, ...]:
    """Critic state features, one (B, h) per member, reshaped to rank ndim, (1, ..., B, h), so
    they broadcast against the first-layer action part of actions (*N, B, act)."""
    return tuple(f.reshape((1,) * (ndim - f.ndim) + f.shape) for f in feats)


class ALGD(OffPolicyAgent):
    """``energy`` = augmented: ALGD (E = L_A); lagrangian: LGD (E = L)."""

    def __init__(self, cfg: TrainConfig, spec: EnvSpec, energy: Energy = "augmented") -> None:
        super().__init__(cfg, spec)
        a = self.a
        self.energy_kind = energy
        self.identity = (*self.identity, energy)
        self.ve = a.diffusion.process == "ve"
        self.K = a.diffusion.denoise_steps
        self.score_net = ScoreNet(
            spec.obs_dim,
            spec.act_dim,
            a.diffusion.score_hidden,
            a.diffusion.time_embed_dim,
            1 if self.ve else 2,
            init_scheme="xavier" if a.init == "reference" else "lecun",
            time_table=self.K if a.diffusion.time_embedding == "learned" else 0,
        )
        if self.ve:
            self.sched = ve_schedule(
                a.diffusion.denoise_steps,
                a.diffusion.sigma_min,
                a.diffusion.sigma_max,
                a.diffusion.ve_single_level,
            )
        else:
            self.sched = ddpm_schedule(
                a.diffusion.denoise_steps, a.diffusion.ddpm_beta_min, a.diffusion.ddpm_beta_max
            )
        self.squash = Squash(self.act_scale, self.act_bias)
        self.latent = a.diffusion.score_space == "latent"
        self.guidance = a.diffusion.guidance_scale if self.ve else a.diffusion.ddpm_guidance
        if self.ve:
            self.start_std = float(self.sched.sigma[-1])  # the reference's sigma_T: the last level
        elif a.diffusion.ddpm_start == "standard":
            self.start_std = 1.0
        else:
            self.start_std = float(jnp.sqrt(1.0 - self.sched.alpha_bar[-1]))

    # --- the diffusion policy -----------------------------------------------------------------
    def init_actor(self, key: jax.Array) -> tuple[Params, optax.OptState, None]:
        obs = jnp.zeros((1, self.obs_dim))
        x = jnp.zeros((1, self.act_dim))
        params = self.score_net.init(key, obs, x, jnp.zeros((1,), jnp.int32))["params"]
        return params, self.actor_tx.init(params), None

    def _features(self, params: Params, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """TrainState part of the first layer (*B, h0), once per state, and the time part of every
        step (K, h0), reused by all K steps and all samples."""
        s_feat = apply_net(self.score_net, params, obs, method="state_features")
        t_feat = apply_net(self.score_net, params, jnp.arange(self.K), method="time_features")
        return s_feat, t_feat

    def _phi(self, params: Params, s_feat: jax.Array, x: jax.Array, t_feat: jax.Array) -> jax.Array:
        return apply_net(self.score_net, params, s_feat, x, t_feat, method="from_features")

    def noise_shape(self) -> tuple[int, ...]:
        return (self.K + 1, self.act_dim)  # the start point, then one draw per step

    def chain(
        self, params: Params, obs: jax.Array, draws: jax.Array | None, deterministic: bool
    ) -> tuple[Chain, jax.Array, jax.Array]:
        """Reverse chain at states obs (*B, obs) with standard-normal draws (*B, K + 1, act)."""
        s_feat, t_feat = self._features(params, obs)
        shape = obs.shape[:-1] + (self.act_dim,)
        noise = None if draws is None else jnp.moveaxis(draws[..., 1:, :], -2, 0)
        if deterministic:
            # Start from 0 (section 5). VE: no injected noise. DDPM: the reference still injects
            # noise in intermediate steps unless eval_noise_free (section 6).
            x_init = jnp.zeros(shape)
            if not self.deterministic_needs_noise():
                noise = None
        else:
            assert draws is not None
            x_init = self.start_std * draws[..., 0, :]
        chain = reverse_chain(
            "ve" if self.ve else "ddpm",
            lambda x, t: self._phi(params, s_feat, x, t_feat[t]),
            self.sched,
            self.squash,
            x_init,
            noise,
            latent_input=self.latent,
            guidance=self.guidance,
        )
        return chain, s_feat, t_feat

    def deterministic_needs_noise(self) -> bool:
        return (not self.ve) and not self.a.diffusion.eval_noise_free

    def policy_from_noise(
        self, actor: Params, obs: jax.Array, noise: jax.Array | None, deterministic: bool
    ) -> jax.Array:
        chain, _, _ = self.chain(actor, obs, noise, deterministic)
        return self.squash(chain.x0)

    def next_action(
        self, state: TrainState, obs: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        action = jax.lax.stop_gradient(self.policy(state.actor, obs, key, deterministic=False))
        return action, jnp.zeros(obs.shape[:-1])

    # --- energy and score target --------------------------------------------------------------
    def energy_from_features(
        self,
        state: TrainState,
        q_feat: tuple[jax.Array, ...],
        qc_feat: tuple[jax.Array, ...],
        action: jax.Array,
    ) -> jax.Array:
        """E(s, a, lambda) for actions (*N, B, act) at the B states whose critic features are
        given; returns (*N, B). E is L_A (ALGD) or L (LGD)."""
        q = apply_net(
            self.q_net, state.q, _lead(q_feat, action.ndim), action, method="from_features"
        )
        qc = apply_net(
            self.qc_net,
            state.qc,
            _lead(qc_feat, action.ndim),
            action,
            method="from_features",
        )
        return self.energy_from_min(state, q.min(0), qc)

    def energy_from_min(self, state: TrainState, q_min: jax.Array, qc: jax.Array) -> jax.Array:
        """E from the smaller reward critic's value q_min (*T) and the cost critics' qc (E, *T)."""
        qc_bar = ensemble_upper_bound(qc, self.a.critics.cost_k)
        lam = jax.lax.stop_gradient(state.mult.lam)
        if self.energy_kind == "augmented":
            return augmented_energy(q_min, qc_bar, lam, self.h, self.a.lagrangian.rho)
        return lagrangian_energy(q_min, qc_bar, lam, self.h)

    def energy_and_grad(
        self,
        state: TrainState,
        q_feat: tuple[jax.Array, ...],
        qc_feat: tuple[jax.Array, ...],
        points: jax.Array,
    ) -> tuple[jax.Array, jax.Array]:
        """E at actions (*N, B, act) and its gradient with respect to each action."""
        energies, pullback = jax.vjp(
            lambda p: self.energy_from_features(state, q_feat, qc_feat, p), points
        )
        return energies, pullback(jnp.ones_like(energies))[0]

    def critic_features(
        self, state: TrainState, obs: jax.Array
    ) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]:
        q_feat = apply_net(self.q_net, state.q, obs, method="state_features")
        qc_feat = apply_net(self.qc_net, state.qc, obs, method="state_features")
        return q_feat, qc_feat

    def actor_step(self, state: TrainState, b: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
        """One actor update with the randomness drawn from ``key``: the chain's standard-normal
        draws (B, K + 1, act), the step tau of each sample (B,), and the Monte-Carlo
        perturbations (N, B, act)."""
        k_chain, k_tau, k_mc = jax.random.split(key, 3)
        batch = b.obs.shape[0]
        draws = jax.random.normal(k_chain, (batch, *self.noise_shape()))
        tau = jax.random.randint(k_tau, (batch,), 0, self.K)
        mc_noise = jax.random.normal(k_mc, (self.a.diffusion.mc_samples, batch, self.act_dim))
        return self.actor_update(state, b, draws, tau, mc_noise)

    def actor_update(
        self, state: TrainState, b: Batch, draws: jax.Array, tau: jax.Array, mc_noise: jax.Array
    ) -> tuple[TrainState, Metrics]:
        """One actor update for given random draws. Same gradient as differentiating
        energy_weight * mean_B E(s, a0) + score_weight * MSE(phi(s, y_tau, tau), phi*)
        (+ latent_penalty * mean_B ||x0||^2 on the pre-tanh chain output), computed
        in an order that shares work: one critic forward and backward pass covers both the final
        actions a0 (the energy term) and the N Monte-Carlo points (the score target), and the
        a0 part of that gradient is pulled back through the chain with its VJP."""
        a = self.a
        feats = self.critic_features(state, b.obs)
        batch = b.obs.shape[0]
        sigma_tau = self.sched.sigma[tau]
        penalised = a.diffusion.latent_penalty > 0.0  # else the program is the reference's

        def run_chain(params: Params) -> tuple[jax.Array, ...]:
            """-> (a0, the chain state at step tau[, x0 pre-tanh]), with the chain's gradient."""
            chain, _, _ = self.chain(params, b.obs, draws, deterministic=False)
            # Reference: the output of step tau; principled: its input (section 6).
            states = chain.outputs if a.diffusion.score_time == "output" else chain.inputs
            out = (self.squash(chain.x0), states[tau, jnp.arange(batch)])
            return out + (chain.x0,) if penalised else out

        chain_out, chain_vjp = jax.vjp(run_chain, state.actor)
        a0, x_tau = chain_out[0], chain_out[1]

        y_tau = jax.lax.stop_gradient(self._score_input(x_tau))
        y_mc = y_tau[None] + sigma_tau[None, :, None] * mc_noise
        mc_actions = self.squash(y_mc) if self.latent else y_mc
        points = jnp.concatenate([jax.lax.stop_gradient(a0)[None], mc_actions], axis=0)
        energies, g_points = self.energy_and_grad(state, *feats, points)
        energy = energies[0].mean()
        target = self.score_target(y_mc, energies[1:], g_points[1:])
        score, (g_score, g_x_tau) = jax.value_and_grad(self._score_loss, argnums=(0, 1))(
            state.actor, x_tau, b.obs, tau, target
        )
        if not a.diffusion.score_chain_grad:
            g_x_tau = jnp.zeros_like(g_x_tau)
        # One pull-back through the chain: the energy's a0 part, the score loss's a_tau part (and
        # the latent penalty's x0 part).
        w, g_a0 = a.diffusion.latent_penalty, a.diffusion.energy_weight / batch * g_points[0]
        cotangents: tuple[jax.Array, ...] = (g_a0, a.diffusion.score_weight * g_x_tau)
        if penalised:
            cotangents += (2.0 * w / batch * chain_out[2],)
        (g_chain,) = chain_vjp(cotangents)
        g = jax.tree_util.tree_map(lambda x, y: x + a.diffusion.score_weight * y, g_chain, g_score)
        actor, actor_opt = adam_step(self.actor_tx, state.actor, g, state.actor_opt)
        state = state.replace(actor=actor, actor_opt=actor_opt)
        loss = a.diffusion.energy_weight * energy + a.diffusion.score_weight * score
        if penalised:
            loss = loss + w * jnp.mean(jnp.sum(jnp.square(chain_out[2]), axis=-1))
        metrics = {
            "loss/actor": loss,
            "loss/score": score,
            "energy": energy,
            "grad_norm/actor": optax.global_norm(g),
        }
        return state, metrics

    def _score_input(self, x: jax.Array) -> jax.Array:
        return x if self.latent else self.squash(x)

    def _score_loss(
        self, params: Params, x: jax.Array, obs: jax.Array, tau: jax.Array, target: jax.Array
    ) -> jax.Array:
        """MSE(phi(s, x_tau, tau), phi*) at the chain states x (B, act) of steps tau (B,)."""
        s_feat, t_feat = self._features(params, obs)
        phi = self._phi(params, s_feat, self._score_input(x), t_feat[tau])
        phi = phi if self.ve else phi[..., self.act_dim :]
        return jnp.mean(jnp.square(phi - target))

    def score_target(self, y_mc: jax.Array, energies: jax.Array, g_actions: jax.Array) -> jax.Array:
        """phi* = sum_i w_i grad log p(y_i), w = softmax_i log p(y_i) (the estimator of
        :func:`algd.diffusion.mc_boltzmann_score`), from energies (N, B) and their action
        gradients (N, B, act) at the N Monte-Carlo points y_mc (N, B, act)."""
        log_p = -energies / self.a.diffusion.beta
        grad = -g_actions / self.a.diffusion.beta
        if self.latent:
            # Chain rule through a = tanh(x) scale + bias, plus the log-Jacobian's gradient.
            tanh = jnp.tanh(y_mc)
            grad = grad * self.act_scale * (1.0 - jnp.square(tanh)) - 2.0 * tanh
            log_p = log_p + self.squash.log_det_jacobian(y_mc)
        return self_normalised_score(log_p, grad)
