"""HJ: a hard-constrained baseline built on Hamilton-Jacobi reachability (RCRL, Yu et al.,
ICML 2022), as the authors ran it beside ALGD.

SAC whose cost critic is a safety critic Q_h trained with the reachability backup

    Q_h(s, a) <- (1 - gamma_c) h(s) + gamma_c max(h(s), Q_h_targ(s', a'')),   a'' ~ pi(.|s'),

with h(s) the step's cost and no bootstrap at an episode's end (the target is then h(s)); a
state-dependent multiplier lambda(s) = softplus(f(s)) trained by ascent on
mean(lambda(s) (Q_h(s, a) - threshold)), a ~ pi(.|s); and the actor penalised by
lambda(s) (Q_h(s, a) - threshold) with lambda(s) held fixed. Everything else (reward critics,
temperature, targets, UTD, buffer, loop) is the SAC family's.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from algd.agents.base import Metrics, Params, TrainState, adam_step
from algd.agents.sac_family import SACFamily
from algd.buffer import Batch
from algd.config import TrainConfig
from algd.envs.base import EnvSpec
from algd.networks import CriticEnsemble, StateMLP, apply_net


def reach_target(h: jax.Array, qh_next: jax.Array, done: jax.Array, gamma: float) -> jax.Array:
    """The reachability Bellman target: (1 - gamma) h + gamma max(h, Q_h(s', a'')) where the
    episode goes on, h where it ends. h, done (B,); qh_next (E, B) -> (E, B)."""
    backup = (1.0 - gamma) * h + gamma * jnp.maximum(h, qh_next)
    return (1.0 - done) * backup + done * h


def lambda_loss(raw: jax.Array, qh: jax.Array, threshold: float) -> jax.Array:
    """Loss of lambda(s)'s ascent: -mean(softplus(raw) (Q_h - threshold)), Q_h held fixed."""
    violation = jax.lax.stop_gradient(qh) - threshold
    return -jnp.mean(jax.nn.softplus(raw) * violation)


class HJ(SACFamily):
    def __init__(self, cfg: TrainConfig, spec: EnvSpec) -> None:
        super().__init__(cfg, spec)
        a = self.a
        # The safety critic is the reward critics' kind of network (ReLU, Glorot uniform), not
        # the cost ensemble's.
        self.qc_net = CriticEnsemble(
            self.obs_dim,
            self.act_dim,
            a.critics.critic_hidden,
            a.critics.cost_ensemble,
            "relu",
            "xavier" if a.init == "reference" else "lecun",
        )
        # lambda(s) keeps PyTorch's default init in the reference (no custom init applied).
        self.lam_mlp = StateMLP(a.hj.lambda_hidden, "torch" if a.init == "reference" else "lecun")
        self.lam_tx = optax.adam(a.hj.lambda_lr)

    def init_extra(self, key: jax.Array) -> dict[str, Any]:
        params = self.lam_mlp.init(key, jnp.zeros((1, self.obs_dim)))["params"]
        return {"lam_net": params, "lam_net_opt": self.lam_tx.init(params)}

    def updates_multiplier(self) -> bool:
        return False

    def state_lambda(self, params: Params, obs: jax.Array) -> jax.Array:
        """lambda(s) = softplus(f(s)), (*B,)."""
        return jax.nn.softplus(apply_net(self.lam_mlp, params, obs))

    def cost_target(
        self, state: TrainState, b: Batch, next_a: jax.Array, key: jax.Array
    ) -> jax.Array:
        # The reference draws the safety target's next action separately from the reward
        # target's, and ends the backup where the reward critic stops bootstrapping.
        a2, _ = self.sample(state.actor, b.next_obs, jax.random.fold_in(key, 1))
        qh_next = self.qc_all(state.qc_targ, b.next_obs, a2)
        return reach_target(b.cost, qh_next, b.reward_done, self.a.gamma_c)

    def penalty(self, state: TrainState, b: Batch, action: jax.Array) -> jax.Array:
        lam = jax.lax.stop_gradient(self.state_lambda(state.lam_net, b.obs))
        return lam * (self.qc_bar(state.qc, b.obs, action) - self.a.hj.threshold)

    def actor_step(self, state: TrainState, b: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
        new, metrics = super().actor_step(state, b, key)
        # lambda(s) ascends on Q_h at the action the actor's loss was evaluated at (the same
        # draw from the actor before its step).
        action, _ = self.sample(state.actor, b.obs, key)
        qh = self.qc_bar(state.qc, b.obs, action)

        def loss(p: Params) -> jax.Array:
            return lambda_loss(apply_net(self.lam_mlp, p, b.obs), qh, self.a.hj.threshold)

        l_lam, g = jax.value_and_grad(loss)(state.lam_net)
        lam_net, lam_net_opt = adam_step(self.lam_tx, state.lam_net, g, state.lam_net_opt)
        new = new.replace(lam_net=lam_net, lam_net_opt=lam_net_opt)
        return new, {**metrics, "loss/lambda": l_lam, "qh/policy": qh.mean()}

    def multiplier_step(
        self, state: TrainState, b: Batch, key: jax.Array, episodes: jax.Array | None = None
    ) -> tuple[TrainState, Metrics]:
        """No scalar multiplier: its ``lam`` records mean lambda(s) over the minibatch (what the
        logs show as lambda)."""
        qh = self.qc_bar(state.qc, b.obs, b.action)
        lam = self.state_lambda(state.lam_net, b.obs)
        state = state.replace(mult=state.mult.replace(lam=lam.mean()))
        metrics = {
            "qc_bar/replay": qh.mean(),
            "violation": (qh - self.a.hj.threshold).mean(),
            "lambda/max": lam.max(),
        }
        return state, metrics
