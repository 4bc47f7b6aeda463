"""The one off-policy training loop every algorithm runs through.

Per environment step: act (warm-up actions first), store the transition with its two
end-of-episode flags (:func:`episode_end`), then run the UTD gradient steps as one compiled call. Every
``log_every`` steps a metrics row, every ``eval_every`` a deterministic evaluation, every
``checkpoint_every`` a checkpoint. All randomness derives from the run seed and the step or
episode index, so a run resumed from a checkpoint continues exactly as if it had never stopped
(on tasks whose mid-episode state can be restored; elsewhere the unfinished episode is dropped).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from algd.agents import build_agent, is_on_policy
from algd.agents.base import Agent, OffPolicyAgent, TrainState
from algd.agents.ppo_lag import rollout_capacity
from algd.buffer import Batch, ReplayBuffers, nbytes_for, rollout_nbytes, sample
from algd.checkpoint import (
    CHECKPOINT_NAME,
    CHECKPOINT_NEXT,
    atomic_write_bytes,
    checkpoint_step,
    commit_next,
    load_checkpoint,
    save_checkpoint,
    settle_checkpoints,
)
from algd.config import TrainConfig, to_dict
from algd.envs import EnvSpec, SafeEnv, env_for
from algd.errors import AlgdError, NumericalError, RunDirError, Stopped
from algd.evaluate import episode_seed, evaluate
from algd.logs import Console, CsvLog, TensorBoard, Throughput, Wandb, truncate_after
from algd.noise import NoiseStream
from algd.rundir import (
    CONFIG_NAME,
    FAILURE_NAME,
    LOG_FILES,
    SUMMARY_NAME,
    RunDir,
    check_claimable,
    check_group_path,
    create,
    default_group_dir,
    default_run_dir,
    is_group_dir,
    load_run_config,
    member_dir,
    open_existing,
    read_group,
    write_config,
    write_group,
)
from algd.stop import StopFlag, stop_signals

TRAIN_STREAM, SAMPLE_STREAM, WARMUP_STREAM, ACT_STREAM = 3, 1, 2, 5
RECENT = 10  # training return/cost in metrics rows: mean over the last RECENT episodes


class Transition(NamedTuple):
    """One seed's environment step as the loops store it: the replay columns (``Batch``), then
    whether the episode ended there and gamma_c ** (the step's index in its episode)."""

    obs: np.ndarray
    action: np.ndarray
    reward: float
    cost: float
    next_obs: np.ndarray
    reward_done: bool
    cost_done: bool
    ended: bool
    discount: float


@dataclass
class Loop:
    """Counters and accumulators of the loop (checkpointed)."""

    env_step: int = 0
    episode: int = 0
    updates: int = 0
    epoch_updates: int = 0  # gradient steps in the current epoch (for update_cap)
    eval_index: int = 0
    ep_return: float = 0.0
    ep_cost: float = 0.0
    ep_disc_cost: float = 0.0
    ep_len: int = 0
    recent: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=RECENT))
    # each recent episode's cost in the limit's units (discounted or summed), for
    # violation=episodes
    recent_limit_cost: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))


def episode_end(
    env: SafeEnv, bootstrap: str, terminated: bool, truncated: bool, info: dict[str, Any]
) -> tuple[bool, bool]:
    """(reward_done, cost_done) of a transition. ``terminated``: both are the env's terminated
    flag, so a time-limit truncation bootstraps (recommended). ``reference``: the authors'
    samplers (:meth:`SafeEnv.reference_episode_end`)."""
    if bootstrap == "terminated":
        return terminated, terminated
    return env.reference_episode_end(terminated, truncated, info)


