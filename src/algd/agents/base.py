"""What every algorithm shares: critics, their targets and losses, the multiplier, target
networks, and the update (all UTD gradient steps of one environment step in one compiled
``lax.scan``). An algorithm subclasses :class:`OffPolicyAgent` and supplies only its actor:
``init_actor``, ``next_action`` (for the critic targets), ``actor_step``, ``noise_shape`` and
``policy_from_noise``.

One gradient step (ALGD_METHOD section 5): critics -> actor -> multiplier -> targets (Polyak
after the steps whose index within the UTD block is a multiple of ``target_every``).
``update(state, batches, key) -> (state, metrics)`` is pure and jitted; the state is a
:class:`TrainState`, an immutable pytree checkpointed leaf by leaf.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.typing import ArrayLike

from algd.buffer import Batch, sample
from algd.config import TrainConfig
from algd.envs.base import EnvSpec
from algd.lagrangian import (
    Multiplier,
    ensemble_upper_bound,
    init_multiplier,
    per_state_budget,
    update_multiplier,
)
from algd.networks import CriticEnsemble, apply_net

Params = Any
Metrics = dict[str, jax.Array]

# The reference's critics: ReLU reward critics, SiLU cost critics.
Q_ACTIVATION, QC_ACTIVATION = "relu", "silu"


class Temperature(struct.PyTreeNode):
    """The SAC family's learned entropy temperature: log alpha and its Adam state."""

    log_alpha: jax.Array
    opt: optax.OptState


class TrainState(struct.PyTreeNode):
    """Everything one update reads and writes."""

    q: Params  # the two reward critics
    q_targ: Params
    q_opt: optax.OptState
    qc: Params  # the cost-critic ensemble
    qc_targ: Params
    qc_opt: optax.OptState
    actor: Params  # the policy: Gaussian actor or score network
    actor_opt: optax.OptState
    temperature: Temperature | None  # the SAC family's; None for the diffusion policies
    mult: Multiplier
    step: jax.Array  # gradient steps done
    lam_net: Params | None = None  # HJ's state-dependent multiplier network; None elsewhere
    lam_net_opt: optax.OptState | None = None


def copy_tree(tree: Any) -> Any:
    """Fresh buffers (targets must not alias online params when updates donate their input)."""
    return jax.tree_util.tree_map(jnp.array, tree)


def adam_step(
    tx: optax.GradientTransformation, params: Params, grads: Params, opt: optax.OptState
) -> tuple[Params, optax.OptState]:
    """One optimiser step: (new params, new optimiser state)."""
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt


