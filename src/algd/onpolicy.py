"""The on-policy loop (PPO-Lag), beside the off-policy one in :mod:`algd.train`.

Per environment step: act with the current policy, step every seed's env, append the
transition to the rollout. When the rollout is full (``ppo_rollout`` steps) or, with
``ppo_epoch_flush`` (the reference), at the end of every epoch of one episode length, the
group's update runs as one compiled call (each seed's PPO-Lag update on its own rollout,
vmapped over the seeds) and the rollout starts again empty. Steps before ``warmup_steps`` are
not learned from.

Everything else is the off-policy loop's: the members and their envs, logs, evaluations,
checkpoints (a checkpoint holds the unfinished rollout, so a resumed run continues exactly),
groups of seeds, the signal handling and the run directories.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from algd.agents.ppo_lag import PPOLag, PPOState
from algd.buffer import Rollout, RolloutBuffers
from algd.train import Trainer


class OnPolicyTrainer(Trainer):
    agent: PPOLag

    def make_buffers(self, seeds: int) -> RolloutBuffers:
        """The group's rollouts (host memory; an update sends them to the device once)."""
        spec = self.spec
        return RolloutBuffers(seeds, self.agent.capacity, spec.obs_dim, spec.act_dim)

    def _metric_names(self) -> list[str]:
        spec, cap = self.spec, self.agent.capacity
        f32 = np.float32
        column = {"obs": (cap, spec.obs_dim), "action": (cap, spec.act_dim)}
        column["next_obs"] = (cap, spec.obs_dim)
        rollout = Rollout(
            *(jax.ShapeDtypeStruct(column.get(name, (cap,)), f32) for name in Rollout._fields)
        )
        one = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), self.state
        )
        n = jax.ShapeDtypeStruct((), np.int32)
        out = jax.eval_shape(self.agent.update_rollout, one, rollout, n, self.k_update[0])
        return sorted(out[1])

    def step(self) -> None:
        """One environment step of every seed; at the rollout's end, every seed's update."""
        t = self.env_step
        rows = self.collect(t)
        if t < self.cfg.warmup_steps:
            self.throughput.add(1, 0)
            return
        self.buffers.add(
            Rollout(
                obs=np.stack([r.obs for r in rows]),
                action=np.stack([r.action for r in rows]),
                reward=np.array([r.reward for r in rows]),
                cost=np.array([r.cost for r in rows]),
                next_obs=np.stack([r.next_obs for r in rows]),
                done=np.array([r.reward_done for r in rows]),
                boundary=np.array([r.reward_done or r.ended for r in rows]),
                discount=np.array([r.discount for r in rows]),
            )
        )
        if not self.rollout_ends(t):
            self.throughput.add(1, 0)
            return
        steps = self.update_rollouts(t)
        self.throughput.add(1, steps)

    def rollout_ends(self, t: int) -> bool:
        """Whether environment step t (0-based) closes the rollout: it is full, or (with
        ``ppo_epoch_flush``) step t is the last of an epoch of one episode length."""
        a = self.cfg.agent
        epoch_end = a.ppo_epoch_flush and (t + 1) % self.spec.max_episode_steps == 0
        return self.buffers.full or epoch_end

    def update_rollouts(self, t: int) -> int:
        """Every seed's update on its rollout (closed at step t), then an empty rollout; returns
        the gradient steps each seed took (a rollout of fewer than 2 steps is dropped, as the
        reference does)."""
        n = self.buffers.size
        if n < 2:
            self.buffers.clear()
            return 0
        self.state, metrics = _rollout_update(
            self.agent,
            self.state,
            self.buffers.columns,
            np.int32(n),
            self.k_update,
            np.int32(t),
        )
        steps = self.agent.grad_steps(n)
        self.keep_metrics(metrics, t, steps)
        self.buffers.clear()
        return steps


# Every seed's PPO-Lag update on its own rollout in one compiled call, vmapped over the seeds:
# seed i draws its minibatch order from fold_in(k_update[i], t). The state is donated.
@partial(jax.jit, static_argnums=0, donate_argnums=1)
def _rollout_update(
    agent: PPOLag,
    state: PPOState,
    rollouts: Rollout,
    n: jax.Array,
    k_update: jax.Array,
    t: jax.Array,
) -> tuple[PPOState, dict[str, Any]]:
    def one(s: PPOState, r: Rollout, k: jax.Array) -> Any:
        return agent.update_rollout(s, r, n, jax.random.fold_in(k, t))

    return jax.vmap(one)(state, jax.tree_util.tree_map(jnp.asarray, rollouts), k_update)