class Member:
    """One seed of a training group, on the host: its config, run directory, envs, counters,
    current observation, action noise, logs and latest update metrics."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.seed = cfg.seed
        self.run_dir = Path(str(cfg.run_dir))
        self.env = env_for(cfg)
        self.eval_env = env_for(cfg)
        self.loop = Loop()
        self.obs = np.zeros(self.env.spec.obs_dim, np.float32)
        self.act_noise: NoiseStream | None = None
        self.logs: RunLogs | None = None
        self.last_metrics: dict[str, float] = {}

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME

    def new_episode(self) -> None:
        lp = self.loop
        lp.ep_return = lp.ep_cost = lp.ep_disc_cost = 0.0
        lp.ep_len = 0
        self.obs, _ = self.env.reset(episode_seed(self.seed, TRAIN_STREAM, lp.episode))

    def close(self) -> None:
        if self.logs is not None:
            self.logs.close()
            self.logs = None
        self.env.close()
        self.eval_env.close()


def _stack(trees: list[Any]) -> Any:
    """Trees with equal structure -> one tree with a leading axis (stacked on the host: no
    compilation per leaf shape)."""
    return jax.tree_util.tree_map(lambda *xs: jnp.asarray(np.stack(xs)), *trees)


@jax.jit
def _take(tree: Any, i: jax.Array) -> Any:
    """Member i of a stacked tree (one compiled program for any i)."""
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def failure_record(cfg: TrainConfig, reason: str, user_error: bool) -> dict[str, Any]:
    """The record of a seed that stopped without finishing (in place of its summary)."""
    return {
        "status": "failed",
        "error": reason,
        "user_error": user_error,
        "env": cfg.env,
        "algo": cfg.algo,
        "seed": cfg.seed,
        "run_dir": str(cfg.run_dir),
    }


def group_settings(cfg: TrainConfig) -> dict[str, Any]:
    """What the seeds of one group share: the config without seed and run directory."""
    return to_dict(replace(cfg, seed=0, run_dir=None, overwrite=False))


class Trainer:
    """Trains a group of seeds of one configuration (one seed is a group of one).

    The host steps the S environments; the device holds the S training states and replay
    buffers, stacked on a leading seed axis. Per environment step there is one compiled action
    call and one compiled update (the S seeds' UTD gradient steps, vmapped), whatever S is. Each
    seed keeps its own key streams, buffer, multiplier, evaluations and run directory, which
    holds exactly the files a run of that seed alone writes. ``run()`` trains to
    ``total_steps`` and returns one record per seed."""

    def __init__(
        self,
        cfgs: TrainConfig | Sequence[TrainConfig],
        resume: bool = False,
        console: bool = True,
        stop: StopFlag | None = None,
    ):
        cfgs = [cfgs] if isinstance(cfgs, TrainConfig) else list(cfgs)
        if not cfgs:
            raise AlgdError("a training group needs at least one seed")
        shared = group_settings(cfgs[0])
        for c in cfgs[1:]:
            if group_settings(c) != shared:
                raise AlgdError("the seeds of a training group must share every other setting")
        if len({c.seed for c in cfgs}) != len(cfgs):
            raise AlgdError("a training group has the same seed twice")
        self.cfg = cfg = cfgs[0]
        self.stop = stop if stop is not None else StopFlag()
        self.members = [Member(c) for c in cfgs]
        spec = self.members[0].env.spec
        self.spec = spec
        self.agent: Agent = build_agent(cfg, spec)
        roots = [jax.random.PRNGKey(c.seed) for c in cfgs]
        k_init = [jax.random.fold_in(r, 0) for r in roots]
        self.k_update = jnp.stack([jax.random.fold_in(r, 1) for r in roots])
        self.k_sample = jnp.stack([jax.random.fold_in(r, 2) for r in roots])
        self.state: Any = _stack([self.agent.init(k) for k in k_init])
        for m in self.members:
            m.act_noise = NoiseStream(self.agent.noise_shape(), m.seed, ACT_STREAM)
        self.buffers = self.make_buffers(len(cfgs))
        self.low = np.asarray(spec.act_low, np.float32)
        self.high = np.asarray(spec.act_high, np.float32)
        names = self._metric_names()
        for m in self.members:
            m.last_metrics = dict.fromkeys(names, float("nan"))
        self.failures: list[dict[str, Any]] = []
        if resume:
            self._restore()
        else:
            for m in self.members:
                m.new_episode()
        self.console_enabled = console and cfg.progress

    def make_buffers(self, seeds: int) -> Any:
        """The group's transition storage: replay buffers."""
        cfg, spec = self.cfg, self.spec
        on_device = cfg.replay == "device" or (
            cfg.replay == "auto" and jax.default_backend() != "cpu"
        )
        return ReplayBuffers(seeds, cfg.buffer_size, spec.obs_dim, spec.act_dim, on_device)

    @property
    def seeds(self) -> list[int]:
        return [m.seed for m in self.members]

    @property
    def off_policy_agent(self) -> OffPolicyAgent:
        assert isinstance(self.agent, OffPolicyAgent)
        return self.agent

    @property
    def env_step(self) -> int:
        return self.members[0].loop.env_step

    def member_state(self, i: int) -> Any:
        """Seed i's training state (unstacked)."""
        return _take(self.state, np.int32(i))

    def _metric_names(self) -> list[str]:
        """Names of the update's metrics, from its output structure (no compilation), so the
        metrics CSV has every column from its first row, written before learning starts."""
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
        one = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), self.state
        )
        agent, episodes = self.off_policy_agent, jax.ShapeDtypeStruct((), f32)
        out = jax.eval_shape(agent._update, one, batch, self.k_update[0], episodes)
        return sorted(out[1])

    # --- checkpoints --------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "algo": self.cfg.algo,
            "env": spec.id,
            "obs_dim": spec.obs_dim,
            "act_dim": spec.act_dim,
        }

    def save(self) -> None:
        """One checkpoint per seed, in its run directory. A group writes them in two phases
        (every seed's next checkpoint, then the renames), so that a kill at any point leaves a
        group that :func:`settle_checkpoints` brings back to one common step."""
        host_state = jax.device_get(self.state)
        staged = len(self.members) > 1
        for i, m in enumerate(self.members):
            lp = m.loop
            loop_meta = {
                "env_step": lp.env_step,
                "episode": lp.episode,
                "updates": lp.updates,
                "epoch_updates": lp.epoch_updates,
                "eval_index": lp.eval_index,
                "ep_return": lp.ep_return,
                "ep_cost": lp.ep_cost,
                "ep_disc_cost": lp.ep_disc_cost,
                "ep_len": lp.ep_len,
                "env_state": m.env.get_state(),
                "last_metrics": m.last_metrics,
            }
            recent = np.asarray(list(lp.recent), np.float64).reshape(-1, 2)
            save_checkpoint(
                m.run_dir / (CHECKPOINT_NEXT if staged else CHECKPOINT_NAME),
                jax.tree_util.tree_map(lambda x, i=i: x[i], host_state),
                self.buffers.member_state(i),
                {
                    "obs": m.obs,
                    "recent": recent,
                    "recent_limit_cost": np.asarray(list(lp.recent_limit_cost), np.float64),
                },
                {**self._meta(), "loop": loop_meta},
            )
        if staged:
            for m in self.members:
                commit_next(m.run_dir)

    def _restore(self) -> None:
        template = self.member_state(0)
        states, buffers = [], []
        for m in self.members:
            ckpt = load_checkpoint(m.checkpoint_path, template, self._meta())
            states.append(ckpt.state)
            buffers.append(ckpt.buffer)
            lm = ckpt.meta["loop"]
            lp = m.loop
            lp.env_step, lp.episode, lp.updates = lm["env_step"], lm["episode"], lm["updates"]
            lp.epoch_updates = lm["epoch_updates"]
            lp.eval_index = lm["eval_index"]
            lp.ep_return, lp.ep_cost = lm["ep_return"], lm["ep_cost"]
            lp.ep_disc_cost, lp.ep_len = lm["ep_disc_cost"], lm["ep_len"]
            lp.recent.extend((float(r), float(c)) for r, c in ckpt.loop["recent"])
            # (absent from checkpoints of runs that predate violation=episodes)
            lp.recent_limit_cost.extend(float(c) for c in ckpt.loop.get("recent_limit_cost", ()))
            m.last_metrics = lm["last_metrics"]
            m.obs = ckpt.loop["obs"]
            if lm["env_state"] is not None:
                m.env.reset(episode_seed(m.seed, TRAIN_STREAM, lp.episode))
                m.env.set_state(lm["env_state"])
            else:
                # The simulator cannot be snapshotted: drop the unfinished episode, start the
                # next.
                lp.episode += 1
                m.new_episode()
        steps = {m.loop.env_step for m in self.members}
        if len(steps) != 1:
            raise AlgdError(
                "the seeds of this group stopped at different steps "
                f"({', '.join(f's{m.seed}: {m.loop.env_step}' for m in self.members)}); "
                "resume them separately"
            )
        self.state = _stack(states)
        try:
            self.buffers.load(buffers)
        except (KeyError, ValueError) as exc:
            where = self.members[0].checkpoint_path if len(buffers) == 1 else "group"
            raise AlgdError(f"checkpoint {where}: bad replay buffer ({exc})") from None

    def truncate_logs(self) -> None:
        """Drop log rows written after the checkpoint this run continues from (a resumed run
        then writes each row exactly once)."""
        for m in self.members:
            for name in LOG_FILES:
                truncate_after(m.run_dir / name, m.loop.env_step)

    # --- the loop -----------------------------------------------------------------------------
    def _actions(self, t: int) -> np.ndarray:
        """Every seed's action of environment step t, (S, act_dim)."""
        cfg = self.cfg
        if t < cfg.warmup_steps and cfg.warmup_actions == "uniform":
            return np.stack(
                [
                    np.random.default_rng([m.seed, WARMUP_STREAM, t])
                    .uniform(self.low, self.high)
                    .astype(np.float32)
                    for m in self.members
                ]
            )
        obs = np.stack([m.obs for m in self.members]).astype(np.float32)
        noise = np.stack([m.act_noise(t) for m in self.members])  # type: ignore[misc]
        return np.asarray(_group_act(self.agent, self.state.actor, obs, noise))

    def _nonfinite(self, m: Member, metrics: dict[str, float], t: int, steps: int) -> str | None:
        """Why seed m's update at step t cannot be kept: a non-finite loss or gradient norm,
        naming the earliest in the update's order (critic losses first, where a corrupted
        target shows up); None if all are finite."""
        watched = [k for k in metrics if k.startswith(("loss/", "grad_norm/"))]
        order = {"loss/q": 0, "loss/qc": 1}
        watched.sort(key=lambda k: (not k.startswith("loss/"), order.get(k, 2), k))
        bad = [k for k in watched if not math.isfinite(metrics[k])]
        if not bad:
            return None
        kept = (
            f"the last good checkpoint is {m.checkpoint_path}"
            if m.checkpoint_path.exists()
            else "no checkpoint was written yet"
        )
        others = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        return (
            f"non-finite {bad[0]} ({metrics[bad[0]]}){others} in the update at environment step "
            f"{t} (gradient steps {m.loop.updates + 1}-{m.loop.updates + steps}); {kept}"
        )

    def _drop(self, failed: dict[int, str]) -> None:
        """Take diverged seeds out of the group: a seed alone stops the run with the reason; in
        a larger group the others go on. The diverged seed's run directory keeps its last good
        checkpoint, no summary, and failure.json with the reason."""
        for i, reason in sorted(failed.items()):
            m = self.members[i]
            record = {**failure_record(m.cfg, reason, user_error=False), "env_steps": self.env_step}
            atomic_write_bytes(
                m.run_dir / FAILURE_NAME, (json.dumps(record, indent=2) + "\n").encode()
            )
        if len(failed) == len(self.members) == 1:
            raise NumericalError(next(iter(failed.values())))
        keep = [i for i in range(len(self.members)) if i not in failed]
        for i, reason in sorted(failed.items()):
            m = self.members[i]
            self.console.message(f"seed {m.seed} stopped: {reason}")
            self.failures.append(failure_record(m.cfg, reason, user_error=False))
            m.close()
        if not keep:
            raise NumericalError(next(iter(failed.values())))
        idx = np.asarray(keep)
        self.members = [self.members[i] for i in keep]
        self.state = jax.tree_util.tree_map(lambda x: x[idx], self.state)
        self.k_update, self.k_sample = self.k_update[idx], self.k_sample[idx]
        self.buffers.keep(keep)

    def collect(self, t: int) -> list[Transition]:
        """Environment step t of every seed: act, step, account the episode (a finished one is
        logged and the next begins); one transition per seed."""
        cfg = self.cfg
        actions = self._actions(t)
        rows = []
        for m, action in zip(self.members, actions):
            lp = m.loop
            next_obs, reward, cost, terminated, truncated, info = m.env.step(action)
            reward_done, cost_done = episode_end(m.env, cfg.bootstrap, terminated, truncated, info)
            discount = cfg.agent.gamma_c**lp.ep_len
            rows.append(
                Transition(
                    m.obs,
                    action,
                    reward,
                    cost,
                    next_obs,
                    reward_done,
                    cost_done,
                    terminated or truncated,
                    discount,
                )
            )
            lp.ep_return += reward
            lp.ep_cost += cost
            lp.ep_disc_cost += discount * cost
            lp.ep_len += 1
            m.obs = next_obs
            lp.env_step = t + 1
            if terminated or truncated:
                if m.logs is not None:
                    m.logs.episodes.write(
                        {
                            "step": lp.env_step,
                            "episode": lp.episode,
                            "return": lp.ep_return,
                            "cost": lp.ep_cost,
                            "discounted_cost": lp.ep_disc_cost,
                            "length": lp.ep_len,
                        }
                    )
                lp.recent.append((lp.ep_return, lp.ep_cost))
                discounted = self.spec.cost_limit_kind == "discounted"
                lp.recent_limit_cost.append(lp.ep_disc_cost if discounted else lp.ep_cost)
                lp.episode += 1
                m.new_episode()
        return rows

    def step(self) -> None:
        """One environment step of every seed, then (when due) their UTD gradient steps."""
        cfg = self.cfg
        t = self.env_step
        rows = self.collect(t)
        self.buffers.add(Batch(*(np.stack(column) for column in list(zip(*rows))[:7])))
        if not self._may_update(t):
            self.throughput.add(1, 0)
            return
        self.state, metrics = self.update(self.state, t)
        self.keep_metrics(metrics, t, cfg.utd)
        self.throughput.add(1, cfg.utd)

    def keep_metrics(self, metrics: dict[str, jax.Array], t: int, steps: int) -> None:
        """Record each seed's update metrics and its ``steps`` gradient steps; seeds whose
        update turned non-finite leave the group (:meth:`_drop`)."""
        host = jax.device_get(metrics)
        failed = {}
        for i, m in enumerate(self.members):
            values = {k: float(v[i]) for k, v in host.items()}
            reason = self._nonfinite(m, values, t, steps)
            if reason is not None:
                failed[i] = reason
                continue
            m.last_metrics = values
            m.loop.updates += steps
            m.loop.epoch_updates += steps
        if failed:
            self._drop(failed)

    def update(self, state: TrainState, t: int) -> tuple[TrainState, dict[str, jax.Array]]:
        """Every seed's UTD gradient steps of environment step t from ``state`` (donated), as
        one compiled call; the minibatches are sampled inside it (device buffers) or on the
        host with each seed's generator for step t."""
        cfg, buffers = self.cfg, self.buffers
        rows = (cfg.utd, cfg.batch_size)
        episodes = self.episodes_violation()
        if buffers.on_device:
            return _update_from_replay(
                self.off_policy_agent,
                rows,
                state,
                buffers.columns,
                np.int32(buffers.size),
                self.k_update,
                self.k_sample,
                np.int32(t),
                episodes,
            )
        rngs = [np.random.default_rng([m.seed, SAMPLE_STREAM, t]) for m in self.members]
        batches = buffers.sample_host(rngs, rows, cfg.replacement)
        return _update_from_batches(
            self.off_policy_agent, state, batches, self.k_update, np.int32(t), episodes
        )

    def episodes_violation(self) -> np.ndarray | None:
        """violation=episodes: each seed's mean cost of its last ``violation_episodes`` training
        episodes minus the limit the agent trains for (the env's less cost_margin; 0 before an
        episode has ended); None otherwise."""
        a = self.cfg.agent
        if a.violation != "episodes":
            return None
        out, limit = [], self.off_policy_agent.limit
        for m in self.members:
            last = list(m.loop.recent_limit_cost)[-a.violation_episodes :]
            out.append(float(np.mean(last)) - limit if last else 0.0)
        return np.asarray(out, np.float32)

    def _may_update(self, t: int) -> bool:
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

    def _log_rows(self) -> None:
        sps, ups = self.throughput.rates()
        means = []
        for i, m in enumerate(self.members):
            lp, logs = m.loop, m.logs
            assert logs is not None
            rets = [r for r, _ in lp.recent]
            costs = [c for _, c in lp.recent]
            row = {
                "step": lp.env_step,
                "episodes": lp.episode,
                "updates": lp.updates,
                "train/return": float(np.mean(rets)) if rets else float("nan"),
                "train/cost": float(np.mean(costs)) if costs else float("nan"),
                "lambda": float(self.state.mult.lam[i]),
            }
            row.update({k: v for k, v in sorted(m.last_metrics.items()) if k != "lambda"})
            logs.metrics.write(row)
            logs.timing.write(
                {
                    "step": lp.env_step,
                    "wall_s": time.time() - logs.t0,
                    "env_steps_per_s": sps,
                    "updates_per_s": ups,
                }
            )
            logs.scalars(
                lp.env_step, {**row, "perf/env_steps_per_s": sps, "perf/updates_per_s": ups}
            )
            means.append((row["train/return"], row["train/cost"], row["lambda"]))
        ret, cost, lam = (float(np.mean(v)) for v in zip(*means))
        self.console.update(self.env_step, ret, cost, lam, sps)

    def _evaluate(self) -> dict[int, dict[str, float] | None]:
        cfg = self.cfg
        results: dict[int, dict[str, float] | None] = {}
        for i, m in enumerate(self.members):
            lp, logs = m.loop, m.logs
            assert logs is not None
            result = evaluate(
                self.agent,
                self.member_state(i),
                m.eval_env,
                cfg.eval_episodes,
                m.seed,
                lp.eval_index,
                cfg.agent.gamma_c,
            )
            lp.eval_index += 1
            logs.eval.write({"step": lp.env_step, **result})
            logs.scalars(lp.env_step, {f"eval/{k}": v for k, v in result.items()})
            who = f"seed {m.seed} " if len(self.members) > 1 else ""
            self.console.message(
                f"{who}eval @ {lp.env_step}: return {result['return_mean']:.2f} +- "
                f"{result['return_std']:.2f}, cost {result['cost_mean']:.2f} "
                f"(limit {self.spec.cost_limit:g})"
            )
            results[m.seed] = result
        return results

    def open_logs(self) -> None:
        """Open every seed's log files (appending) and the group's console and throughput."""
        cfg = self.cfg
        self.console = Console(cfg.total_steps, self.env_step, self.console_enabled)
        self.throughput = Throughput()
        for m in self.members:
            m.logs = RunLogs(m.run_dir, m.cfg)

    def close_logs(self) -> None:
        for m in self.members:
            if m.logs is not None:
                m.logs.close()
                m.logs = None
        self.console.close()

    def run(self) -> list[dict[str, Any]]:
        """Train every seed to ``total_steps``; one record per seed (its summary, or why it
        stopped), in the group's order."""
        cfg = self.cfg
        order = self.seeds
        # Resumed after its final checkpoint (killed before summary.json): the final evaluation
        # is already in eval.csv and is not repeated.
        done = self.env_step >= cfg.total_steps
        last_eval: dict[int, dict[str, float] | None] = {
            m.seed: _logged_eval(m.run_dir, self.env_step) if done else None for m in self.members
        }
        eval_step = self.env_step if done and all(v is not None for v in last_eval.values()) else -1
        self.open_logs()
        t0 = time.time()
        try:
            with stop_signals(self.stop):
                while self.env_step < cfg.total_steps and self.stop.signum is None:
                    self.step()
                    step = self.env_step
                    if step % cfg.log_every == 0:
                        self._log_rows()
                    if cfg.eval_every and step % cfg.eval_every == 0:
                        last_eval, eval_step = dict(self._evaluate()), step
                    if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                        self.save()
                finished = self.env_step >= cfg.total_steps
                if finished and eval_step != self.env_step:
                    last_eval = dict(self._evaluate())
                self.save()
        finally:
            self.close_logs()
        records = {f["seed"]: f for f in self.failures}
        for m in self.members:
            summary = {
                "run_dir": str(m.run_dir),
                "algo": cfg.algo,
                "env": cfg.env,
                "seed": m.seed,
                "env_steps": m.loop.env_step,
                "updates": m.loop.updates,
                "finished": finished,
                "cost_limit": self.spec.cost_limit,
                "cost_limit_kind": self.spec.cost_limit_kind,
                "wall_s": time.time() - t0,
                "final_eval": last_eval.get(m.seed),
                "stopped_by_signal": None if finished else self.stop.signum,
            }
            if finished:
                atomic_write_bytes(
                    m.run_dir / SUMMARY_NAME, (json.dumps(summary, indent=2) + "\n").encode()
                )
            records[m.seed] = summary
            m.close()
        return [records[s] for s in order]


