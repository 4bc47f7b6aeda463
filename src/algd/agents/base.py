"""What every algorithm shares: critics, their targets and losses, the multiplier, target
networks, and the fused update (all UTD gradient steps of one environment step in one compiled
``lax.scan``). An algorithm subclasses :class:`OffPolicyAgent` and supplies only its actor:
``init_actor``, ``next_action`` (for the critic targets), ``actor_step`` and ``policy``.

One gradient step (ALGD_METHOD section 5): critics -> actor -> multiplier -> targets (Polyak
after the steps whose index within the UTD block is a multiple of ``target_every``). The training state is a dict pytree (checkpointed as is):
``q, q_targ, q_opt, qc, qc_targ, qc_opt, actor, actor_opt, extra, mult, step``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from algd.buffer import Batch
from algd.config import TrainConfig
from algd.envs.base import EnvSpec
from algd.kernels import critic_loss_grad, critic_value
from algd.lagrangian import (
    ensemble_upper_bound,
    init_multiplier,
    per_state_budget,
    update_multiplier,
)
from algd.networks import CriticEnsemble, apply_net
from algd.optim import Adam

State = dict[str, Any]
Metrics = dict[str, jax.Array]


def copy_tree(tree: Any) -> Any:
    """Fresh buffers (targets must not alias online params when updates donate their input)."""
    return jax.tree_util.tree_map(jnp.array, tree)


def global_norm(tree: Any) -> jax.Array:
    return optax.global_norm(tree)


class OffPolicyAgent:
    """Base class; see the module docstring."""

    name = "base"
    Q_ACTIVATION = "relu"  # reward critics
    QC_ACTIVATION = "silu"  # cost critics
    offers_critic_kernel = False  # whether agent.critic_kernel applies to this algorithm
    critic_kernel = False  # whether critic passes use algd/kernels.py (set by agents that can)

    def __init__(self, cfg: TrainConfig, spec: EnvSpec) -> None:
        a = cfg.agent
        assert a.cost_ensemble is not None and a.cost_k is not None and a.cost_critic_lr is not None
        self.cfg, self.a, self.spec = cfg, a, spec
        self.obs_dim, self.act_dim = spec.obs_dim, spec.act_dim
        self.h = per_state_budget(
            spec.cost_limit, spec.cost_limit_kind, spec.max_episode_steps, a.gamma_c
        )
        self.cost_k = float(a.cost_k)
        reference = a.init == "reference"
        self.q_net = CriticEnsemble(
            self.obs_dim,
            self.act_dim,
            a.critic_hidden,
            2,
            self.Q_ACTIVATION,
            "xavier" if reference else "lecun",
        )
        self.qc_net = CriticEnsemble(
            self.obs_dim,
            self.act_dim,
            a.critic_hidden,
            a.cost_ensemble,
            self.QC_ACTIVATION,
            "ensemble" if reference else "lecun",
        )
        self.q_opt = Adam(a.critic_lr)
        self.qc_opt = Adam(a.cost_critic_lr)
        self.actor_opt = Adam(a.actor_lr)
        low = np.asarray(spec.act_low, np.float32)
        high = np.asarray(spec.act_high, np.float32)
        self.act_scale = jnp.asarray((high - low) / 2.0)
        self.act_bias = jnp.asarray((high + low) / 2.0)
        self.update = jax.jit(self._update, donate_argnums=0)
        # Positional-only compiled calls: the cheapest dispatch path for single-state actions.
        self._act_noisy = jax.jit(
            lambda actor, obs, noise: self.policy_from_noise(actor, obs[None], noise[None], False)[
                0
            ]
        )
        self._act_det_noisy = jax.jit(
            lambda actor, obs, noise: self.policy_from_noise(actor, obs[None], noise[None], True)[0]
        )
        self._act_det = jax.jit(
            lambda actor, obs: self.policy_from_noise(actor, obs[None], None, True)[0]
        )

    # --- subclass hooks -----------------------------------------------------------------------
    @classmethod
    def check_runtime(cls, cfg: TrainConfig) -> None:
        """Raise AlgdError when ``cfg`` cannot run in this process (checked before a run
        directory is created)."""

    def init_actor(self, key: jax.Array) -> tuple[Any, Any, dict[str, Any]]:
        """-> (actor params, actor optimiser state, extra state such as the temperature)."""
        raise NotImplementedError

    def next_action(
        self, state: State, obs: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """a' ~ pi(.|s') for the critic targets, and the entropy bonus to add to the reward
        target (zeros for policies without one). Shapes (B, act), (B,)."""
        raise NotImplementedError

    def actor_step(self, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
        raise NotImplementedError

    def noise_shape(self) -> tuple[int, ...]:
        """Shape of the standard-normal noise one action consumes."""
        raise NotImplementedError

    def policy_from_noise(
        self, actor: Any, obs: jax.Array, noise: jax.Array | None, deterministic: bool
    ) -> jax.Array:
        """Actor params, obs (*B, obs), standard-normal noise (*B, *noise_shape) or None ->
        action (*B, act) in the box."""
        raise NotImplementedError

    def policy(self, actor: Any, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        """Actor params, obs (*B, obs) -> action (*B, act) in the box, noise drawn from key."""
        noise = jax.random.normal(key, obs.shape[:-1] + self.noise_shape())
        return self.policy_from_noise(actor, obs, noise, deterministic)

    def update_multiplier_enabled(self) -> bool:
        return True

    def deterministic_needs_noise(self) -> bool:
        """Whether deterministic actions still use noise (DDPM's reference evaluation)."""
        return False

    # --- shared -------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> State:
        k_q, k_qc, k_actor = jax.random.split(key, 3)
        obs = jnp.zeros((1, self.obs_dim))
        act = jnp.zeros((1, self.act_dim))
        q = self.q_net.init(k_q, obs, act)["params"]
        qc = self.qc_net.init(k_qc, obs, act)["params"]
        actor, actor_opt, extra = self.init_actor(k_actor)
        a = self.a
        return {
            "q": q,
            "q_targ": copy_tree(q),
            "q_opt": self.q_opt.init(q),
            "qc": qc,
            "qc_targ": copy_tree(qc),
            "qc_opt": self.qc_opt.init(qc),
            "actor": actor,
            "actor_opt": actor_opt,
            "extra": extra,
            "mult": init_multiplier(a.multiplier, a.lambda_init, a.pid_ki),
            "step": jnp.int32(0),
        }

    def act(
        self, state: State, obs: np.ndarray, noise: np.ndarray | None, deterministic: bool
    ) -> np.ndarray:
        """One observation (obs_dim,) -> one action (act_dim,) as numpy, using the given
        standard-normal ``noise`` of shape ``noise_shape()`` (see algd.noise). Only the actor's
        parameters cross into the compiled call."""
        actor = state["actor"]
        if deterministic and not self.deterministic_needs_noise():
            return np.asarray(self._act_det(actor, obs))
        if noise is None:
            raise ValueError("this action needs noise")
        if deterministic:
            return np.asarray(self._act_det_noisy(actor, obs, noise))
        return np.asarray(self._act_noisy(actor, obs, noise))

    def critic_path(self) -> str | None:
        """Which critic path runs ("native" kernel or "xla") for algorithms that offer the
        choice (agent.critic_kernel); None for the others."""
        if not self.offers_critic_kernel:
            return None
        return "native" if self.critic_kernel else "xla"

    def lam(self, state: State) -> jax.Array:
        return state["mult"]["lam"]

    def q_all(self, params: Any, obs: jax.Array, action: jax.Array) -> jax.Array:
        return apply_net(self.q_net, params, obs, action)

    def qc_all(self, params: Any, obs: jax.Array, action: jax.Array) -> jax.Array:
        return apply_net(self.qc_net, params, obs, action)

    def qc_bar(self, params: Any, obs: jax.Array, action: jax.Array) -> jax.Array:
        return ensemble_upper_bound(self.qc_all(params, obs, action), self.cost_k)

    def critic_values(
        self, cost: bool, params: Any, obs: jax.Array, action: jax.Array
    ) -> jax.Array:
        """Every member's value (E, B) at (obs, action) (B, *), where no gradient is needed:
        through the compiled kernel when the agent uses it (algd/kernels.py), else as
        q_all / qc_all."""
        if not self.critic_kernel:
            return (self.qc_all if cost else self.q_all)(params, obs, action)
        net = self.qc_net if cost else self.q_net
        feats = apply_net(net, params, obs, method="state_features")
        return jnp.stack(
            [critic_value(f, action, params, j, net.activation) for j, f in enumerate(feats)]
        )

    def critic_step(self, state: State, b: Batch, key: jax.Array) -> tuple[State, Metrics]:
        a = self.a
        next_a, bonus = self.next_action(state, b.next_obs, key)
        q_next = self.critic_values(False, state["q_targ"], b.next_obs, next_a).min(0)
        y_r = b.reward + a.gamma * (1.0 - b.reward_done) * (q_next + bonus)
        qc_next = self.critic_values(True, state["qc_targ"], b.next_obs, next_a)
        y_c = b.cost + a.gamma_c * (1.0 - b.cost_done) * qc_next
        y_r, y_c = jax.lax.stop_gradient(y_r), jax.lax.stop_gradient(y_c)

        def q_loss(p: Any) -> jax.Array:
            return jnp.square(self.q_all(p, b.obs, b.action) - y_r).mean(-1).sum()

        # Per-member mean squared errors, summed (reward critics, as the reference) and, for
        # the cost critics, averaged over the ensemble (the reference) or summed.
        qc_scale = 1.0 / self.qc_net.num if a.cost_loss_reduction == "mean" else 1.0

        def qc_loss(p: Any) -> jax.Array:
            return qc_scale * jnp.square(self.qc_all(p, b.obs, b.action) - y_c).mean(-1).sum()

        if self.critic_kernel:
            lq, gq = self._kernel_loss_grad(
                False, state["q"], b, jnp.broadcast_to(y_r, (self.q_net.num, *y_r.shape))
            )
            lqc, gqc = self._kernel_loss_grad(True, state["qc"], b, y_c)
            lqc, gqc = jax.tree_util.tree_map(lambda x: qc_scale * x, (lqc, gqc))
        else:
            lq, gq = jax.value_and_grad(q_loss)(state["q"])
            lqc, gqc = jax.value_and_grad(qc_loss)(state["qc"])
        q, q_opt = self.q_opt.step(state["q"], gq, state["q_opt"])
        qc, qc_opt = self.qc_opt.step(state["qc"], gqc, state["qc_opt"])
        state = {**state, "q": q, "q_opt": q_opt, "qc": qc, "qc_opt": qc_opt}
        metrics = {
            "loss/q": lq,
            "loss/qc": lqc,
            "grad_norm/q": global_norm(gq),
            "grad_norm/qc": global_norm(gqc),
            "q/mean": y_r.mean(),
        }
        return state, metrics

    def _kernel_loss_grad(
        self, cost: bool, params: Any, b: Batch, targets: jax.Array
    ) -> tuple[jax.Array, Any]:
        """q_loss / qc_loss of critic_step and their gradients, member by member through the
        compiled kernel; targets (E, B)."""
        act = (self.qc_net if cost else self.q_net).activation
        losses, grads = [], {}
        for j in range(targets.shape[0]):
            loss, g = critic_loss_grad(b.obs, b.action, targets[j], params, j, act)
            losses.append(loss)
            grads.update(g)
        return sum(losses[1:], losses[0]), {k: grads[k] for k in params}

    def multiplier_step(self, state: State, b: Batch) -> tuple[State, Metrics]:
        qc = self.critic_values(True, state["qc"], b.obs, b.action)
        qc_bar = ensemble_upper_bound(qc, self.cost_k)
        violation = (qc_bar - self.h).mean()
        mult = state["mult"]
        if self.update_multiplier_enabled():
            mult = update_multiplier(self.a.multiplier, mult, violation, self.a)
        return {**state, "mult": mult}, {"qc_bar/replay": qc_bar.mean(), "violation": violation}

    def target_step(self, state: State, index: jax.Array) -> State:
        """Polyak averaging after the gradient steps of a UTD block whose index in the block is
        a multiple of target_every (0, 2, 4, ... as the reference's update counter)."""
        tau = self.a.tau
        do = (index % self.a.target_every) == 0
        targets = (state["q_targ"], state["qc_targ"])

        def polyak(_: Any) -> Any:
            return jax.tree_util.tree_map(
                lambda t, o: (1.0 - tau) * t + tau * o, targets, (state["q"], state["qc"])
            )

        # A conditional, so that the steps without an update do no work.
        q_targ, qc_targ = jax.lax.cond(do, polyak, lambda _: targets, None)
        return {**state, "q_targ": q_targ, "qc_targ": qc_targ}

    def grad_step(
        self, state: State, b: Batch, key: jax.Array, index: jax.Array
    ) -> tuple[State, Metrics]:
        k_critic, k_actor = jax.random.split(key)
        state, m_critic = self.critic_step(state, b, k_critic)
        state, m_actor = self.actor_step(state, b, k_actor)
        state, m_mult = self.multiplier_step(state, b)
        state = {**state, "step": state["step"] + 1}
        state = self.target_step(state, index)
        return state, {**m_critic, **m_actor, **m_mult, "lambda": state["mult"]["lam"]}

    def _update(
        self, state: State, batches: Batch, key: jax.Array, index: jax.Array
    ) -> tuple[State, Metrics]:
        """All UTD gradient steps of one environment step: batches have a leading UTD axis; the
        step's randomness is ``fold_in(key, index)``."""
        utd = batches.reward.shape[0]
        keys = jax.random.split(jax.random.fold_in(key, index), utd)
        state, metrics = jax.lax.scan(
            lambda s, xs: self.grad_step(s, *xs), state, (batches, keys, jnp.arange(utd))
        )
        # Means over the UTD steps; a non-finite value in any step keeps the mean non-finite,
        # which is what the loop checks for (see train.check_finite).
        return state, {k: v.mean() for k, v in metrics.items()}
