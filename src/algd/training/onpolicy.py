"""The on-policy loop (PPO-Lag), the off-policy loop's sibling over :class:`GroupLoop`.

Per environment step: act with the current policy, step every seed's env, append the
transition to the rollout. When the rollout is full (``ppo_rollout`` steps) or, with
``ppo_epoch_flush`` (the reference), at the end of every epoch of one episode length, the
group's update runs as one compiled call (:meth:`algd.agents.onpolicy.OnPolicyAgent.update_group`) and
the rollout starts again empty. Steps before ``warmup_steps`` are not learned from. A
checkpoint holds the unfinished rollout, so a resumed run continues exactly.
"""

from __future__ import annotations

import jax
import numpy as np

from algd.agents.onpolicy import OnPolicyAgent
from algd.buffer import Rollout, RolloutBuffers
from algd.training.loop import GroupLoop
from algd.training.member import Transition


class OnPolicyLoop(GroupLoop):
    """A group of seeds of an on-policy algorithm (see :class:`GroupLoop`)."""

    agent: OnPolicyAgent

    def make_buffers(self, seeds: int) -> RolloutBuffers:
        """The group's rollouts (host memory; an update sends them to the device once)."""
        spec = self.spec
        return RolloutBuffers(seeds, self.agent.capacity, spec.obs_dim, spec.act_dim)

    def metric_names(self) -> list[str]:
        spec, cap = self.spec, self.agent.capacity
        f32 = np.float32
        column = {"obs": (cap, spec.obs_dim), "action": (cap, spec.act_dim)}
        column["next_obs"] = (cap, spec.obs_dim)
        rollout = Rollout(
            *(jax.ShapeDtypeStruct(column.get(name, (cap,)), f32) for name in Rollout._fields)
        )
        n = jax.ShapeDtypeStruct((), np.int32)
        one = self.one_state_shapes()
        out = jax.eval_shape(self.agent.update_rollout, one, rollout, n, self.k_update[0])
        return sorted(out[1])

    def step(self) -> None:
        """One environment step of every seed; at the rollout's end, every seed's update."""
        t = self.env_step
        rows = self.collect(t)
        if t < self.cfg.warmup_steps:
            self.throughput.add(1, 0)
            return
        self.buffers.add(_rollout_row(rows))
        if not self.rollout_ends(t):
            self.throughput.add(1, 0)
            return
        steps = self.update_rollouts(t)
        self.throughput.add(1, steps)

    def rollout_ends(self, t: int) -> bool:
        """Whether environment step t (0-based) closes the rollout: it is full, or (with
        ``ppo_epoch_flush``) step t is the last of an epoch of one episode length."""
        a = self.cfg.agent
        epoch_end = a.ppo.epoch_flush and (t + 1) % self.spec.max_episode_steps == 0
        return self.buffers.full or epoch_end

    def update_rollouts(self, t: int) -> int:
        """Every seed's update on its rollout (closed at step t), then an empty rollout; returns
        the gradient steps each seed took (a rollout of fewer than 2 steps is dropped, as the
        reference does)."""
        n = self.buffers.size
        if n < 2:
            self.buffers.clear()
            return 0
        self.state, metrics = self.agent.update_group(
            self.state, self.buffers.columns, np.int32(n), self.k_update, np.int32(t)
        )
        steps = self.agent.grad_steps(n)
        self.keep_metrics(metrics, t, steps)
        self.buffers.clear()
        return steps


def _rollout_row(rows: list[Transition]) -> Rollout:
    """The seeds' transitions of one step as one rollout row per seed."""
    return Rollout(
        obs=np.stack([r.obs for r in rows]),
        action=np.stack([r.action for r in rows]),
        reward=np.array([r.reward for r in rows]),
        cost=np.array([r.cost for r in rows]),
        next_obs=np.stack([r.next_obs for r in rows]),
        done=np.array([r.reward_done for r in rows]),
        boundary=np.array([r.reward_done or r.ended for r in rows]),
        discount=np.array([r.discount for r in rows]),
    )
