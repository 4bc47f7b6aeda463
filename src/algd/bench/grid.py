"""``algd bench``: a grid of (algorithm x env x seed x config overrides), run by local worker
processes or on a Ray cluster.

Each grid point gets its own run directory, ``OUT/<env>/<algo>[/<sweep tag>]/s<seed>``. The
points that differ only in seed train together, as one group in one worker process (one
compiled program for all its seeds; ``--group-size`` caps the seeds per group). Running a grid
again skips finished runs (``summary.json``), resumes interrupted ones from their checkpoints
and starts the rest, seed by seed; a run directory holding a different config is an error,
never overwritten.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

from algd.agents import algos
from algd.bench.specfile import spec_fields
from algd.bench.workers import run_local, run_ray
from algd.config import TrainConfig, from_dict, parse_sets, to_dict
from algd.errors import AlgdError, RunDirError
from algd.logs import cost_name
from algd.outputs import check_folder
from algd.presets import PRESETS
from algd.stop import StopFlag
from algd.suggest import did_you_mean

NAVIGATION = (
    "SafetyPointButton1-v0",
    "SafetyCarButton1-v0",
    "SafetyPointButton2-v0",
    "SafetyPointPush1-v0",
    "SafetyCarButton2-v0",
)
NAV_BUDGET = {
    "SafetyPointButton1-v0": 100_000,
    "SafetyCarButton1-v0": 150_000,
    "SafetyPointButton2-v0": 200_000,
    "SafetyPointPush1-v0": 200_000,
    "SafetyCarButton2-v0": 300_000,
}
VELOCITY_BUDGET = {
    "PaperHalfCheetahVelocity-v0": 100_000,
    "PaperHopperVelocity-v0": 150_000,
    "PaperAntVelocity-v0": 200_000,
    "PaperHumanoidVelocity-v0": 500_000,
}
# The algorithms the paper compares, and those with the unconstrained reference (SAC).
PAPER_ALGOS = algos("paper")
ALL_ALGOS = algos("paper", "reference")
WARMUP = 5000
# PPO-Lag learns from its own rollouts from the first step (the reference's on-policy script
# has no warm-up); its runs keep the same total steps as the others.
ON_POLICY = {"ppo_lag": {"warmup_steps": 0}}


@dataclass(frozen=True)
class GridSpec:
    """What to run. ``base`` names a preset (algd.presets) or None for the reference defaults;
    ``overrides`` (dotted keys, e.g. ``agent.rho``) apply to every point, ``per_env`` and
    ``per_algo`` to some, ``per_pair`` (keys ``"ENV:ALGO"``) to one env-algorithm pair, in that
    order (a later layer wins), and ``sweep`` (key -> values) multiplies the grid."""

    algos: tuple[str, ...]
    envs: tuple[str, ...]
    seeds: tuple[int, ...]
    base: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    per_env: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_algo: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_pair: dict[str, dict[str, Any]] = field(default_factory=dict)
    sweep: dict[str, list[Any]] = field(default_factory=dict)


def _paper_env(env: str, limit: float | None, length: int | None) -> dict[str, Any]:
    budget = NAV_BUDGET.get(env) or VELOCITY_BUDGET[env]
    out: dict[str, Any] = {"total_steps": budget + WARMUP, "eval_every": 5000}
    if env in NAV_BUDGET and limit is not None:  # 400-step episodes, limit 10, fixed layouts
        from algd.presets import reference_for_env

        out.update(reference_for_env(env), cost_limit=limit, episode_length=length)
    return out


# The safe suite's tasks: HalfCheetah at the preset's 100k steps, and the navigation task and
# budget that the pilots chose (docs/experiments.md).
SAFE_NAV, SAFE_NAV_STEPS = "SafetyPointGoal1-v0", 100_000
SAFE_ENVS = ("PaperHalfCheetahVelocity-v0", SAFE_NAV)
SAFE_PER_ENV: dict[str, dict[str, Any]] = {SAFE_NAV: {"total_steps": SAFE_NAV_STEPS}}
SAFE_MARGIN = float(PRESETS["safe"]["agent.lagrangian.cost_margin"])

GRID_PRESETS: dict[str, GridSpec] = {
    # The built-in task, every algorithm, two seeds: about 10 minutes on 2 cores before HJ and
    # PPO-Lag joined (not re-timed since).
    "smoke": GridSpec(
        ALL_ALGOS,
        ("ToyRing-v0",),
        (0, 1),
        base="toy",
        per_algo={
            "algd": {"total_steps": 6000},
            "lgd": {"total_steps": 6000},
            "hj": {"total_steps": 6000},
        },
    ),
    # About an hour on 2 cores before HJ and PPO-Lag joined (docs/experiments.md explains the
    # choices): the built-in task with three seeds, and a real Safety-Gymnasium navigation task
    # at reduced settings.
    "cpu": GridSpec(
        ALL_ALGOS,
        ("ToyRing-v0", "SafetyPointGoal1-v0"),
        (0, 1, 2),
        base="toy",
        per_env={
            "SafetyPointGoal1-v0": {
                "total_steps": 20_000,
                "warmup_steps": 2000,
                "learning_starts": 1000,
                "utd": 1,
                "episode_length": 400,
                "cost_limit": 10.0,
                "eval_every": 4000,
                "eval_episodes": 3,
                "log_every": 1000,
                "checkpoint_every": 4000,
                "agent.gamma": 0.99,
                "agent.gamma_c": 0.99,
                "agent.critics.critic_hidden": [128, 128],
                "agent.actor_hidden": [128, 128],
                "agent.lagrangian.lambda_lr": 3e-3,
            }
        },
        per_algo=ON_POLICY,
        per_pair={
            "ToyRing-v0:algd": {"total_steps": 6000},
            "ToyRing-v0:lgd": {"total_steps": 6000},
            "ToyRing-v0:hj": {"total_steps": 6000},
            # 0/1 costs: the reference threshold (1) never binds; RCRL's own threshold, 0.
            "SafetyPointGoal1-v0:hj": {"agent.hj.threshold": 0.0},
            "SafetyPointGoal1-v0:ppo_lag": {"agent.lagrangian.lambda_lr": 0.05},
        },
    ),
    # Evidence on real tasks within a 2-core CPU's day (docs/results.md): every algorithm, three
    # seeds, the `cpu` training preset (the authors' task settings, one update per step,
    # 128-wide networks, 50k steps), on the paper's HalfCheetah velocity task (its limit binds
    # once SAC starts running, near 25k steps in the pilots) and on SafetyPointButton1 (400-step
    # episodes, limit 10). HJ's threshold is the task's per-step limit on HalfCheetah (the speed
    # 1.52 = 151.989 (1 - 0.99)) and RCRL's 0 on 0/1 costs.
    "cpu-real": GridSpec(
        ALL_ALGOS,
        ("PaperHalfCheetahVelocity-v0", "SafetyPointButton1-v0"),
        (0, 1, 2),
        base="cpu",
        per_pair={"PaperHalfCheetahVelocity-v0:hj": {"agent.hj.threshold": 1.51989}},
    ),
    # The safe preset's suite (docs/experiments.md, "The safe preset"): ALGD against the
    # baselines that share its multiplier machinery, and SAC unconstrained, on HalfCheetah and
    # a navigation task, seeds 100-104 (no pilot used them). HJ has no scalar multiplier; on
    # HalfCheetah its threshold is the per-step limit less the same margin.
    "safe": GridSpec(
        ("algd", "lgd", "sac_lag", "sac_auglag_quadratic", "hj", "sac"),
        SAFE_ENVS,
        (100, 101, 102, 103, 104),
        base="safe",
        per_env=SAFE_PER_ENV,
        per_pair={
            "PaperHalfCheetahVelocity-v0:hj": {
                "agent.hj.threshold": round(1.51989 * (1.0 - SAFE_MARGIN), 5)
            }
        },
    ),
    # The safe-bounded preset's suite: the two algorithms it changes (ALGD and LGD), on the same
    # tasks and seeds. Every other algorithm trains under it as under "safe", so the `safe`
    # grid's runs of those are its baselines.
    "safe-bounded": GridSpec(
        ("algd", "lgd"),
        SAFE_ENVS,
        (100, 101, 102, 103, 104),
        base="safe-bounded",
        per_env=SAFE_PER_ENV,
    ),
    # Beside it, the authors' algorithms at the same budget: ALGD, CAL and the paper's
    # SAC-AugLag at the cpu preset (the reference multiplier), seeds 100-102.
    "safe-reference": GridSpec(
        ("algd", "cal", "sac_auglag"),
        SAFE_ENVS,
        (100, 101, 102),
        base="cpu",
        overrides={"total_steps": 100_000},
        per_env=SAFE_PER_ENV,
    ),
    # The paper's protocol (ALGD_METHOD section 7): 400-step navigation episodes with limit 10,
    # velocity tasks with the speed cost and discounted limits, budgets after a 5000-step warm-up,
    # reference hyperparameters.
    "paper": GridSpec(
        PAPER_ALGOS,
        NAVIGATION + tuple(VELOCITY_BUDGET),
        (0, 1, 2),
        per_env={e: _paper_env(e, 10.0, 400) for e in NAVIGATION + tuple(VELOCITY_BUDGET)},
        per_algo=ON_POLICY,
    ),
    # The common Safety-Gymnasium setting: 1000-step episodes, limit 25, the same budgets.
    "safety-gymnasium": GridSpec(
        PAPER_ALGOS,
        NAVIGATION,
        (0, 1, 2),
        per_env={e: _paper_env(e, None, None) for e in NAVIGATION},
        per_algo=ON_POLICY,
    ),
}


def expand(spec: GridSpec, out: Path) -> list[tuple[TrainConfig, Path]]:
    """Every grid point's validated config and run directory: the algorithm's defaults, the
    base preset, then the override layers, in the command line's dotted keys."""
    from algd.presets import make_config

    keys = sorted(spec.sweep)
    points = []
    for env, algo, values, seed in itertools.product(
        spec.envs, spec.algos, itertools.product(*(spec.sweep[k] for k in keys)), spec.seeds
    ):
        overrides: dict[str, Any] = {"algo": algo, "env": env}
        for layer in (
            spec.overrides,
            spec.per_env.get(env, {}),
            spec.per_algo.get(algo, {}),
            spec.per_pair.get(f"{env}:{algo}", {}),
        ):
            overrides.update(layer)
        overrides.update(zip(keys, values))
        tag = ",".join(f"{k}={v}" for k, v in zip(keys, values))
        run_dir = out / env / algo / (tag or ".") / f"s{seed}"
        overrides.update(
            algo=algo,
            env=env,
            seed=seed,
            run_dir=str(run_dir.resolve()),
            progress=False,
            overwrite=False,
        )
        cfg = make_config(overrides, preset=spec.base)
        if cfg.wandb and cfg.wandb_group is None:  # one W&B group per grid
            cfg = replace(cfg, wandb_group=out.resolve().name)
        points.append((cfg, run_dir))
    return points