class Agent:
    """What the loops need of any algorithm (off-policy or on-policy): its settings, its
    training state's ``init``, and its policy (``noise_shape``, ``policy_from_noise``, ``act``).
    Agents built from equal settings compare equal and share their compiled functions."""

    def __init__(self, cfg: TrainConfig, spec: EnvSpec) -> None:
        a = cfg.agent
        self.cfg, self.a, self.spec = cfg, a, spec
        self.obs_dim, self.act_dim = spec.obs_dim, spec.act_dim
        # The limit the agent trains for: the env's, less the cost margin.
        self.limit = spec.cost_limit * (1.0 - a.lagrangian.cost_margin)
        self.h = per_state_budget(
            self.limit, spec.cost_limit_kind, spec.max_episode_steps, a.gamma_c
        )
        low = np.asarray(spec.act_low, np.float32)
        high = np.asarray(spec.act_high, np.float32)
        self.act_scale = jnp.asarray((high - low) / 2.0)
        self.act_bias = jnp.asarray((high + low) / 2.0)
        # What the computation depends on: agents built from equal settings share their
        # compiled functions (see _compiled_update).
        self.identity: tuple[Any, ...] = (type(self), a, spec)

    def __hash__(self) -> int:
        return hash(self.identity)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Agent) and self.identity == other.identity

    def init(self, key: jax.Array) -> Any:
        """A fresh training state."""
        raise NotImplementedError

    def noise_shape(self) -> tuple[int, ...]:
        """Shape of the standard-normal noise one action consumes."""
        raise NotImplementedError

    def policy_from_noise(
        self, actor: Params, obs: jax.Array, noise: jax.Array | None, deterministic: bool
    ) -> jax.Array:
        """Actor params, obs (*B, obs), standard-normal noise (*B, *noise_shape) or None ->
        action (*B, act) in the box."""
        raise NotImplementedError

    def deterministic_needs_noise(self) -> bool:
        """Whether deterministic actions still use noise (DDPM's reference evaluation)."""
        return False

    def policy(
        self, actor: Params, obs: jax.Array, key: jax.Array, deterministic: bool
    ) -> jax.Array:
        """Actor params, obs (*B, obs) -> action (*B, act) in the box, noise drawn from key."""
        noise = jax.random.normal(key, obs.shape[:-1] + self.noise_shape())
        return self.policy_from_noise(actor, obs, noise, deterministic)

    def act(
        self, state: Any, obs: np.ndarray, noise: np.ndarray | None, deterministic: bool
    ) -> np.ndarray:
        """One observation (obs_dim,) -> one action (act_dim,) as numpy, using the given
        standard-normal ``noise`` of shape ``noise_shape()`` (see algd.noise). Only the actor's
        parameters cross into the compiled call."""
        if deterministic and not self.deterministic_needs_noise():
            return np.asarray(_compiled_act(self, True, state.actor, obs, None))
        if noise is None:
            raise ValueError("this action needs noise")
        return np.asarray(_compiled_act(self, deterministic, state.actor, obs, noise))

    def act_batch(
        self, actor: Params, obs: ArrayLike, noise: ArrayLike | None, deterministic: bool
    ) -> jax.Array:
        """A batch of observations (B, obs) -> actions (B, act), compiled (see
        ``policy_from_noise`` for the noise)."""
        return _compiled_act_batch(self, deterministic, actor, obs, noise)

    def act_group(self, actor: Params, obs: ArrayLike, noise: ArrayLike) -> jax.Array:
        """Every seed's stochastic action of a training group, compiled: stacked actors (a
        leading seed axis S), one observation (S, obs) and its noise (S, *noise_shape) per
        seed -> (S, act)."""
        return _compiled_act_group(self, actor, obs, noise)


