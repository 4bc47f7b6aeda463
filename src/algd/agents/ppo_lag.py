"""PPO-Lag: on-policy PPO with a reward value network, a cost value network and a Lagrange
multiplier, as the authors ran it beside ALGD.

One update per rollout (``update(state, rollout, n, key)``, pure and jitted):

1. From the policy before the update: log pi(a|s) of the rollout's actions, V_r and V_c at s
   and s'.
2. GAE for the reward and for the cost (:func:`gae`); advantage A = A_r - lambda A_c,
   normalised over the rollout.
3. The multiplier steps on (estimated episode cost - budget) (:func:`episode_cost`), with the
   shared multiplier code (the reference: Adam on log lambda).
4. ``ppo_epochs`` passes over the rollout in shuffled minibatches: the clipped surrogate on A
   (:func:`clipped_surrogate`), then each value network on its GAE return; every network's
   gradient is clipped to ``max_grad_norm`` and stepped by its own Adam.

The rollout arrives padded to a fixed capacity with its length ``n``, so rollouts of any length
share one compiled program; padded rows carry zero weight and minibatches past ``n`` are
skipped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from algd.agents.base import Metrics, Params, adam_step
from algd.agents.onpolicy import OnPolicyAgent
from algd.buffer import Rollout
from algd.config import TrainConfig
from algd.envs.base import EnvSpec
from algd.errors import ConfigError
from algd.lagrangian import Multiplier, init_multiplier, update_multiplier
from algd.networks import GaussianActor, StateMLP, apply_net, squashed_action

LOG_RATIO_CLIP = 10.0  # the reference clamps log(pi / pi_old) before exponentiating
EDGE = 1e-6  # actions are pulled this far inside the box before atanh
NORM_EPS = 1e-8


class PPOState(struct.PyTreeNode):
    actor: Params
    actor_opt: optax.OptState
    vr: Params  # reward value network
    vr_opt: optax.OptState
    vc: Params  # cost value network
    vc_opt: optax.OptState
    mult: Multiplier
    step: jax.Array  # gradient steps done


def gae(
    values_in: tuple[jax.Array, jax.Array, jax.Array],
    done: jax.Array,
    boundary: jax.Array,
    valid: jax.Array,
    gamma: float,
    lam: float,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation over one rollout in step order.

    values_in = (signal r_t, V(s_t), V(s'_t)), each (T,). delta_t = r_t + gamma (1 - done_t)
    V(s'_t) - V(s_t); A_t = delta_t + gamma lam (1 - boundary_t) A_{t+1}, with A = 0 on rows past
    the rollout's end (``valid`` = 0), so the last real row bootstraps from V(s') alone.
    Returns (A, A + V(s))."""
    signal, v, v_next = values_in
    delta = signal + gamma * (1.0 - done) * v_next - v

    def back(carry: jax.Array, xs: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
        d, cut, ok = xs
        a = jnp.where(ok > 0, d + gamma * lam * (1.0 - cut) * carry, 0.0)
        return a, a

    _, adv = jax.lax.scan(back, jnp.float32(0.0), (delta, boundary, valid), reverse=True)
    return adv, adv + v


def episode_cost(cost: jax.Array, done: jax.Array, valid: jax.Array, horizon: int) -> jax.Array:
    """The reference's estimate of the episode cost from one rollout: the mean cost of the
    segments that end at a done flag; with no done flag in the rollout, its mean cost per step
    times the episode length ``horizon`` (the reference's rollouts are one episode long, where
    this is the rollout's total)."""
    cost, done = cost * valid, done * valid
    n_done = done.sum()
    csum = jnp.cumsum(cost)
    last = jnp.max(jnp.where(done > 0, jnp.arange(cost.shape[0]), -1))
    through_last = jnp.where(last >= 0, csum[jnp.maximum(last, 0)], 0.0)
    per_step = csum[-1] / jnp.maximum(valid.sum(), 1.0)
    return jnp.where(n_done > 0, through_last / jnp.maximum(n_done, 1.0), per_step * horizon)


def clipped_surrogate(
    logp: jax.Array, old_logp: jax.Array, adv: jax.Array, clip: float, weight: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """PPO's clipped surrogate loss -mean_w(min(r A, clip(r, 1 - eps, 1 + eps) A)), r =
    exp(clamp(log pi - log pi_old, +-10)); also returns the weighted share of clipped ratios."""
    ratio = jnp.exp(jnp.clip(logp - old_logp, -LOG_RATIO_CLIP, LOG_RATIO_CLIP))
    surr = jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip, 1.0 + clip) * adv)
    w = weight / jnp.maximum(weight.sum(), 1.0)
    clipped = (jnp.abs(ratio - 1.0) > clip).astype(jnp.float32)
    return -(w * surr).sum(), (w * clipped).sum()


