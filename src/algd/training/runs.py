"""Runs and groups: creating them (everything checked first, nothing left behind by a failed
creation), continuing them from their checkpoints, and one record per seed of how each ended."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from algd.agents import is_on_policy
from algd.checkpoint import CHECKPOINT_NAME, checkpoint_step, settle_checkpoints
from algd.config import TrainConfig
from algd.errors import AlgdError, NumericalError, RunDirError, Stopped
from algd.logs import read_rows
from algd.rundir import (
    CONFIG_NAME,
    FAILURE_NAME,
    LOG_FILES,
    SUMMARY_NAME,
    RunDir,
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
from algd.training.loop import GroupLoop
from algd.training.offpolicy import OffPolicyLoop
from algd.training.onpolicy import OnPolicyLoop
from algd.training.preflight import check_new
from algd.training.records import failure_record

# A part of a group waiting to train: (index in the group, config) for each of its seeds.
Pending = dict[int | None, list[tuple[int, TrainConfig]]]


def make_loop(
    cfgs: TrainConfig | Sequence[TrainConfig],
    resume: bool = False,
    console: bool = True,
    stop: StopFlag | None = None,
) -> GroupLoop:
    """The loop the algorithm runs in: :class:`OffPolicyLoop` or :class:`OnPolicyLoop`."""
    first = cfgs if isinstance(cfgs, TrainConfig) else cfgs[0]
    kind = OnPolicyLoop if is_on_policy(first.algo) else OffPolicyLoop
    return kind(cfgs, resume=resume, console=console, stop=stop)


def train(
    cfg: TrainConfig,
    console: bool = True,
    stop: StopFlag | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Start a new run from ``cfg``; returns the summary (final evaluation, run directory...).

    Everything that can be checked is checked before the run directory exists (config, env,
    runtime, memory); ``notes`` go to stderr once the checks pass; SIGINT/SIGTERM from the
    start on end the run with a checkpoint."""
    with stop_signals(stop) as flag:
        if cfg.run_dir is None:  # one timestamped name for the checks and the creation
            cfg = replace(cfg, run_dir=str(default_run_dir(cfg)))
        check_new([cfg])
        _say(notes)
        if flag.signum is not None:
            raise Stopped(flag.signum)
        with create(cfg) as run:
            cfg = replace(cfg, run_dir=str(run.path), overwrite=False)
            return make_loop(cfg, resume=False, console=console, stop=flag).run()[0]


def _say(notes: Sequence[str]) -> None:
    for line in notes:
        print(line, file=sys.stderr)