def run_group(config_jsons: list[str], stop: StopFlag | None = None) -> list[dict[str, Any]]:
    """Skip, resume or start the grid points of one group (seeds of one configuration) in one
    worker process: finished seeds are skipped, the others train together (those at the same
    step as one program) until ``stop`` says to stop. One record per point, in order."""
    from algd.rundir import create, load_run_config
    from algd.training import run_members
    from algd.training.preflight import check_memory, probe_env

    cfgs = [from_dict(json.loads(text)) for text in config_jsons]
    records: dict[int, dict[str, Any]] = {}
    ready: list[int] = []
    probed = False
    for i, cfg in enumerate(cfgs):
        run_dir = Path(str(cfg.run_dir))
        try:
            if (run_dir / "config.json").exists():
                saved = load_run_config(run_dir)
                # `overwrite` is what a command asked for, not part of the run (older algd
                # saved it).
                if to_dict(replace(saved, overwrite=False)) != to_dict(cfg):
                    raise RunDirError(
                        f"{run_dir} holds a different config; choose another output folder"
                    )
            else:
                if not probed:  # the env and the group's memory, before the first run dir
                    check_memory(cfg, probe_env(cfg), seeds=len(cfgs))
                    probed = True
                create(cfg).release()  # claimed with its config; trains below from step 0
        except AlgdError as exc:
            records[i] = _failed(cfg, exc)
            continue
        ready.append(i)
    if ready:
        try:
            out = run_members([Path(str(cfgs[i].run_dir)) for i in ready], console=False, stop=stop)
        except AlgdError as exc:
            out = [_failed(cfgs[i], exc) for i in ready]
        records.update(zip(ready, out))
    return [records[i] for i in range(len(cfgs))]


