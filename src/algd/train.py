"""The one off-policy training loop every algorithm runs through.

Per environment step: act (warm-up actions first), store the transition with its two
end-of-episode flags (:func:`episode_end`), then run the UTD gradient steps as one compiled call. Every
``log_every`` steps a metrics row, every ``eval_every`` a deterministic evaluation, every
``checkpoint_every`` a checkpoint. All randomness derives from the run seed and the step or
episode index, so a run resumed from a checkpoint continues exactly as if it had never stopped
(on tasks whose mid-episode state can be restored; elsewhere the unfinished episode is dropped).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jax
import numpy as np

from algd.agents import build_agent
from algd.agents.base import OffPolicyAgent
from algd.buffer import Batch, ReplayBuffer
from algd.checkpoint import (
    CHECKPOINT_NAME,
    atomic_write_bytes,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from algd.config import TrainConfig
from algd.envs import EnvSpec, SafeEnv, env_for
from algd.errors import AlgdError, NumericalError, RunDirError, Stopped
from algd.evaluate import episode_seed, evaluate
from algd.logs import Console, CsvLog, TensorBoard, Throughput, truncate_after
from algd.noise import NoiseStream
from algd.rundir import (
    CONFIG_NAME,
    LOG_FILES,
    SUMMARY_NAME,
    check_claimable,
    create,
    default_run_dir,
    load_run_config,
    open_existing,
    write_config,
)
from algd.stop import StopFlag, stop_signals

TRAIN_STREAM, SAMPLE_STREAM, WARMUP_STREAM, ACT_STREAM = 3, 1, 2, 5

# The update key of environment step t, fold_in(k_update, t): compiled, one dispatch per step.
_step_key = jax.jit(jax.random.fold_in)
RECENT = 10  # training return/cost in metrics rows: mean over the last RECENT episodes


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


def episode_end(
    env: SafeEnv, bootstrap: str, terminated: bool, truncated: bool, info: dict[str, Any]
) -> tuple[bool, bool]:
    """(reward_done, cost_done) of a transition. ``terminated``: both are the env's terminated
    flag, so a time-limit truncation bootstraps (recommended). ``reference``: the authors'
    samplers (:meth:`SafeEnv.reference_episode_end`)."""
    if bootstrap == "terminated":
        return terminated, terminated
    return env.reference_episode_end(terminated, truncated, info)


class Trainer:
    """Owns one run: its envs, agent, buffer, logs. ``run()`` trains to ``total_steps``."""

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        resume: bool,
        console: bool = True,
        stop: StopFlag | None = None,
    ):
        self.cfg, self.run_dir = cfg, run_dir
        self.stop = stop if stop is not None else StopFlag()
        self.env = env_for(cfg)
        self.eval_env = env_for(cfg)
        spec = self.env.spec
        self.agent: OffPolicyAgent = build_agent(cfg, spec)
        root = jax.random.PRNGKey(cfg.seed)
        self.k_init, self.k_update = (jax.random.fold_in(root, i) for i in range(2))
        self.state = self.agent.init(self.k_init)
        self.act_noise = NoiseStream(self.agent.noise_shape(), cfg.seed, ACT_STREAM)
        self.buffer = ReplayBuffer(cfg.buffer_size, spec.obs_dim, spec.act_dim)
        self.loop = Loop()
        self.obs = np.zeros(spec.obs_dim, np.float32)
        self.low = np.asarray(spec.act_low)
        self.high = np.asarray(spec.act_high)
        self.last_metrics: dict[str, float] = dict.fromkeys(self._metric_names(), float("nan"))
        if resume:
            self._restore()
        else:
            self._new_episode()
        self.console_enabled = console and cfg.progress

    def _metric_names(self) -> list[str]:
        """Names of the update's metrics, from its output structure (no compilation), so the
        metrics CSV has every column from its first row, written before learning starts."""
        cfg, spec = self.cfg, self.env.spec
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
        out = jax.eval_shape(self.agent.update, self.state, batch, self.k_update)
        return sorted(out[1])

    # --- checkpoints --------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME

    def _meta(self) -> dict[str, Any]:
        spec = self.env.spec
        return {
            "algo": self.cfg.algo,
            "env": spec.id,
            "obs_dim": spec.obs_dim,
            "act_dim": spec.act_dim,
        }

    def save(self) -> None:
        lp = self.loop
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
            "env_state": self.env.get_state(),
            "last_metrics": self.last_metrics,
        }
        recent = np.asarray(list(lp.recent), np.float64).reshape(-1, 2)
        save_checkpoint(
            self.checkpoint_path,
            self.state,
            self.buffer,
            {"obs": self.obs, "recent": recent},
            {**self._meta(), "loop": loop_meta},
        )

    def _restore(self) -> None:
        ckpt = load_checkpoint(self.checkpoint_path, self.state, self._meta())
        self.state, meta = ckpt.state, ckpt.meta
        try:
            self.buffer.load_state_dict(ckpt.buffer)
        except (KeyError, ValueError) as exc:
            raise AlgdError(
                f"checkpoint {self.checkpoint_path}: bad replay buffer ({exc})"
            ) from None
        lm = meta["loop"]
        lp = self.loop
        lp.env_step, lp.episode, lp.updates = lm["env_step"], lm["episode"], lm["updates"]
        lp.epoch_updates = lm["epoch_updates"]
        lp.eval_index = lm["eval_index"]
        lp.ep_return, lp.ep_cost = lm["ep_return"], lm["ep_cost"]
        lp.ep_disc_cost, lp.ep_len = lm["ep_disc_cost"], lm["ep_len"]
        lp.recent.extend((float(r), float(c)) for r, c in ckpt.loop["recent"])
        self.last_metrics = lm["last_metrics"]
        self.obs = ckpt.loop["obs"]
        if lm["env_state"] is not None:
            self.env.reset(episode_seed(self.cfg.seed, TRAIN_STREAM, lp.episode))
            self.env.set_state(lm["env_state"])
        else:
            # The simulator cannot be snapshotted: drop the unfinished episode, start the next.
            lp.episode += 1
            self._new_episode()

    def truncate_logs(self) -> None:
        """Drop log rows written after the checkpoint this run continues from (a resumed run
        then writes each row exactly once)."""
        for name in LOG_FILES:
            truncate_after(self.run_dir / name, self.loop.env_step)

    def _logged_eval(self, step: int) -> dict[str, float] | None:
        """The evaluation eval.csv holds for ``step`` (None if there is none)."""
        path = self.run_dir / "eval.csv"
        if not path.exists():
            return None
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("step") and int(float(row["step"])) == step:
                    return {k: float(v) for k, v in row.items() if k != "step"}
        return None

    # --- the loop -----------------------------------------------------------------------------
    def _new_episode(self) -> None:
        lp = self.loop
        lp.ep_return = lp.ep_cost = lp.ep_disc_cost = 0.0
        lp.ep_len = 0
        self.obs, _ = self.env.reset(episode_seed(self.cfg.seed, TRAIN_STREAM, lp.episode))

    def _action(self, t: int) -> np.ndarray:
        cfg = self.cfg
        if t < cfg.warmup_steps and cfg.warmup_actions == "uniform":
            rng = np.random.default_rng([cfg.seed, WARMUP_STREAM, t])
            return rng.uniform(self.low, self.high).astype(np.float32)
        return self.agent.act(self.state, self.obs, self.act_noise(t), deterministic=False)

    def _check_finite(self, metrics: dict[str, float], t: int) -> None:
        """Stop on a non-finite loss or gradient norm, naming the earliest in the update's
        order (critic losses first, where a corrupted target shows up)."""
        watched = [k for k in metrics if k.startswith(("loss/", "grad_norm/"))]
        order = {"loss/q": 0, "loss/qc": 1}
        watched.sort(key=lambda k: (not k.startswith("loss/"), order.get(k, 2), k))
        bad = [k for k in watched if not math.isfinite(metrics[k])]
        if not bad:
            return
        kept = (
            f"the last good checkpoint is {self.checkpoint_path}"
            if self.checkpoint_path.exists()
            else "no checkpoint was written yet"
        )
        others = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise NumericalError(
            f"non-finite {bad[0]} ({metrics[bad[0]]}){others} in the update at environment step "
            f"{t} (gradient steps {self.loop.updates + 1}-{self.loop.updates + self.cfg.utd}); "
            f"{kept}"
        )

    def step(self, logs: RunLogs) -> None:
        cfg, lp = self.cfg, self.loop
        t = lp.env_step
        action = self._action(t)
        next_obs, reward, cost, terminated, truncated, info = self.env.step(action)
        reward_done, cost_done = episode_end(self.env, cfg.bootstrap, terminated, truncated, info)
        self.buffer.add(self.obs, action, reward, cost, next_obs, reward_done, cost_done)
        lp.ep_return += reward
        lp.ep_cost += cost
        lp.ep_disc_cost += cfg.agent.gamma_c**lp.ep_len * cost
        lp.ep_len += 1
        self.obs = next_obs
        lp.env_step = t + 1
        if terminated or truncated:
            logs.episodes.write(
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
            lp.episode += 1
            self._new_episode()
        if self._may_update(t):
            rng = np.random.default_rng([cfg.seed, SAMPLE_STREAM, t])
            batches = self.buffer.sample(rng, (cfg.utd, cfg.batch_size))
            key = _step_key(self.k_update, t)
            self.state, metrics = self.agent.update(self.state, batches, key)
            host = {k: float(v) for k, v in jax.device_get(metrics).items()}
            self._check_finite(host, t)
            self.last_metrics = host
            lp.updates += cfg.utd
            lp.epoch_updates += cfg.utd
            logs.throughput.add(1, cfg.utd)
        else:
            logs.throughput.add(1, 0)

    def _may_update(self, t: int) -> bool:
        """Whether environment step t (0-based) runs its UTD gradient steps: after the warm-up,
        with enough transitions, and within ``update_cap``: the reference runs an epoch's
        (episode length's) updates only while they number at most update_cap x the environment
        steps since the warm-up, which halves the first epoch's updates at UTD 10."""
        cfg, lp = self.cfg, self.loop
        if t < cfg.warmup_steps or self.buffer.size < cfg.learning_starts:
            return False
        if cfg.update_cap is None:
            return True
        since = t - cfg.warmup_steps
        if since % self.env.spec.max_episode_steps == 0:
            lp.epoch_updates = 0
        return lp.epoch_updates <= cfg.update_cap * since

    def _log_row(self, logs: RunLogs) -> None:
        lp = self.loop
        rets = [r for r, _ in lp.recent]
        costs = [c for _, c in lp.recent]
        row = {
            "step": lp.env_step,
            "episodes": lp.episode,
            "updates": lp.updates,
            "train/return": float(np.mean(rets)) if rets else float("nan"),
            "train/cost": float(np.mean(costs)) if costs else float("nan"),
            "lambda": float(self.state.mult.lam),
        }
        row.update({k: v for k, v in sorted(self.last_metrics.items()) if k != "lambda"})
        logs.metrics.write(row)
        sps, ups = logs.throughput.rates()
        logs.timing.write(
            {
                "step": lp.env_step,
                "wall_s": time.time() - logs.t0,
                "env_steps_per_s": sps,
                "updates_per_s": ups,
            }
        )
        logs.tb.scalars(
            lp.env_step, {**row, "perf/env_steps_per_s": sps, "perf/updates_per_s": ups}
        )
        logs.console.update(lp.env_step, row["train/return"], row["train/cost"], row["lambda"], sps)

    def _evaluate(self, logs: RunLogs) -> dict[str, float]:
        cfg, lp = self.cfg, self.loop
        result = evaluate(
            self.agent,
            self.state,
            self.eval_env,
            cfg.eval_episodes,
            cfg.seed,
            lp.eval_index,
            cfg.agent.gamma_c,
        )
        lp.eval_index += 1
        logs.eval.write({"step": lp.env_step, **result})
        logs.tb.scalars(lp.env_step, {f"eval/{k}": v for k, v in result.items()})
        logs.console.message(
            f"eval @ {lp.env_step}: return {result['return_mean']:.2f} +- {result['return_std']:.2f}, "
            f"cost {result['cost_mean']:.2f} (limit {self.env.spec.cost_limit:g})"
        )
        return result

    def run(self) -> dict[str, Any]:
        cfg, lp = self.cfg, self.loop
        logs = RunLogs(self.run_dir, cfg.total_steps, lp.env_step, self.console_enabled)
        # Resumed after its final checkpoint (killed before summary.json): the final evaluation
        # is already in eval.csv and is not repeated.
        last_eval = self._logged_eval(lp.env_step) if lp.env_step >= cfg.total_steps else None
        eval_step = lp.env_step if last_eval is not None else -1
        try:
            with stop_signals(self.stop):
                while lp.env_step < cfg.total_steps and self.stop.signum is None:
                    self.step(logs)
                    step = lp.env_step
                    if step % cfg.log_every == 0:
                        self._log_row(logs)
                    if cfg.eval_every and step % cfg.eval_every == 0:
                        last_eval, eval_step = self._evaluate(logs), step
                    if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                        self.save()
                finished = lp.env_step >= cfg.total_steps
                if finished and eval_step != lp.env_step:
                    last_eval = self._evaluate(logs)
                self.save()
        finally:
            logs.close()
        summary = {
            "run_dir": str(self.run_dir),
            "algo": cfg.algo,
            "env": cfg.env,
            "seed": cfg.seed,
            "env_steps": lp.env_step,
            "updates": lp.updates,
            "finished": finished,
            "cost_limit": self.env.spec.cost_limit,
            "cost_limit_kind": self.env.spec.cost_limit_kind,
            "wall_s": time.time() - logs.t0,
            "final_eval": last_eval,
            "stopped_by_signal": None if finished else self.stop.signum,
        }
        if finished:
            atomic_write_bytes(
                self.run_dir / SUMMARY_NAME, (json.dumps(summary, indent=2) + "\n").encode()
            )
        self.env.close()
        self.eval_env.close()
        return summary


class RunLogs:
    """The sinks of one run: four CSV files, TensorBoard and the console."""

    def __init__(self, run_dir: Path, total: int, start: int, console: bool) -> None:
        self.episodes = CsvLog(run_dir / "episodes.csv")
        self.eval = CsvLog(run_dir / "eval.csv")
        self.metrics = CsvLog(run_dir / "metrics.csv")
        self.timing = CsvLog(run_dir / "timing.csv")
        self.tb = TensorBoard(run_dir / "tb")
        self.console = Console(total, start, console)
        self.throughput = Throughput()
        self.t0 = time.time()

    def close(self) -> None:
        for sink in (self.episodes, self.eval, self.metrics, self.timing, self.tb, self.console):
            sink.close()


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


def memory_estimate(cfg: TrainConfig, spec: EnvSpec) -> dict[str, int]:
    """A lower bound of the bytes a run holds: the training state (networks, targets,
    optimiser moments; shapes only, nothing is allocated), the replay buffer, and one batch's
    activations in the widest critic layer."""
    agent = build_agent(cfg, spec)
    shapes = jax.eval_shape(agent.init, jax.random.PRNGKey(0))
    state = sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(shapes))
    buffer = ReplayBuffer.nbytes_for(cfg.buffer_size, spec.obs_dim, spec.act_dim)
    members = 2 + cfg.agent.cost_ensemble
    activations = cfg.batch_size * max(cfg.agent.critic_hidden) * members * 4
    return {"state": state, "buffer": buffer, "activations": activations}