def train_seeds(
    cfg: TrainConfig,
    seeds: list[int],
    console: bool = True,
    stop: StopFlag | None = None,
    notes: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Start a new group: seeds ``seeds`` of ``cfg`` trained together in this process, in group
    directory ``cfg.run_dir`` (default: a new name under runs/), seed s in its subdirectory
    ``s<s>``. Returns one record per seed (its summary, or why it stopped); ``notes`` as in
    :func:`train`."""
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
        check_new(cfgs)
        _say(notes)
        if flag.signum is not None:
            raise Stopped(flag.signum)
        with contextlib.ExitStack() as stack:
            _create_group(stack, group, cfgs, seeds)
            cfgs = [replace(c, overwrite=False) for c in cfgs]
            return make_loop(cfgs, resume=False, console=console, stop=flag).run()


def _create_group(
    stack: contextlib.ExitStack, group: Path, cfgs: list[TrainConfig], seeds: list[int]
) -> None:
    """Create (claim) every seed's run directory and the group's record, all or nothing: a
    failure removes what this call made and nothing else."""
    made_group = not group.exists()
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
    record = read_summary(summary)
    return int(record["env_steps"]) if record.get("finished") else None


def read_summary(path: Path) -> dict[str, Any]:
    """A run's summary.json, or a RunDirError naming it and its damage."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        if record.get("finished") and "env_steps" not in record:
            raise ValueError("no env_steps")
        int(record.get("env_steps", 0))
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise RunDirError(f"{path} is damaged ({reason}); restore it or remove it") from None
    return record


def check_logs(run_dir: Path) -> None:
    """The run's CSV logs read as CSV and its tb/ is a folder (a resume rewrites them)."""
    for name in LOG_FILES:
        if (run_dir / name).exists():
            read_rows(run_dir / name)
    tb = run_dir / "tb"
    if tb.exists() and not tb.is_dir():
        raise RunDirError(f"{tb} is a file; a run's tb/ is the folder of its TensorBoard logs")


def _continue(
    cfgs: list[TrainConfig], runs: list[RunDir], step: int | None, console: bool, flag: StopFlag
) -> list[dict[str, Any]]:
    """Train the seeds ``cfgs`` (one part of :func:`run_members`) from step 0 (``step`` None)
    or from their checkpoints at ``step``."""
    if step is None:
        return make_loop(cfgs, resume=False, console=console, stop=flag).run()
    loop = make_loop(cfgs, resume=True, console=console, stop=flag)
    for run, c in zip(runs, cfgs):
        path = Path(str(c.run_dir))
        run.remove_staging_files()
        if c != load_run_config(path):
            write_config(run, c)
        (path / SUMMARY_NAME).unlink(missing_ok=True)
        (path / FAILURE_NAME).unlink(missing_ok=True)  # retried
    loop.truncate_logs()
    return loop.run()


def _failure_of(cfg: TrainConfig, reason: str) -> dict[str, Any]:
    """A diverged seed's record: its failure.json, or the group's reason."""
    path = Path(str(cfg.run_dir)) / FAILURE_NAME
    if path.exists():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            saved = saved if isinstance(saved, dict) else {}
        except (OSError, UnicodeDecodeError, ValueError):
            saved = {}  # damaged: the group's reason stands
        if saved:
            kept = {k: v for k, v in saved.items() if k != "env_steps"}
            return {
                **failure_record(cfg, reason, user_error=False),
                **kept,
                "run_dir": str(cfg.run_dir),
            }
    return failure_record(cfg, reason, user_error=False)


def _skipped(path: Path) -> dict[str, Any]:
    return {"status": "skipped", **read_summary(path / SUMMARY_NAME), "run_dir": str(path)}


def _plan(
    paths: list[Path], runs: list[RunDir], total_steps: int | None, alone: bool
) -> tuple[dict[int, dict[str, Any]], Pending]:
    """Sort the runs ``paths``: finished ones are skipped (their records), the others wait to
    train, grouped by the step they continue from (None: from step 0). Every run is checked
    before any of them changes."""
    records: dict[int, dict[str, Any]] = {}
    pending: Pending = {}
    restarts: list[tuple[RunDir, TrainConfig, TrainConfig]] = []  # from step 0
    for i, (path, run) in enumerate(zip(paths, runs)):
        # The steps done: its checkpoint's, or, where the checkpoint is gone, a finished run's.
        has_checkpoint = run.has_checkpoint
        done = checkpoint_step(path / CHECKPOINT_NAME) if has_checkpoint else _finished_steps(path)
        # Before the new budget is checked against the config's other fields.
        if total_steps is not None and total_steps < (done or 0):
            raise RunDirError(
                f"--total-steps {total_steps} is below the {done} steps run {path} has done"
            )
        saved = load_run_config(path)
        cfg = saved if total_steps is None else replace(saved, total_steps=total_steps)
        if done is None:  # stopped before its first checkpoint: it starts again from step 0
            restarts.append((run, cfg, saved))
            pending.setdefault(None, []).append((i, cfg))
            continue
        if not has_checkpoint:
            # Finished, its checkpoint gone (committed results keep only the small files).
            if cfg.total_steps > done:
                raise RunDirError(
                    f"run {path} is finished ({done} steps) and has no checkpoint to continue from"
                )
            if alone:
                raise _finished_error(path, done)
            records[i] = _skipped(path)
            continue
        if (path / SUMMARY_NAME).exists() and cfg.total_steps <= done:
            if alone:
                raise _finished_error(path, done)
            records[i] = _skipped(path)
            continue
        check_logs(path)  # a resume rewrites them
        pending.setdefault(done, []).append((i, cfg))
    if not pending and total_steps is not None:
        raise _finished_error(paths[0], checkpoint_step(paths[0] / CHECKPOINT_NAME))
    for run, cfg, saved in restarts:  # every run is checked: only now does one change
        run.clear(keep=(CONFIG_NAME,))
        if cfg != saved:
            write_config(run, cfg)
    return records, pending


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
        records, pending = _plan(paths, runs, total_steps, alone)
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
