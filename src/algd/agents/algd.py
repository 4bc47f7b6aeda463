"""ALGD: a diffusion policy guided by the augmented Lagrangian (ALGD_METHOD sections 2-5), and
LGD, the same agent with the standard Lagrangian energy (the paper's ablation).

Actor loss (section 5.2) = energy_weight * mean_B E(s, a0) + score_weight * MSE(phi, phi*), where
a0 leaves the K-step reverse chain with gradients, and phi* is the Monte-Carlo Boltzmann score at
the chain state of a random step tau: with N samples y_i = y_tau + sigma_tau eps_i,
phi* = sum_i w_i grad log p(y_i), w = softmax_i(log p(y_i)), log p = -E / beta
(+ log |det d squash / dx| when the score lives in the latent space).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from algd.agents.base import Metrics, OffPolicyAgent, State, global_norm
from algd.buffer import Batch
from algd.diffusion import (
    Chain,
    Squash,
    ddpm_schedule,
    mc_boltzmann_score,
    reverse_chain,
    ve_schedule,
)
from algd.lagrangian import augmented_energy, ensemble_upper_bound, lagrangian_energy
from algd.networks import ScoreNet


def _lead(feats: jax.Array, ndim: int) -> jax.Array:
    """Critic state features (num, B, h) reshaped to rank ndim, (num, 1, ..., B, h), so they
    broadcast against the first-layer action part of actions (*N, B, act)."""
    return feats.reshape(feats.shape[:1] + (1,) * (ndim - feats.ndim) + feats.shape[1:])


class ALGD(OffPolicyAgent):
    name = "algd"
    energy_kind = "augmented"

    def __init__(self, cfg: Any, spec: Any) -> None:
        a = cfg.agent
        self.ve = a.diffusion == "ve"
        self.K = a.denoise_steps
        self.score_net = ScoreNet(
            spec.obs_dim, spec.act_dim, a.score_hidden, a.time_embed_dim, 1 if self.ve else 2
        )
        if self.ve:
            self.sched = ve_schedule(a.denoise_steps, a.sigma_min, a.sigma_max)
        else:
            self.sched = ddpm_schedule(a.denoise_steps, a.ddpm_beta_min, a.ddpm_beta_max)
        super().__init__(cfg, spec)
        self.squash = Squash(self.act_scale, self.act_bias)
        self.latent = a.score_space == "latent"
        self.guidance = a.guidance_scale if self.ve else a.ddpm_guidance
        self.start_std = a.sigma_max if self.ve else 1.0

    # --- the diffusion policy -----------------------------------------------------------------
    def init_actor(self, key: jax.Array) -> tuple[Any, Any, dict[str, Any]]:
        obs = jnp.zeros((1, self.obs_dim))
        x = jnp.zeros((1, self.act_dim))
        params = self.score_net.init(key, obs, x, jnp.zeros((1,), jnp.int32))["params"]
        return params, self.actor_opt.init(params), {}

    def _features(self, params: Any, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """State part of the first layer (*B, h0), once per state, and the time part of every
        step (K, h0), reused by all K steps and all samples."""
        net = {"params": params}
        s_feat = self.score_net.apply(net, obs, method=ScoreNet.state_features)
        t_feat = self.score_net.apply(net, jnp.arange(self.K), method=ScoreNet.time_features)
        return s_feat, t_feat

    def _phi(self, params: Any, s_feat: jax.Array, x: jax.Array, t_feat: jax.Array) -> jax.Array:
        return self.score_net.apply(
            {"params": params}, s_feat, x, t_feat, method=ScoreNet.from_features
        )

    def chain(
        self, params: Any, obs: jax.Array, key: jax.Array, deterministic: bool
    ) -> tuple[Chain, jax.Array, jax.Array]:
        s_feat, t_feat = self._features(params, obs)
        shape = obs.shape[:-1] + (self.act_dim,)
        k_init, k_noise = jax.random.split(key)
        noise = jax.random.normal(k_noise, (self.K, *shape))
        if deterministic:
            # Start from 0 (section 5). VE: no injected noise. DDPM: the reference still injects
            # noise in intermediate steps unless eval_noise_free (section 6).
            x_init = jnp.zeros(shape)
            inject = (not self.ve) and not self.a.eval_noise_free
        else:
            x_init = self.start_std * jax.random.normal(k_init, shape)
            inject = True
        chain = reverse_chain(
            "ve" if self.ve else "ddpm",
            lambda x, t: self._phi(params, s_feat, x, t_feat[t]),
            self.sched,
            self.squash,
            x_init,
            noise,
            latent_input=self.latent,
            guidance=self.guidance,
            inject_noise=inject,
        )
        return chain, s_feat, t_feat

    def policy(self, actor: Any, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        chain, _, _ = self.chain(actor, obs, key, deterministic)
        return self.squash(chain.x0)

    def next_action(
        self, state: State, obs: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        action = jax.lax.stop_gradient(self.policy(state["actor"], obs, key, deterministic=False))
        return action, jnp.zeros(obs.shape[:-1])

    # --- energy and score target --------------------------------------------------------------
    def energy_from_features(
        self, state: State, q_feat: jax.Array, qc_feat: jax.Array, action: jax.Array
    ) -> jax.Array:
        """E(s, a, lambda) for actions (*N, B, act) at the B states whose critic features are
        given; returns (*N, B). E is L_A (ALGD) or L (LGD)."""
        q = self.q_net.apply(
            {"params": state["q"]}, _lead(q_feat, action.ndim + 1), action, method="from_features"
        ).min(0)
        qc = self.qc_net.apply(
            {"params": state["qc"]}, _lead(qc_feat, action.ndim + 1), action, method="from_features"
        )
        qc_bar = ensemble_upper_bound(qc, self.cost_k)
        lam = jax.lax.stop_gradient(self.lam(state))
        if self.energy_kind == "augmented":
            return augmented_energy(q, qc_bar, lam, self.h, self.a.rho)
        return lagrangian_energy(q, qc_bar, lam, self.h)

    def critic_features(self, state: State, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        q_feat = self.q_net.apply({"params": state["q"]}, obs, method="state_features")
        qc_feat = self.qc_net.apply({"params": state["qc"]}, obs, method="state_features")
        return q_feat, qc_feat

    def score_target(
        self,
        state: State,
        feats: tuple[jax.Array, jax.Array],
        y: jax.Array,
        sigma: jax.Array,
        key: jax.Array,
    ) -> jax.Array:
        """Monte-Carlo Boltzmann score at y (B, act) with perturbation scale sigma (B,)."""

        def log_p(points: jax.Array) -> jax.Array:
            actions = self.squash(points) if self.latent else points
            out = -self.energy_from_features(state, *feats, actions) / self.a.beta
            if self.latent:
                out = out + self.squash.log_det_jacobian(points)
            return out

        return mc_boltzmann_score(log_p, y, sigma, key, self.a.mc_samples)

    def actor_step(self, state: State, b: Batch, key: jax.Array) -> tuple[State, Metrics]:
        k_chain, k_tau, k_mc = jax.random.split(key, 3)
        feats = self.critic_features(state, b.obs)
        batch = b.obs.shape[0]
        tau = jax.random.randint(k_tau, (batch,), 0, self.K)
        sigma_tau = self.sched.sigma[tau]

        def loss(params: Any) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
            chain, s_feat, t_feat = self.chain(params, b.obs, k_chain, deterministic=False)
            energy = self.energy_from_features(state, *feats, self.squash(chain.x0)).mean()
            # Reference: the output of step tau; principled: its input (section 6).
            states = chain.outputs if self.a.score_time == "output" else chain.inputs
            x_tau = jax.lax.stop_gradient(states[tau, jnp.arange(batch)])
            y_tau = x_tau if self.latent else self.squash(x_tau)
            target = self.score_target(state, feats, y_tau, sigma_tau, k_mc)
            phi = self._phi(params, s_feat, y_tau, t_feat[tau])
            phi = phi if self.ve else phi[..., self.act_dim :]
            score = jnp.mean(jnp.square(phi - target))
            total = self.a.energy_weight * energy + self.a.score_weight * score
            return total, (energy, score)

        (total, (energy, score)), g = jax.value_and_grad(loss, has_aux=True)(state["actor"])
        upd, actor_opt = self.actor_opt.update(g, state["actor_opt"], state["actor"])
        state = {**state, "actor": optax.apply_updates(state["actor"], upd), "actor_opt": actor_opt}
        metrics = {
            "loss/actor": total,
            "loss/score": score,
            "energy": energy,
            "grad_norm/actor": global_norm(g),
        }
        return state, metrics


class LGD(ALGD):
    """ALGD with the standard Lagrangian energy L = -Q + lambda (Qc_bar - h) everywhere."""

    name = "lgd"
    energy_kind = "lagrangian"
