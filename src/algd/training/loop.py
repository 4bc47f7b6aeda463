"""The group loop every algorithm runs through: a group of seeds of one configuration (one seed
is a group of one) and the cadence of its steps.

The host steps the S environments; the device holds the S training states (and, for the
off-policy loop, replay buffers), stacked on a leading seed axis. Each environment step acts
for every seed in one compiled call, steps the envs, and hands the transitions to the loop's
own :meth:`GroupLoop.step` (:class:`algd.training.offpolicy.OffPolicyLoop` stores and updates
every step; :class:`algd.training.onpolicy.OnPolicyLoop` collects rollouts). Every
``log_every`` steps a metrics row, every ``eval_every`` a deterministic evaluation, every
``checkpoint_every`` a checkpoint. Each seed keeps its own key streams, buffer, multiplier,
evaluations and run directory, which holds exactly the files a run of that seed alone writes.
All randomness derives from the run seed and the step or episode index, so a run resumed from
a checkpoint continues exactly as if it had never stopped (on tasks whose mid-episode state can
be restored; elsewhere the unfinished episode is dropped).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from algd.agents import build_agent
from algd.agents.base import Agent
from algd.checkpoint import (
    CHECKPOINT_NAME,
    CHECKPOINT_NEXT,
    atomic_write_bytes,
    commit_next,
    load_checkpoint,
    save_checkpoint,
)
from algd.config import TrainConfig, run_settings
from algd.errors import AlgdError, NumericalError
from algd.evaluate import evaluate
from algd.logs import Console, Throughput, cost_name, truncate_after
from algd.noise import NoiseStream
from algd.rundir import FAILURE_NAME, HERE, LOG_FILES, SUMMARY_NAME
from algd.stop import StopFlag, stop_signals
from algd.training.member import (
    ACT_STREAM,
    EXPLORE_STREAM,
    WARMUP_STREAM,
    Member,
    Transition,
    episode_end,
)
from algd.training.records import failure_record, group_settings, logged_eval
from algd.training.runlogs import RunLogs


def stack_trees(trees: list[Any]) -> Any:
    """Trees with equal structure -> one tree with a leading axis (stacked on the host: no
    compilation per leaf shape)."""
    return jax.tree_util.tree_map(lambda *xs: jnp.asarray(np.stack(xs)), *trees)


@jax.jit
def take_member(tree: Any, i: jax.Array) -> Any:
    """Member i of a stacked tree (one compiled program for any i)."""
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def _members(cfgs: TrainConfig | Sequence[TrainConfig]) -> list[TrainConfig]:
    """The group's configs, checked: at least one, distinct seeds, every other setting shared."""
    cfgs = [cfgs] if isinstance(cfgs, TrainConfig) else list(cfgs)
    if not cfgs:
        raise AlgdError("a training group needs at least one seed")
    shared = group_settings(cfgs[0])
    for c in cfgs[1:]:
        if group_settings(c) != shared:
            raise AlgdError("the seeds of a training group must share every other setting")
    if len({c.seed for c in cfgs}) != len(cfgs):
        raise AlgdError("a training group has the same seed twice")
    return cfgs