def _failed(cfg: TrainConfig, exc: BaseException) -> dict[str, Any]:
    """A point that raised: its one-line reason; the grid goes on."""
    cause = getattr(exc, "cause", None) or exc  # Ray wraps the worker's exception
    reason = str(cause).strip().splitlines()[0] if str(cause).strip() else repr(cause)
    if not isinstance(cause, AlgdError):
        reason = f"{type(cause).__name__}: {reason}"
    from algd.training.records import failure_record

    # Grid points' run directories are absolute already (expand).
    return failure_record(cfg, reason, user_error=isinstance(cause, AlgdError))


def groups(points: list[tuple[TrainConfig, Path]], size: int | None) -> list[list[int]]:
    """The grid's points that differ only in seed, in groups of at most ``size`` (all of a
    configuration's seeds when None), in grid order."""
    from algd.training.records import group_settings

    by_config: dict[str, list[int]] = {}
    for i, (cfg, _) in enumerate(points):
        by_config.setdefault(json.dumps(group_settings(cfg), sort_keys=True), []).append(i)
    out: list[list[int]] = []
    for members in by_config.values():
        step = size or len(members)
        out.extend(members[j : j + step] for j in range(0, len(members), step))
    return out


def check_points(spec: GridSpec) -> None:
    """Unknown algorithms and env ids fail here, before any worker starts."""
    from algd.agents import get_algo
    from algd.envs import env_kind

    for algo in spec.algos:
        get_algo(algo)
    for env in spec.envs:
        env_kind(env)