def clip_grads(grads: Params, max_norm: float) -> tuple[Params, jax.Array]:
    """Scale a gradient to global norm at most max_norm (as torch's clip_grad_norm_:
    coefficient max_norm / (norm + 1e-6) when below 1); returns it and the norm before."""
    norm = optax.global_norm(grads)
    coef = jnp.minimum(1.0, max_norm / (norm + 1e-6))
    return jax.tree_util.tree_map(lambda g: g * coef, grads), norm


class PPOLag(OnPolicyAgent):
    def __init__(self, cfg: TrainConfig, spec: EnvSpec) -> None:
        super().__init__(cfg, spec)
        if cfg.explore_std > 0:
            raise ConfigError("explore_std", "applies to the off-policy agents, not ppo_lag")
        a = self.a
        init = "xavier" if a.init == "reference" else "lecun"
        self.actor_net = GaussianActor(spec.act_dim, a.actor_hidden, init_scheme=init)
        self.value_net = StateMLP(a.ppo.value_hidden, init)
        self.actor_tx = optax.adam(a.actor_lr)
        self.value_tx = optax.adam(a.ppo.value_lr)
        self.capacity = rollout_capacity(cfg, spec)

    # --- policy ---------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> PPOState:
        k_actor, k_vr, k_vc = jax.random.split(key, 3)
        obs = jnp.zeros((1, self.obs_dim))
        actor = self.actor_net.init(k_actor, obs)["params"]
        vr = self.value_net.init(k_vr, obs)["params"]
        vc = self.value_net.init(k_vc, obs)["params"]
        a = self.a
        return PPOState(
            actor=actor,
            actor_opt=self.actor_tx.init(actor),
            vr=vr,
            vr_opt=self.value_tx.init(vr),
            vc=vc,
            vc_opt=self.value_tx.init(vc),
            mult=init_multiplier(
                a.lagrangian.multiplier, a.lagrangian.lambda_init, a.lagrangian.pid_ki
            ),
            step=jnp.int32(0),
        )

    def noise_shape(self) -> tuple[int, ...]:
        return (self.act_dim,)

    def policy_from_noise(
        self, actor: Params, obs: jax.Array, noise: jax.Array | None, deterministic: bool
    ) -> jax.Array:
        mean, log_std = apply_net(self.actor_net, actor, obs)
        return squashed_action(mean, log_std, noise, deterministic, self.act_scale, self.act_bias)

    def log_prob(
        self, actor: Params, obs: jax.Array, action: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """log pi(a|s) of given actions in the box (inverted through the tanh, the action pulled
        1e-6 inside the box), and the base Gaussian's entropy; (*B,) each."""
        mean, log_std = apply_net(self.actor_net, actor, obs)
        y = jnp.clip((action - self.act_bias) / (self.act_scale + EDGE), -1 + EDGE, 1 - EDGE)
        u = jnp.arctanh(y)
        std = jnp.exp(log_std)
        log_gauss = -0.5 * jnp.square((u - mean) / std) - log_std - 0.5 * jnp.log(2 * jnp.pi)
        log_det = jnp.log(self.act_scale * (1 - jnp.square(y)) + EDGE)
        entropy = (0.5 + 0.5 * jnp.log(2 * jnp.pi) + log_std).sum(-1)
        return (log_gauss - log_det).sum(-1), entropy

    def values(self, params: Params, obs: jax.Array) -> jax.Array:
        return apply_net(self.value_net, params, obs)

    def grad_steps(self, n: int) -> int:
        """Gradient steps of one update on a rollout of ``n`` steps: a pass is ceil(n / mb)
        minibatches."""
        return self.a.ppo.epochs * -(-n // min(self.a.ppo.minibatch, self.capacity))

    def budget(self) -> float:
        """What the estimated episode cost is held to (``ppo_budget``)."""
        return self.h if self.a.ppo.budget == "reference" else self.limit

    # --- the update -----------------------------------------------------------------------------
    def update_rollout(
        self, state: PPOState, r: Rollout, n: jax.Array, key: jax.Array
    ) -> tuple[PPOState, Metrics]:
        """One PPO-Lag update from a rollout padded to ``capacity`` rows, ``n`` of them real:
        the advantages, the multiplier's step on the rollout's episode cost (before the
        policy), then ``ppo_epochs`` passes of minibatch steps."""
        a = self.a
        valid = (jnp.arange(r.reward.shape[0]) < n).astype(jnp.float32)
        old_logp, _ = self.log_prob(state.actor, r.obs, r.action)
        adv, ret_r, ret_c, count = self.advantages(state, r, valid)

        discounted = a.ppo.budget == "limit" and self.spec.cost_limit_kind == "discounted"
        signal = r.cost * r.discount if discounted else r.cost
        spent = episode_cost(signal, r.done, valid, self.spec.max_episode_steps)
        mult = update_multiplier(
            a.lagrangian.multiplier, state.mult, spent - self.budget(), a.lagrangian
        )
        state = state.replace(mult=mult)

        data = (r.obs, r.action, old_logp, adv, ret_r, ret_c)
        state, stats = self.passes(state, data, valid, n, key)
        done_steps = jnp.maximum(stats[:, -1].sum(), 1.0)
        means = stats[:, :-1].sum(0) / done_steps
        metrics = {name: means[i] for i, name in enumerate(METRICS)}
        metrics.update(
            {
                "lambda": state.mult.lam,
                "ppo/episode_cost": spent,
                "ppo/budget": jnp.float32(self.budget()),
                "ppo/grad_steps": stats[:, -1].sum(),
                "v/reward_return": (ret_r * valid).sum() / count,
                "v/cost_return": (ret_c * valid).sum() / count,
            }
        )
        return state, metrics

    def advantages(
        self, state: PPOState, r: Rollout, valid: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """(normalised advantage A_r - lambda A_c, reward returns, cost returns, valid rows) of
        a rollout, by GAE over its valid rows."""
        a = self.a
        vr, vr_next = self.values(state.vr, r.obs), self.values(state.vr, r.next_obs)
        vc, vc_next = self.values(state.vc, r.obs), self.values(state.vc, r.next_obs)
        adv_r, ret_r = gae(
            (r.reward, vr, vr_next), r.done, r.boundary, valid, a.gamma, a.ppo.gae_lambda
        )
        adv_c, ret_c = gae(
            (r.cost, vc, vc_next), r.done, r.boundary, valid, a.gamma_c, a.ppo.cost_gae_lambda
        )
        adv = adv_r - state.mult.lam * adv_c
        count = jnp.maximum(valid.sum(), 2.0)
        mean = (adv * valid).sum() / count
        std = jnp.sqrt((jnp.square(adv - mean) * valid).sum() / (count - 1.0))
        adv = jax.lax.stop_gradient((adv - mean) / (std + NORM_EPS))
        return adv, ret_r, ret_c, count

    def passes(
        self,
        state: PPOState,
        data: tuple[jax.Array, ...],
        valid: jax.Array,
        n: jax.Array,
        key: jax.Array,
    ) -> tuple[PPOState, jax.Array]:
        """``ppo_epochs`` passes over the valid rows in minibatches (a fresh order per pass,
        from ``split(key, ppo_epochs)``); -> (state, per-minibatch metrics with a last column
        1 for the minibatches that ran)."""
        a = self.a
        rows = valid.shape[0]
        mb = min(a.ppo.minibatch, rows)
        per_epoch = -(-rows // mb)

        def minibatch(
            carry: PPOState, xs: tuple[jax.Array, jax.Array]
        ) -> tuple[PPOState, jax.Array]:
            perm, j = xs
            start = j * mb
            idx = jax.lax.dynamic_slice(perm, (start,), (mb,))
            weight = ((start + jnp.arange(mb)) < n).astype(jnp.float32)
            batch = tuple(x[idx] for x in data)

            def step(s: PPOState) -> tuple[PPOState, jax.Array]:
                s, m = self.grad_step(s, batch, weight)
                return s, jnp.concatenate([m, jnp.ones(1)])

            def skip(s: PPOState) -> tuple[PPOState, jax.Array]:
                return s, jnp.zeros(len(METRICS) + 1)

            return jax.lax.cond(start < n, step, skip, carry)

        def epoch(carry: PPOState, k: jax.Array) -> tuple[PPOState, jax.Array]:
            order = jnp.where(valid > 0, jax.random.uniform(k, (rows,)), 2.0)
            perm = jnp.argsort(order)
            perm = jnp.pad(perm, (0, per_epoch * mb - rows))
            xs = (jnp.broadcast_to(perm, (per_epoch, perm.shape[0])), jnp.arange(per_epoch))
            return jax.lax.scan(minibatch, carry, xs)

        state, stats = jax.lax.scan(epoch, state, jax.random.split(key, a.ppo.epochs))
        return state, stats.reshape(-1, len(METRICS) + 1)

    def grad_step(
        self, s: PPOState, batch: tuple[jax.Array, ...], weight: jax.Array
    ) -> tuple[PPOState, jax.Array]:
        """One minibatch: actor, then reward value, then cost value (the reference's order)."""
        a = self.a
        obs, action, old_logp, adv, ret_r, ret_c = batch
        w = weight / jnp.maximum(weight.sum(), 1.0)

        def actor_loss(p: Params) -> tuple[jax.Array, tuple[jax.Array, ...]]:
            logp, ent = self.log_prob(p, obs, action)
            surr, clip_frac = clipped_surrogate(logp, old_logp, adv, a.ppo.clip, weight)
            kl = (w * (old_logp - logp)).sum()
            return surr - a.ppo.entropy_coef * (w * ent).sum(), (clip_frac, kl, (w * ent).sum())

        (l_actor, (clip_frac, kl, ent)), g = jax.value_and_grad(actor_loss, has_aux=True)(s.actor)
        g, gn_actor = clip_grads(g, a.ppo.max_grad_norm)
        actor, actor_opt = adam_step(self.actor_tx, s.actor, g, s.actor_opt)

        def value_loss(p: Params, target: jax.Array, coef: float) -> jax.Array:
            return coef * (w * jnp.square(self.values(p, obs) - target)).sum()

        l_vr, g = jax.value_and_grad(value_loss)(s.vr, ret_r, a.ppo.vf_coef)
        g, gn_vr = clip_grads(g, a.ppo.max_grad_norm)
        vr, vr_opt = adam_step(self.value_tx, s.vr, g, s.vr_opt)
        l_vc, g = jax.value_and_grad(value_loss)(s.vc, ret_c, a.ppo.cost_vf_coef)
        g, gn_vc = clip_grads(g, a.ppo.max_grad_norm)
        vc, vc_opt = adam_step(self.value_tx, s.vc, g, s.vc_opt)
        s = s.replace(
            actor=actor,
            actor_opt=actor_opt,
            vr=vr,
            vr_opt=vr_opt,
            vc=vc,
            vc_opt=vc_opt,
            step=s.step + 1,
        )
        return s, jnp.stack([l_actor, l_vr, l_vc, gn_actor, gn_vr, gn_vc, clip_frac, kl, ent])


METRICS = (
    "loss/actor",
    "loss/value",
    "loss/cost_value",
    "grad_norm/actor",
    "grad_norm/value",
    "grad_norm/cost_value",
    "ppo/clip_frac",
    "ppo/approx_kl",
    "entropy",
)


def rollout_capacity(cfg: TrainConfig, spec: EnvSpec) -> int:
    """Rows one rollout can hold: ppo_rollout, or at most one epoch (episode length) when the
    rollout is also cut at every epoch's end."""
    a = cfg.agent
    return min(a.ppo.rollout, spec.max_episode_steps) if a.ppo.epoch_flush else a.ppo.rollout