def check_memory(cfg: TrainConfig, spec: EnvSpec) -> None:
    parts = memory_estimate(cfg, spec)
    need, have = sum(parts.values()), physical_memory_bytes()
    if need > have:
        gib = 2.0**30
        raise AlgdError(
            f"this config needs at least {need / gib:.1f} GiB of memory (training state "
            f"{parts['state'] / gib:.1f} GiB, replay buffer {parts['buffer'] / gib:.1f} GiB) but "
            f"this machine has {have / gib:.1f} GiB; reduce the network widths, the ensemble or "
            "--buffer-size"
        )


def train(cfg: TrainConfig, console: bool = True, stop: StopFlag | None = None) -> dict[str, Any]:
    """Start a new run from ``cfg``; returns the summary (final evaluation, run directory...).

    Everything that can be checked is checked before the run directory exists (config, env,
    runtime, memory); SIGINT/SIGTERM from the start on end the run with a checkpoint."""
    with stop_signals(stop) as flag:
        if cfg.run_dir is None:  # one timestamped name for the checks and the creation
            cfg = replace(cfg, run_dir=str(default_run_dir(cfg)))
        check_claimable(cfg)
        spec = probe_env(cfg)
        check_memory(cfg, spec)
        if flag.signum is not None:
            raise Stopped(flag.signum)
        with create(cfg) as run:
            cfg = replace(cfg, run_dir=str(run.path), overwrite=False)
            return Trainer(cfg, run.path, resume=False, console=console, stop=flag).run()