def run_grid(
    spec: GridSpec,
    out: str,
    backend: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    on_result: Callable[[dict[str, Any], int, int], None] | None = None,
    group_size: int | None = None,
    stop: StopFlag | None = None,
) -> list[dict[str, Any]]:
    """Run every point; returns one record per point (status, summary), in grid order. Points
    that differ only in seed train as one group (at most ``group_size`` seeds; default all of
    them), each group in one worker. Once ``stop`` is set, nothing new starts, the running
    groups stop with a checkpoint, and the points not started are reported "not started"."""
    check_points(spec)
    check_folder(Path(out), (), True, "grid")  # not a file, a run or a group
    if backend not in ("local", "ray"):
        raise AlgdError(f"unknown backend '{backend}' (local or ray)")
    points = expand(spec, Path(out))
    if not points:
        raise AlgdError("the grid is empty")
    if group_size is not None and group_size < 1:
        raise AlgdError("--group-size must be >= 1")
    stop = stop if stop is not None else StopFlag()
    batches = groups(points, group_size)
    jobs = [[json.dumps(to_dict(points[i][0])) for i in batch] for batch in batches]
    workers = workers or os.cpu_count() or 1
    results: dict[int, dict[str, Any]] = {}

    def done(b: int, records: list[dict[str, Any]]) -> None:
        for i, record in zip(batches[b], records):
            results[i] = record
            if on_result:
                on_result(record, len(results), len(points))

    def failed(b: int, exc: BaseException) -> None:
        done(b, [_failed(points[i][0], exc) for i in batches[b]])

    if backend == "local":
        not_started = run_local(run_group, jobs, workers, done, failed, stop)
    else:
        not_started = run_ray(run_group, jobs, workers, ray_address, done, failed, stop)
    for b in not_started:
        done(b, [_not_started(points[i][0], stop.signum) for i in batches[b]])
    return [results[i] for i in range(len(points))]