def _logged_eval(run_dir: Path, step: int) -> dict[str, float] | None:
    """The evaluation eval.csv of ``run_dir`` holds for ``step`` (None if there is none)."""
    path = run_dir / "eval.csv"
    if not path.exists():
        return None
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("step") and int(float(row["step"])) == step:
                return {k: float(v) for k, v in row.items() if k != "step"}
    return None


# The S seeds' UTD gradient steps of environment step t in one compiled call, vmapped over the
# seeds: seed i updates with fold_in(k_update[i], t), from minibatches given (host buffers) or
# sampled from its own buffer with fold_in(k_sample[i], t) (device buffers). The state is donated
# (updated in place); the buffers are only read.
def _seed_update(
    agent: OffPolicyAgent,
    state: TrainState,
    batches: Batch,
    k_update: jax.Array,
    t: jax.Array,
    episodes: jax.Array | None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    return agent._update(state, batches, jax.random.fold_in(k_update, t), episodes)


@partial(jax.jit, static_argnums=0, donate_argnums=1)
def _update_from_batches(
    agent: OffPolicyAgent,
    state: TrainState,
    batches: Batch,
    k_update: jax.Array,
    t: jax.Array,
    episodes: jax.Array | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    return jax.vmap(lambda s, b, k, e: _seed_update(agent, s, b, k, t, e))(
        state, batches, k_update, episodes
    )


@partial(jax.jit, static_argnums=(0, 1), donate_argnums=2)
def _update_from_replay(
    agent: OffPolicyAgent,
    rows: tuple[int, int],
    state: TrainState,
    columns: Batch,
    size: jax.Array,
    k_update: jax.Array,
    k_sample: jax.Array,
    t: jax.Array,
    episodes: jax.Array | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    def one(s: TrainState, c: Batch, ku: jax.Array, ks: jax.Array, e: Any) -> Any:
        batches = sample(c, size, jax.random.fold_in(ks, t), rows, agent.cfg.replacement)
        return _seed_update(agent, s, batches, ku, t, e)

    return jax.vmap(one)(state, columns, k_update, k_sample, episodes)


@partial(jax.jit, static_argnums=0)
def _group_act(agent: Agent, actor: Any, obs: jax.Array, noise: jax.Array) -> jax.Array:
    """Every seed's stochastic action for its observation, (S, act_dim)."""

    def one(p: Any, o: jax.Array, n: jax.Array) -> jax.Array:
        return agent.policy_from_noise(p, o[None], n[None], False)[0]

    return jax.vmap(one)(actor, obs, noise)


class RunLogs:
    """The files one seed's run writes as it goes: four CSV logs, TensorBoard, and (with
    ``--wandb``) Weights & Biases."""

    def __init__(self, run_dir: Path, cfg: TrainConfig | None = None) -> None:
        self.episodes = CsvLog(run_dir / "episodes.csv")
        self.eval = CsvLog(run_dir / "eval.csv")
        self.metrics = CsvLog(run_dir / "metrics.csv")
        self.timing = CsvLog(run_dir / "timing.csv")
        self.tb = TensorBoard(run_dir / "tb")
        self.wandb: Wandb | None = None
        if cfg is not None and cfg.wandb:
            self.wandb = Wandb(
                run_dir, to_dict(cfg), cfg.wandb_project, cfg.wandb_group, cfg.wandb_mode
            )
        self.t0 = time.time()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Scalars to TensorBoard (and W&B)."""
        self.tb.scalars(step, values)
        if self.wandb is not None:
            self.wandb.scalars(step, values)

    def close(self) -> None:
        for sink in (self.episodes, self.eval, self.metrics, self.timing, self.tb):
            sink.close()
        if self.wandb is not None:
            self.wandb.close()


def make_trainer(
    cfgs: TrainConfig | Sequence[TrainConfig],
    resume: bool = False,
    console: bool = True,
    stop: StopFlag | None = None,
) -> Trainer:
    """The loop the algorithm runs in: :class:`Trainer` (off-policy) or
    :class:`algd.onpolicy.OnPolicyTrainer`."""
    first = cfgs if isinstance(cfgs, TrainConfig) else cfgs[0]
    if is_on_policy(first.algo):
        from algd.onpolicy import OnPolicyTrainer

        return OnPolicyTrainer(cfgs, resume=resume, console=console, stop=stop)
    return Trainer(cfgs, resume=resume, console=console, stop=stop)


def probe_env(cfg: TrainConfig) -> EnvSpec:
    """Make the env, reset it and take one step: unknown ids, missing cost signals and
    non-finite values surface as EnvError before a run directory exists."""
    env = env_for(cfg)
    try:
        env.reset(episode_seed(cfg.seed, TRAIN_STREAM, 0))
        low, high = np.asarray(env.spec.act_low), np.asarray(env.spec.act_high)
        env.step((low + high) / 2)
        return env.spec
    finally:
        env.close()


def physical_memory_bytes() -> int:
    """This machine's memory, or the control group's limit where that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def memory_estimate(cfg: TrainConfig, spec: EnvSpec, seeds: int = 1) -> dict[str, int]:
    """A lower bound of the bytes a group of ``seeds`` runs holds: the training states
    (networks, targets, optimiser moments; shapes only, nothing is allocated), the replay
    buffers, and one batch's activations in the widest critic layer, each times ``seeds``."""
    agent = build_agent(cfg, spec)
    shapes = jax.eval_shape(agent.init, jax.random.PRNGKey(0))
    state = sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(shapes))
    if is_on_policy(cfg.algo):
        buffer = rollout_nbytes(rollout_capacity(cfg, spec), spec.obs_dim, spec.act_dim)
    else:
        buffer = nbytes_for(cfg.buffer_size, spec.obs_dim, spec.act_dim)
    members = 2 + cfg.agent.cost_ensemble
    activations = cfg.batch_size * max(cfg.agent.critic_hidden) * members * 4
    return {"state": seeds * state, "buffer": seeds * buffer, "activations": seeds * activations}


def check_memory(cfg: TrainConfig, spec: EnvSpec, seeds: int = 1) -> None:
    parts = memory_estimate(cfg, spec, seeds)
    need, have = sum(parts.values()), physical_memory_bytes()
    if need > have:
        gib = 2.0**30
        who = f"a group of {seeds} seeds of this config" if seeds > 1 else "this config"
        raise AlgdError(
            f"{who} needs at least {need / gib:.1f} GiB of memory (training state "
            f"{parts['state'] / gib:.1f} GiB, replay buffer {parts['buffer'] / gib:.1f} GiB) but "
            f"this machine has {have / gib:.1f} GiB; reduce the network widths, the ensemble or "
            "--buffer-size" + (" or the number of seeds" if seeds > 1 else "")
        )


def _check_new(cfgs: list[TrainConfig]) -> None:
    """Everything that can be checked before a run directory exists: the paths, the env (one
    reset and step), the memory of the whole group."""
    for c in cfgs:
        check_claimable(c)
    spec = probe_env(cfgs[0])
    check_memory(cfgs[0], spec, seeds=len(cfgs))


def train(cfg: TrainConfig, console: bool = True, stop: StopFlag | None = None) -> dict[str, Any]:
    """Start a new run from ``cfg``; returns the summary (final evaluation, run directory...).

    Everything that can be checked is checked before the run directory exists (config, env,
    runtime, memory); SIGINT/SIGTERM from the start on end the run with a checkpoint."""
    with stop_signals(stop) as flag:
        if cfg.run_dir is None:  # one timestamped name for the checks and the creation
            cfg = replace(cfg, run_dir=str(default_run_dir(cfg)))
        _check_new([cfg])
        if flag.signum is not None:
            raise Stopped(flag.signum)
        with create(cfg) as run:
            cfg = replace(cfg, run_dir=str(run.path), overwrite=False)
            return make_trainer(cfg, resume=False, console=console, stop=flag).run()[0]


def train_seeds(
    cfg: TrainConfig, seeds: list[int], console: bool = True, stop: StopFlag | None = None
) -> list[dict[str, Any]]:
    """Start a new group: seeds ``seeds`` of ``cfg`` trained together in this process, in group
    directory ``cfg.run_dir`` (default: a new name under runs/), seed s in its subdirectory
    ``s<s>``. Returns one record per seed (its summary, or why it stopped)."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise AlgdError("--seeds needs distinct seeds")
    with stop_signals(stop) as flag:
        group = Path(cfg.run_dir) if cfg.run_dir else default_group_dir(cfg, seeds)
        check_group_path(group)
        if is_group_dir(group) and not cfg.overwrite:
            raise RunDirError(
                f"group directory {group} already exists (pass --overwrite to replace it, or "
                f"--resume {group} to continue it)"
            )
        if cfg.wandb and cfg.wandb_group is None:  # the group's seeds as one W&B group
            cfg = replace(cfg, wandb_group=group.resolve().name)
        cfgs = [replace(cfg, seed=s, run_dir=str(member_dir(group, s))) for s in seeds]
        _check_new(cfgs)
        if flag.signum is not None:
            raise Stopped(flag.signum)
        made_group = not group.exists()
        with contextlib.ExitStack() as stack:
            made: list[Path] = []
            try:
                for c in cfgs:
                    fresh = not Path(str(c.run_dir)).exists()
                    stack.enter_context(create(c))
                    if fresh:
                        made.append(Path(str(c.run_dir)))
                write_group(group, seeds)
            except BaseException:
                for path in made:
                    shutil.rmtree(path, ignore_errors=True)
                if made_group:
                    shutil.rmtree(group, ignore_errors=True)
                raise
            cfgs = [replace(c, overwrite=False) for c in cfgs]
            return make_trainer(cfgs, resume=False, console=console, stop=flag).run()


def _finished_error(path: Path, done: int) -> RunDirError:
    return RunDirError(
        f"run {path} is finished ({done} steps); pass --total-steps above {done} to train it "
        "further"
    )


def _finished_steps(path: Path) -> int | None:
    """The steps of a run whose summary says it finished; None otherwise."""
    summary = path / SUMMARY_NAME
    if not summary.exists():
        return None
    record = json.loads(summary.read_text())
    return int(record["env_steps"]) if record.get("finished") else None


def _continue(
    cfgs: list[TrainConfig], runs: list[RunDir], step: int | None, console: bool, flag: StopFlag
) -> list[dict[str, Any]]:
    """Train the seeds ``cfgs`` (one part of :func:`run_members`) from step 0 (``step`` None)
    or from their checkpoints at ``step``."""
    if step is None:
        return make_trainer(cfgs, resume=False, console=console, stop=flag).run()
    trainer = make_trainer(cfgs, resume=True, console=console, stop=flag)
    for run, c in zip(runs, cfgs):
        path = Path(str(c.run_dir))
        run.remove_staging_files()
        if c != load_run_config(path):
            write_config(run, c)
        (path / SUMMARY_NAME).unlink(missing_ok=True)
        (path / FAILURE_NAME).unlink(missing_ok=True)  # retried
    trainer.truncate_logs()
    return trainer.run()


def _failure_of(cfg: TrainConfig, reason: str) -> dict[str, Any]:
    """A diverged seed's record: its failure.json, or the group's reason."""
    path = Path(str(cfg.run_dir)) / FAILURE_NAME
    if path.exists():
        return {k: v for k, v in json.loads(path.read_text()).items() if k != "env_steps"}
    return failure_record(cfg, reason, user_error=False)


def _skipped(path: Path) -> dict[str, Any]:
    return {"status": "skipped", **json.loads((path / SUMMARY_NAME).read_text())}


def run_members(
    paths: list[Path],
    total_steps: int | None = None,
    console: bool = True,
    stop: StopFlag | None = None,
    alone: bool = False,
) -> list[dict[str, Any]]:
    """Continue the run directories ``paths`` (seeds of one configuration) together: finished
    ones are skipped, ones stopped before their first checkpoint start again from step 0 with
    their saved config, the others continue from their checkpoints; seeds at the same step
    train as one group. One record per path, in order (``status``: skipped, resumed or
    trained; stopped for one a signal stopped before its budget). With ``alone`` (one run,
    ``algd train --resume``), a finished run is an error."""
    with stop_signals(stop) as flag, contextlib.ExitStack() as stack:
        runs = [stack.enter_context(open_existing(p)) for p in paths]
        settle_checkpoints(list(paths))
        records: dict[int, dict[str, Any]] = {}
        pending: dict[int | None, list[tuple[int, TrainConfig]]] = {}
        for i, (path, run) in enumerate(zip(paths, runs)):
            saved = load_run_config(path)
            cfg = saved if total_steps is None else replace(saved, total_steps=total_steps)
            if not run.has_checkpoint and (done := _finished_steps(path)) is not None:
                # Finished, its checkpoint gone (committed results keep only the small files).
                if cfg.total_steps > done:
                    raise RunDirError(
                        f"run {path} is finished ({done} steps) and has no checkpoint to "
                        "continue from"
                    )
                if alone:
                    raise _finished_error(path, done)
                records[i] = _skipped(path)
                continue
            if not run.has_checkpoint:
                run.clear(keep=(CONFIG_NAME,))
                if cfg != saved:
                    write_config(run, cfg)
                pending.setdefault(None, []).append((i, cfg))
                continue
            done = checkpoint_step(path / CHECKPOINT_NAME)
            finished = (path / SUMMARY_NAME).exists()
            if total_steps is not None and total_steps < done:
                raise RunDirError(
                    f"--total-steps {total_steps} is below the {done} steps run {path} has done"
                )
            if finished and cfg.total_steps <= done:
                if alone:
                    raise _finished_error(path, done)
                records[i] = _skipped(path)
                continue
            pending.setdefault(done, []).append((i, cfg))
        if not pending and total_steps is not None:
            raise _finished_error(paths[0], checkpoint_step(paths[0] / CHECKPOINT_NAME))
        for step, members in pending.items():
            # load_run_config names where each run directory is now (it may have moved).
            cfgs = [c for _, c in members]
            status = "trained" if step is None else "resumed"
            try:
                out = _continue(cfgs, [runs[i] for i, _ in members], step, console, flag)
            except NumericalError as exc:
                if alone:
                    raise
                # Every seed of this part diverged (each has its failure.json); the others,
                # finished or at other steps, are not affected.
                out = [_failure_of(c, str(exc)) for c in cfgs]
            for (i, _), record in zip(members, out):
                stopped = record.get("stopped_by_signal") is not None
                records[i] = {"status": record.get("status", "stopped" if stopped else status)}
                records[i].update(record)
            if flag.signum is not None:
                break
        return [records[i] for i in sorted(records)]


def resume(
    run_dir: str | Path,
    total_steps: int | None = None,
    console: bool = True,
    stop: StopFlag | None = None,
) -> dict[str, Any] | list[dict[str, Any]]:
    """Continue a stopped run, or every seed of a stopped group, from the last complete
    checkpoint (optionally to a new budget). Returns the run's summary, or for a group one
    record per seed.

    A run stopped before its first checkpoint starts again from step 0 with its saved config. A
    finished run continues only to a larger ``total_steps``; no log row is ever written twice."""
    path = Path(run_dir)
    if is_group_dir(path):
        return run_members(read_group(path), total_steps, console, stop)
    (record,) = run_members([path], total_steps, console, stop, alone=True)
    record.pop("status", None)
    return record