class OffPolicyAgent(Agent):
    """Base class of the off-policy algorithms; see the module docstring."""

    def __init__(self, cfg: TrainConfig, spec: EnvSpec) -> None:
        super().__init__(cfg, spec)
        a = self.a
        reference = a.init == "reference"
        self.q_net = CriticEnsemble(
            self.obs_dim,
            self.act_dim,
            a.critics.critic_hidden,
            2,
            Q_ACTIVATION,
            "xavier" if reference else "lecun",
        )
        self.qc_net = CriticEnsemble(
            self.obs_dim,
            self.act_dim,
            a.critics.critic_hidden,
            a.critics.cost_ensemble,
            QC_ACTIVATION,
            ("ensemble" if a.critics.cost_init == "normal" else "ensemble_truncated")
            if reference
            else "lecun",
        )
        self.q_tx = optax.adam(a.critics.critic_lr)
        self.qc_tx = optax.adam(a.critics.cost_critic_lr)
        self.actor_tx = optax.adam(a.actor_lr)

    def update(
        self, state: TrainState, batches: Batch, key: jax.Array, episodes: jax.Array | None = None
    ) -> tuple[TrainState, Metrics]:
        """All UTD gradient steps of one environment step (compiled; donates ``state``);
        ``episodes``: the violation=episodes signal."""
        return _compiled_update(self, state, batches, key, episodes)

    def update_group(
        self,
        state: TrainState,
        batches: Batch,
        k_update: ArrayLike,
        t: ArrayLike,
        episodes: ArrayLike | None = None,
    ) -> tuple[TrainState, Metrics]:
        """Every seed's UTD gradient steps of environment step ``t`` in one compiled call,
        vmapped over the seeds (leading axis S of ``state``, ``batches``, ``k_update``,
        ``episodes``): seed i updates with fold_in(k_update[i], t). Donates ``state``."""
        return _compiled_update_group(self, state, batches, k_update, t, episodes)

    def update_group_from_replay(
        self,
        rows: tuple[int, int],
        state: TrainState,
        columns: Batch,
        size: ArrayLike,
        keys: tuple[ArrayLike, ArrayLike],
        t: ArrayLike,
        episodes: ArrayLike | None = None,
    ) -> tuple[TrainState, Metrics]:
        """:meth:`update_group` with the minibatches (``rows`` = (UTD, batch)) sampled inside
        the compiled call, seed i from its own replay ``columns`` (the first ``size`` rows)
        with fold_in(k_sample[i], t); ``keys`` = (k_update, k_sample). Donates ``state``."""
        return _compiled_update_from_replay(self, rows, state, columns, size, *keys, t, episodes)

    # --- what an algorithm supplies -----------------------------------------------------------
    def init_actor(self, key: jax.Array) -> tuple[Params, optax.OptState, Temperature | None]:
        """-> (actor params, actor optimiser state, temperature or None)."""
        raise NotImplementedError

    def next_action(
        self, state: TrainState, obs: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """a' ~ pi(.|s') for the critic targets, and the entropy bonus to add to the reward
        target (zeros for policies without one). Shapes (B, act), (B,)."""
        raise NotImplementedError

    def actor_step(
        self, state: TrainState, batch: Batch, key: jax.Array
    ) -> tuple[TrainState, Metrics]:
        raise NotImplementedError

    def updates_multiplier(self) -> bool:
        """Whether the multiplier learns (plain SAC keeps it at its initial value)."""
        return True

    def trains_cost_critics(self) -> bool:
        """Whether the cost critics learn: plain SAC, whose loss never reads them, skips their
        update and the multiplier step (an exact saving: nothing it computes changes)."""
        return True

    def init_extra(self, key: jax.Array) -> dict[str, Any]:
        """Algorithm-specific TrainState fields (HJ's lambda(s) network); none by default."""
        return {}

    # --- shared -------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> TrainState:
        k_q, k_qc, k_actor = jax.random.split(key, 3)
        obs = jnp.zeros((1, self.obs_dim))
        act = jnp.zeros((1, self.act_dim))
        q = self.q_net.init(k_q, obs, act)["params"]
        qc = self.qc_net.init(k_qc, obs, act)["params"]
        actor, actor_opt, temperature = self.init_actor(k_actor)
        a = self.a
        return TrainState(
            q=q,
            q_targ=copy_tree(q),
            q_opt=self.q_tx.init(q),
            qc=qc,
            qc_targ=copy_tree(qc),
            qc_opt=self.qc_tx.init(qc),
            actor=actor,
            actor_opt=actor_opt,
            temperature=temperature,
            mult=init_multiplier(
                a.lagrangian.multiplier, a.lagrangian.lambda_init, a.lagrangian.pid_ki
            ),
            step=jnp.int32(0),
            **self.init_extra(jax.random.fold_in(key, 1)),
        )

    def q_all(self, params: Params, obs: jax.Array, action: jax.Array) -> jax.Array:
        """Both reward critics, (2, *B)."""
        return apply_net(self.q_net, params, obs, action)

    def qc_all(self, params: Params, obs: jax.Array, action: jax.Array) -> jax.Array:
        """Every cost critic, (E, *B)."""
        return apply_net(self.qc_net, params, obs, action)

    def qc_bar(self, params: Params, obs: jax.Array, action: jax.Array) -> jax.Array:
        """The ensemble's upper bound Qc_bar = mean + k std, (*B)."""
        return ensemble_upper_bound(self.qc_all(params, obs, action), self.a.critics.cost_k)

    def critic_step(
        self, state: TrainState, b: Batch, key: jax.Array
    ) -> tuple[TrainState, Metrics]:
        a = self.a
        next_a, bonus = self.next_action(state, b.next_obs, key)
        q_next = self.q_all(state.q_targ, b.next_obs, next_a).min(0)
        y_r = jax.lax.stop_gradient(b.reward + a.gamma * (1.0 - b.reward_done) * (q_next + bonus))

        def q_loss(p: Params) -> jax.Array:
            return jnp.square(self.q_all(p, b.obs, b.action) - y_r).mean(-1).sum()

        lq, gq = jax.value_and_grad(q_loss)(state.q)
        q, q_opt = adam_step(self.q_tx, state.q, gq, state.q_opt)
        state = state.replace(q=q, q_opt=q_opt)
        metrics = {"loss/q": lq, "grad_norm/q": optax.global_norm(gq), "q/mean": y_r.mean()}
        if not self.trains_cost_critics():
            return state, metrics
        y_c = jax.lax.stop_gradient(self.cost_target(state, b, next_a, key))
        # Per-member mean squared errors, summed (reward critics, as the reference) and, for
        # the cost critics, averaged over the ensemble (the reference) or summed.
        qc_scale = 1.0 / a.critics.cost_ensemble if a.critics.cost_loss_reduction == "mean" else 1.0

        def qc_loss(p: Params) -> jax.Array:
            return qc_scale * jnp.square(self.qc_all(p, b.obs, b.action) - y_c).mean(-1).sum()

        lqc, gqc = jax.value_and_grad(qc_loss)(state.qc)
        qc, qc_opt = adam_step(self.qc_tx, state.qc, gqc, state.qc_opt)
        state = state.replace(qc=qc, qc_opt=qc_opt)
        return state, {**metrics, "loss/qc": lqc, "grad_norm/qc": optax.global_norm(gqc)}

    def cost_target(
        self, state: TrainState, b: Batch, next_a: jax.Array, key: jax.Array
    ) -> jax.Array:
        """The cost critics' regression targets (E, B): the discounted-sum Bellman backup
        c + gamma_c (1 - cost_done) Qc_targ^j(s', a') at the reward target's a', with
        Qc_targ^j floored at 0 under ``cost_floor="zero"``."""
        qc_next = self.cost_next_value(self.qc_all(state.qc_targ, b.next_obs, next_a))
        return b.cost + self.a.gamma_c * (1.0 - b.cost_done) * qc_next

    def cost_next_value(self, qc_next: jax.Array) -> jax.Array:
        """The target critics' reading of the next state as the backup uses it: unchanged, or
        floored at 0 under ``cost_floor="zero"`` (every true value is >= 0, as costs are)."""
        return jnp.maximum(qc_next, 0.0) if self.a.critics.cost_floor == "zero" else qc_next

    def multiplier_step(
        self, state: TrainState, b: Batch, key: jax.Array, episodes: jax.Array | None = None
    ) -> tuple[TrainState, Metrics]:
        """The multiplier steps on mean(Qc_bar(s, a) - h) over the minibatch's states, at the
        replayed actions or (violation=policy) at a ~ pi(.|s); or (violation=episodes) on
        ``episodes``, the loop's mean cost of the last training episodes minus the limit."""
        if not self.trains_cost_critics():
            return state, {}
        qc_bar = self.qc_bar(state.qc, b.obs, b.action)
        metrics = {"qc_bar/replay": qc_bar.mean()}
        if self.a.lagrangian.violation == "policy":
            action, _ = self.next_action(state, b.obs, key)
            qc_bar = self.qc_bar(state.qc, b.obs, action)
            metrics["qc_bar/policy"] = qc_bar.mean()
        violation = (qc_bar - self.h).mean()
        if self.a.lagrangian.violation == "episodes":
            if episodes is None:
                raise ValueError("violation=episodes needs the episodes' violation")
            violation = jnp.asarray(episodes, jnp.float32)
        mult = state.mult
        if self.updates_multiplier():
            mult = update_multiplier(
                self.a.lagrangian.multiplier, mult, violation, self.a.lagrangian
            )
        return state.replace(mult=mult), {**metrics, "violation": violation}

    def target_step(self, state: TrainState, index: jax.Array) -> TrainState:
        """Polyak averaging after the gradient steps of a UTD block whose index in the block is
        a multiple of target_every (0, 2, 4, ... as the reference's update counter)."""
        tau = self.a.critics.tau
        targets = (state.q_targ, state.qc_targ)

        def polyak(_: Any) -> Any:
            return optax.incremental_update((state.q, state.qc), targets, tau)

        # A conditional, so that the steps without an update do no work.
        do = (index % self.a.critics.target_every) == 0
        q_targ, qc_targ = jax.lax.cond(do, polyak, lambda _: targets, None)
        return state.replace(q_targ=q_targ, qc_targ=qc_targ)

    def grad_step(
        self,
        state: TrainState,
        b: Batch,
        key: jax.Array,
        index: jax.Array,
        episodes: jax.Array | None = None,
    ) -> tuple[TrainState, Metrics]:
        k_critic, k_actor = jax.random.split(key)
        state, m_critic = self.critic_step(state, b, k_critic)
        state, m_actor = self.actor_step(state, b, k_actor)
        # Its own stream, folded in, so the critic's and the actor's draws do not depend on it.
        state, m_mult = self.multiplier_step(state, b, jax.random.fold_in(key, 2), episodes)
        state = self.target_step(state.replace(step=state.step + 1), index)
        return state, {**m_critic, **m_actor, **m_mult, "lambda": state.mult.lam}

    def update_steps(
        self, state: TrainState, batches: Batch, key: jax.Array, episodes: jax.Array | None = None
    ) -> tuple[TrainState, Metrics]:
        """All UTD gradient steps of one environment step, pure (``update`` is its compiled
        form): batches have a leading UTD axis,
        step i draws its randomness from ``split(key, utd)[i]``; ``episodes`` is the
        violation=episodes signal (the same for every step)."""
        utd = batches.reward.shape[0]
        keys = jax.random.split(key, utd)
        state, metrics = jax.lax.scan(
            lambda s, xs: self.grad_step(s, *xs, episodes),
            state,
            (batches, keys, jnp.arange(utd)),
        )
        # Means over the UTD steps; a non-finite value in any step keeps the mean non-finite,
        # which is what the loop checks for before it keeps an update.
        return state, {k: v.mean() for k, v in metrics.items()}


# The agent is a static argument: equal agents (equal settings) reuse one compiled program, so
# a process that builds many agents (evaluations, tests, grids of runs) traces and compiles each
# distinct one once.
@partial(jax.jit, static_argnums=0, donate_argnums=1)
def _compiled_update(
    agent: OffPolicyAgent,
    state: TrainState,
    batches: Batch,
    key: jax.Array,
    episodes: jax.Array | None = None,
) -> tuple[TrainState, Metrics]:
    return agent.update_steps(state, batches, key, episodes)


def _seed_update(
    agent: OffPolicyAgent,
    state: TrainState,
    batches: Batch,
    k_update: jax.Array,
    t: jax.Array,
    episodes: jax.Array | None,
) -> tuple[TrainState, Metrics]:
    return agent.update_steps(state, batches, jax.random.fold_in(k_update, t), episodes)


@partial(jax.jit, static_argnums=0, donate_argnums=1)
def _compiled_update_group(
    agent: OffPolicyAgent,
    state: TrainState,
    batches: Batch,
    k_update: jax.Array,
    t: jax.Array,
    episodes: jax.Array | None = None,
) -> tuple[TrainState, Metrics]:
    def one(s: TrainState, b: Batch, k: jax.Array, e: Any) -> Any:
        return _seed_update(agent, s, b, k, t, e)

    return jax.vmap(one)(state, batches, k_update, episodes)


@partial(jax.jit, static_argnums=(0, 1), donate_argnums=2)
def _compiled_update_from_replay(
    agent: OffPolicyAgent,
    rows: tuple[int, int],
    state: TrainState,
    columns: Batch,
    size: jax.Array,
    k_update: jax.Array,
    k_sample: jax.Array,
    t: jax.Array,
    episodes: jax.Array | None = None,
) -> tuple[TrainState, Metrics]:
    def one(s: TrainState, c: Batch, ku: jax.Array, ks: jax.Array, e: Any) -> Any:
        batches = sample(c, size, jax.random.fold_in(ks, t), rows, agent.cfg.replacement)
        return _seed_update(agent, s, batches, ku, t, e)

    return jax.vmap(one)(state, columns, k_update, k_sample, episodes)


@partial(jax.jit, static_argnums=(0, 1))
def _compiled_act(
    agent: Agent,
    deterministic: bool,
    actor: Params,
    obs: jax.Array,
    noise: jax.Array | None,
) -> jax.Array:
    """One state's action (single-state calls keep the dispatch path short)."""
    batch_noise = None if noise is None else noise[None]
    return agent.policy_from_noise(actor, obs[None], batch_noise, deterministic)[0]


@partial(jax.jit, static_argnums=(0, 1))
def _compiled_act_batch(
    agent: Agent, deterministic: bool, actor: Params, obs: jax.Array, noise: jax.Array | None
) -> jax.Array:
    return agent.policy_from_noise(actor, obs, noise, deterministic)


@partial(jax.jit, static_argnums=0)
def _compiled_act_group(agent: Agent, actor: Params, obs: jax.Array, noise: jax.Array) -> jax.Array:
    def one(p: Params, o: jax.Array, n: jax.Array) -> jax.Array:
        return agent.policy_from_noise(p, o[None], n[None], False)[0]

    return jax.vmap(one)(actor, obs, noise)
