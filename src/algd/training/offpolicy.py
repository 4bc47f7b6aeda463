"""The off-policy loop: every environment step stores each seed's transition in its replay
buffer and then (after the warm-up, within ``update_cap``) runs the group's UTD gradient steps
as one compiled call (:meth:`algd.agents.base.OffPolicyAgent.update_group`)."""

from __future__ import annotations

import jax
import numpy as np

from algd.agents.base import Metrics, OffPolicyAgent, TrainState
from algd.buffer import Batch, ReplayBuffers
from algd.training.loop import GroupLoop
from algd.training.member import SAMPLE_STREAM


class OffPolicyLoop(GroupLoop):
    """A group of seeds of an off-policy algorithm (see :class:`GroupLoop`)."""

    agent: OffPolicyAgent

    def make_buffers(self, seeds: int) -> ReplayBuffers:
        """The group's replay buffers (on the device with ``replay=device``, or ``auto`` on an
        accelerator)."""
        cfg, spec = self.cfg, self.spec
        on_device = cfg.replay == "device" or (
            cfg.replay == "auto" and jax.default_backend() != "cpu"
        )
        return ReplayBuffers(seeds, cfg.buffer_size, spec.obs_dim, spec.act_dim, on_device)

    def metric_names(self) -> list[str]:
        cfg, spec = self.cfg, self.spec
        rows = (cfg.utd, cfg.batch_size)
        f32 = np.float32
        batch = Batch(
            jax.ShapeDtypeStruct((*rows, spec.obs_dim), f32),
            jax.ShapeDtypeStruct((*rows, spec.act_dim), f32),
            jax.ShapeDtypeStruct(rows, f32),
            jax.ShapeDtypeStruct(rows, f32),
            jax.ShapeDtypeStruct((*rows, spec.obs_dim), f32),
            jax.ShapeDtypeStruct(rows, f32),
            jax.ShapeDtypeStruct(rows, f32),
        )
        episodes = jax.ShapeDtypeStruct((), f32)
        one = self.one_state_shapes()
        out = jax.eval_shape(self.agent.update_steps, one, batch, self.k_update[0], episodes)
        return sorted(out[1])

    def step(self) -> None:
        """One environment step of every seed, then (when due) their UTD gradient steps."""
        cfg = self.cfg
        t = self.env_step
        rows = self.collect(t)
        self.buffers.add(Batch(*(np.stack(column) for column in list(zip(*rows))[:7])))
        if not self.may_update(t):
            self.throughput.add(1, 0)
            return
        self.state, metrics = self.update(self.state, t)
        self.keep_metrics(metrics, t, cfg.utd)
        self.throughput.add(1, cfg.utd)

    def update(self, state: TrainState, t: int) -> tuple[TrainState, Metrics]:
        """Every seed's UTD gradient steps of environment step t from ``state`` (donated), as
        one compiled call; the minibatches are sampled inside it (device buffers) or on the
        host with each seed's generator for step t."""
        cfg, buffers, agent = self.cfg, self.buffers, self.agent
        rows = (cfg.utd, cfg.batch_size)
        episodes = self.episodes_violation()
        if buffers.on_device:
            keys = (self.k_update, self.k_sample)
            size = np.int32(buffers.size)
            return agent.update_group_from_replay(
                rows, state, buffers.columns, size, keys, np.int32(t), episodes
            )
        rngs = [np.random.default_rng([m.seed, SAMPLE_STREAM, t]) for m in self.members]
        batches = buffers.sample_host(rngs, rows, cfg.replacement)
        return agent.update_group(state, batches, self.k_update, np.int32(t), episodes)

    def episodes_violation(self) -> np.ndarray | None:
        """violation=episodes: each seed's mean cost of its last ``violation_episodes`` training
        episodes, plus (eval_gap) how far the last evaluations paid more than they did (at most
        eval_gap_cap d), minus the limit the agent trains for (the env's less cost_margin; 0
        before an episode has ended); None otherwise."""
        lag = self.cfg.agent.lagrangian
        if lag.violation != "episodes":
            return None
        out, limit = [], self.agent.limit
        cap = np.inf if lag.eval_gap_cap is None else lag.eval_gap_cap * self.agent.spec.cost_limit
        for m in self.members:
            last = list(m.loop.recent_limit_cost)[-lag.violation_episodes :]
            gap = m.loop.eval_gap(lag.eval_gap_window, cap) if lag.eval_gap else 0.0
            out.append(float(np.mean(last)) + gap - limit if last else 0.0)
        return np.asarray(out, np.float32)

    def may_update(self, t: int) -> bool:
        """Whether environment step t (0-based) runs its UTD gradient steps: after the warm-up,
        with enough transitions, and within ``update_cap``: the reference runs an epoch's
        (episode length's) updates only while they number at most update_cap x the environment
        steps since the warm-up, which halves the first epoch's updates at UTD 10. The same for
        every seed of a group (it depends on t alone)."""
        cfg = self.cfg
        if t < cfg.warmup_steps or self.buffers.size < cfg.learning_starts:
            return False
        if cfg.update_cap is None:
            return True
        since = t - cfg.warmup_steps
        if since % self.spec.max_episode_steps == 0:
            for m in self.members:
                m.loop.epoch_updates = 0
        return self.members[0].loop.epoch_updates <= cfg.update_cap * since