def _not_started(cfg: TrainConfig, signum: int | None) -> dict[str, Any]:
    return {
        "status": "not started",
        "env": cfg.env,
        "algo": cfg.algo,
        "seed": cfg.seed,
        "run_dir": str(cfg.run_dir),
        "finished": False,
        "stopped_by_signal": signum,
    }


def print_progress(record: dict[str, Any], finished: int, total: int) -> None:
    """One line on stderr per finished grid point: what became of it, and where it is."""
    status = record["status"]
    who = f"{record['env']} {record['algo']} seed {record['seed']}"
    if status == "failed":
        what = f"failed   {who}: {record['error']}"
    elif status == "not started":
        what = f"not started {who} (the same command starts it)"
    elif status == "stopped":
        what = (
            f"stopped  {who} at step {record['env_steps']} (checkpoint saved; the same "
            "command resumes it)"
        )
    else:
        ev = record.get("final_eval") or {}
        what = (
            f"{status:8s} {who}: return {ev.get('return_mean', float('nan')):.2f}, "
            f"{cost_name(str(record.get('cost_limit_kind')))} "
            f"{ev.get('cost_vs_limit', float('nan')):.2f}"
        )
    print(f"[{finished}/{total}] {what} -> {record['run_dir']}", file=sys.stderr, flush=True)


def spec_from_args(
    preset_name: str | None,
    spec_file: str | None,
    algos: str | None,
    envs: str | None,
    seeds: str | None,
    sets: list[str],
    base: str | None = None,
) -> GridSpec:
    """A GridSpec from a preset, a JSON spec file, and/or flags (flags win)."""
    if preset_name and preset_name not in GRID_PRESETS:
        raise AlgdError(
            f"unknown grid preset '{preset_name}'{did_you_mean(preset_name, GRID_PRESETS)} "
            f"(choose from: {', '.join(GRID_PRESETS)})"
        )
    spec = GRID_PRESETS[preset_name] if preset_name else GridSpec((), (), ())
    if spec_file:
        try:
            data = json.loads(Path(spec_file).read_text(encoding="utf-8"))
            known = {f.name for f in dataclass_fields(GridSpec)}
            spec = GridSpec(**{**spec.__dict__, **spec_fields(data, known)})
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError) as exc:
            raise AlgdError(f"grid spec {spec_file}: {exc}") from None
    fields: dict[str, Any] = {}
    if base:
        if base not in PRESETS:
            raise AlgdError(
                f"unknown base preset '{base}'{did_you_mean(base, PRESETS)} (choose from: "
                f"{', '.join(PRESETS)})"
            )
        fields["base"] = base
    if algos:
        fields["algos"] = tuple(a for a in algos.split(",") if a)
    if envs:
        fields["envs"] = tuple(e for e in envs.split(",") if e)
    if seeds:
        from algd.config import parse_seeds

        fields["seeds"] = tuple(parse_seeds(seeds))
    overrides = {**spec.overrides, **parse_sets(sets)}
    spec = GridSpec(**{**spec.__dict__, **fields, "overrides": overrides})
    if not (spec.algos and spec.envs and spec.seeds):
        raise AlgdError(
            "a grid needs algorithms, envs and seeds (--preset, --spec or --algos/--envs/--seeds)"
        )
    return spec