def resume(
    run_dir: str | Path,
    total_steps: int | None = None,
    console: bool = True,
    stop: StopFlag | None = None,
) -> dict[str, Any]:
    """Continue a stopped run from its last complete checkpoint (optionally to a new budget).

    A run stopped before its first checkpoint starts again from step 0 with its saved config. A
    finished run continues only to a larger ``total_steps``; no log row is ever written twice."""
    path = Path(run_dir)
    with stop_signals(stop) as flag, open_existing(path) as run:
        saved = load_run_config(path)
        cfg = saved if total_steps is None else replace(saved, total_steps=total_steps)
        if not run.has_checkpoint:
            run.clear(keep=(CONFIG_NAME,))
            if cfg != saved:
                write_config(run, cfg)
            return Trainer(cfg, path, resume=False, console=console, stop=flag).run()
        meta, _ = read_checkpoint(run.path / CHECKPOINT_NAME, meta_only=True)
        done = int(meta["loop"]["env_step"]) if isinstance(meta.get("loop"), dict) else 0
        finished = (path / SUMMARY_NAME).exists()
        if total_steps is not None and total_steps < done:
            raise RunDirError(
                f"--total-steps {total_steps} is below the {done} steps run {path} has done"
            )
        if finished and cfg.total_steps <= done:
            raise RunDirError(
                f"run {path} is finished ({done} steps); pass --total-steps above {done} to "
                "train it further"
            )
        trainer = Trainer(cfg, path, resume=True, console=console, stop=flag)
        run.remove_staging_files()
        trainer.truncate_logs()
        if cfg != saved:
            write_config(run, cfg)
        if finished:
            (path / SUMMARY_NAME).unlink()
        return trainer.run()