class GroupLoop:
    """Trains a group of seeds of one configuration; ``run()`` trains to ``total_steps`` and
    returns one record per seed. A loop supplies its storage (:meth:`make_buffers`), its
    metric names and what it does with each step's transitions (:meth:`step`)."""

    agent: Agent

    def __init__(
        self,
        cfgs: TrainConfig | Sequence[TrainConfig],
        resume: bool = False,
        console: bool = True,
        stop: StopFlag | None = None,
    ):
        cfgs = _members(cfgs)
        self.cfg = cfg = cfgs[0]
        self.stop = stop if stop is not None else StopFlag()
        self.members = [Member(c) for c in cfgs]
        self.spec = spec = self.members[0].env.spec
        self.agent = build_agent(cfg, spec)
        roots = [jax.random.PRNGKey(c.seed) for c in cfgs]
        k_init = [jax.random.fold_in(r, 0) for r in roots]
        self.k_update = jnp.stack([jax.random.fold_in(r, 1) for r in roots])
        self.k_sample = jnp.stack([jax.random.fold_in(r, 2) for r in roots])
        self.state: Any = stack_trees([self.agent.init(k) for k in k_init])
        for m in self.members:
            m.act_noise = NoiseStream(self.agent.noise_shape(), m.seed, ACT_STREAM)
            m.explore_noise = NoiseStream((spec.act_dim,), m.seed, EXPLORE_STREAM)
        self.buffers = self.make_buffers(len(cfgs))
        self.low = np.asarray(spec.act_low, np.float32)
        self.high = np.asarray(spec.act_high, np.float32)
        names = self.metric_names()
        for m in self.members:
            m.last_metrics = dict.fromkeys(names, float("nan"))
        self.failures: list[dict[str, Any]] = []
        if resume:
            self._restore()
        else:
            for m in self.members:
                m.new_episode()
        self.console_enabled = console and cfg.progress

    # --- what a loop supplies -------------------------------------------------------------------
    def make_buffers(self, seeds: int) -> Any:
        """The group's transition storage."""
        raise NotImplementedError

    def metric_names(self) -> list[str]:
        """Names of the update's metrics, from its output structure (no compilation), so the
        metrics CSV has every column from its first row, written before learning starts."""
        raise NotImplementedError

    def step(self) -> None:
        """One environment step of every seed (:meth:`collect`), and what follows it."""
        raise NotImplementedError

    # --- the group ------------------------------------------------------------------------------
    @property
    def seeds(self) -> list[int]:
        return [m.seed for m in self.members]

    @property
    def env_step(self) -> int:
        return self.members[0].loop.env_step

    def member_state(self, i: int) -> Any:
        """Seed i's training state (unstacked)."""
        return take_member(self.state, np.int32(i))

    def one_state_shapes(self) -> Any:
        """One seed's training state as shapes and dtypes."""
        return jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), self.state
        )

    # --- checkpoints ----------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "algo": self.cfg.algo,
            "env": spec.id,
            "obs_dim": spec.obs_dim,
            "act_dim": spec.act_dim,
            "settings": run_settings(self.cfg),
        }

    def save(self) -> None:
        """One checkpoint per seed, in its run directory. A group writes them in two phases
        (every seed's next checkpoint, then the renames), so that a kill at any point leaves a
        group that :func:`algd.checkpoint.settle_checkpoints` brings back to one common step."""
        host_state = jax.device_get(self.state)
        staged = len(self.members) > 1
        for i, m in enumerate(self.members):
            loop_meta, loop_arrays = m.checkpoint_meta()
            save_checkpoint(
                m.run_dir / (CHECKPOINT_NEXT if staged else CHECKPOINT_NAME),
                jax.tree_util.tree_map(lambda x, i=i: x[i], host_state),
                self.buffers.member_state(i),
                loop_arrays,
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
            m.restore(ckpt)
        steps = {m.loop.env_step for m in self.members}
        if len(steps) != 1:
            raise AlgdError(
                "the seeds of this group stopped at different steps "
                f"({', '.join(f's{m.seed}: {m.loop.env_step}' for m in self.members)}); "
                "resume them separately"
            )
        self.state = stack_trees(states)
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

    # --- acting and stepping --------------------------------------------------------------------
    def actions(self, t: int) -> np.ndarray:
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
        actions = np.asarray(self.agent.act_group(self.state.actor, obs, noise))
        if cfg.explore_std == 0:
            return actions
        # Exploration noise on the behaviour action, in units of the box's half-width.
        draws = np.stack([m.explore_noise(t) for m in self.members])  # type: ignore[misc]
        half = (self.high - self.low) / 2
        return np.clip(actions + cfg.explore_std * half * draws, self.low, self.high)

    def collect(self, t: int) -> list[Transition]:
        """Environment step t of every seed: act, step, account the episode (a finished one is
        logged and the next begins); one transition per seed."""
        cfg = self.cfg
        discounted = self.spec.cost_limit_kind == "discounted"
        rows = []
        for m, action in zip(self.members, self.actions(t)):
            lp = m.loop
            next_obs, reward, cost, terminated, truncated, info = m.env.step(action)
            reward_done, cost_done = episode_end(m.env, cfg.bootstrap, terminated, truncated, info)
            discount = cfg.agent.gamma_c**lp.ep_len
            ended = terminated or truncated
            rows.append(
                Transition(
                    m.obs, action, reward, cost, next_obs, reward_done, cost_done, ended, discount
                )
            )
            lp.ep_return += reward
            lp.ep_cost += cost
            lp.ep_disc_cost += discount * cost
            lp.ep_len += 1
            m.obs = next_obs
            lp.env_step = t + 1
            if ended:
                m.episode_done(discounted)
        return rows

    # --- keeping updates ------------------------------------------------------------------------
    def keep_metrics(self, metrics: dict[str, jax.Array], t: int, steps: int) -> None:
        """Record each seed's update metrics and its ``steps`` gradient steps; seeds whose
        update turned non-finite leave the group (:meth:`_drop`)."""
        host = jax.device_get(metrics)
        failed = {}
        for i, m in enumerate(self.members):
            values = {k: float(v[i]) for k, v in host.items()}
            reason = _nonfinite(m, values, t, steps)
            if reason is not None:
                failed[i] = reason
                continue
            m.last_metrics = values
            m.loop.updates += steps
            m.loop.epoch_updates += steps
        if failed:
            self._drop(failed)

    def _drop(self, failed: dict[int, str]) -> None:
        """Take diverged seeds out of the group: a seed alone stops the run with the reason; in
        a larger group the others go on. The diverged seed's run directory keeps its last good
        checkpoint, no summary, and failure.json with the reason."""
        for i, reason in sorted(failed.items()):
            m = self.members[i]
            record = {**failure_record(m.cfg, reason, user_error=False), "env_steps": self.env_step}
            text = json.dumps({**record, "run_dir": HERE}, indent=2) + "\n"
            atomic_write_bytes(m.run_dir / FAILURE_NAME, text.encode())
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

    # --- logs and evaluations -------------------------------------------------------------------
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
            logs.record("metrics", row)
            logs.record(
                "timing",
                {
                    "step": lp.env_step,
                    "wall_s": time.time() - logs.t0,
                    "env_steps_per_s": sps,
                    "updates_per_s": ups,
                },
            )
            # The console reads the cost in the limit's units (discounted on the velocity
            # tasks); metrics.csv keeps the episodes' summed cost.
            # (a checkpoint from before the limit's units were kept has none: on a summed limit
            # the summed costs are the same numbers)
            summed = self.spec.cost_limit_kind != "discounted"
            limit_costs = lp.recent_limit_cost or (costs if summed else [])
            judged = float(np.mean(limit_costs)) if limit_costs else math.nan
            means.append((row["train/return"], judged, row["lambda"]))
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
            if cfg.agent.lagrangian.eval_gap:
                m.note_eval_gap(result["cost_vs_limit"], cfg.agent.lagrangian.violation_episodes)
            logs.record("eval", {"step": lp.env_step, **result})
            who = f"seed {m.seed} " if len(self.members) > 1 else ""
            self.console.message(
                f"{who}eval @ {lp.env_step}: return {result['return_mean']:.2f} +- "
                f"{result['return_std']:.2f}, {cost_name(self.spec.cost_limit_kind)} "
                f"{result['cost_vs_limit']:.2f} "
                f"(limit {self.spec.cost_limit:g})"
            )
            results[m.seed] = result
        return results

    def open_logs(self) -> None:
        """Open every seed's log files (appending) and the group's console and throughput."""
        cfg = self.cfg
        self.console = Console(
            cfg.total_steps,
            self.env_step,
            self.console_enabled,
            "disc. cost" if self.spec.cost_limit_kind == "discounted" else "cost",
        )
        self.throughput = Throughput()
        for m in self.members:
            m.logs = RunLogs(m.run_dir, m.cfg)

    def close_logs(self) -> None:
        for m in self.members:
            if m.logs is not None:
                m.logs.close()
                m.logs = None
        self.console.close()

    # --- the cadence ----------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        """Train every seed to ``total_steps``; one record per seed (its summary, or why it
        stopped), in the group's order."""
        cfg = self.cfg
        order = self.seeds
        # Resumed after its final checkpoint (killed before summary.json): the final evaluation
        # is already in eval.csv and is not repeated.
        done = self.env_step >= cfg.total_steps
        last_eval: dict[int, dict[str, float] | None] = {
            m.seed: logged_eval(m.run_dir, self.env_step) if done else None for m in self.members
        }
        eval_step = self.env_step if done and all(v is not None for v in last_eval.values()) else -1
        self.open_logs()
        t0, timed_from = time.time(), self.env_step
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
        records = self._summaries(finished, last_eval, time.time() - t0, timed_from)
        return [records[s] for s in order]

    def _summaries(
        self,
        finished: bool,
        last_eval: dict[int, dict[str, float] | None],
        wall_s: float,
        timed_from: int,
    ) -> dict[int, dict[str, Any]]:
        """Each seed's record by seed (its summary, written to summary.json if it finished, or
        its failure), closing the members; ``wall_s`` was timed from step ``timed_from``."""
        cfg = self.cfg
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
                "wall_s": wall_s,
                "final_eval": last_eval.get(m.seed),
                "stopped_by_signal": None if finished else self.stop.signum,
            }
            if finished:
                text = json.dumps({**summary, "run_dir": HERE}, indent=2) + "\n"
                atomic_write_bytes(m.run_dir / SUMMARY_NAME, text.encode())
            # (not in summary.json) where this process's wall clock began: 0 unless resumed
            records[m.seed] = {**summary, "timed_from_step": timed_from}
            m.close()
        return records


def _nonfinite(m: Member, metrics: dict[str, float], t: int, steps: int) -> str | None:
    """Why seed m's update at step t cannot be kept: a non-finite loss or gradient norm, naming
    the earliest in the update's order (critic losses first, where a corrupted target shows
    up); None if all are finite."""
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
