"""``algd`` command line: the only place that reads argv.

Every subcommand is a typed dataclass (:mod:`algd.commands`); tyro generates its flags and ``--help`` from the
fields and their docstrings (``algd train``'s from :class:`algd.config.TrainConfig`, with
``--agent.*`` from :class:`algd.config.AgentConfig`). User mistakes end with exit code 2 and
one line on stderr, before anything is written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from algd.commands import (
    COMMANDS,
    Bench,
    BenchMemory,
    BenchSpeed,
    Eval,
    Export,
    Landscape,
    List,
    Plot,
    Report,
)
from algd.config import parse_sets
from algd.errors import AlgdError, Stopped
from algd.parsing import UsageError, parse, parse_train, pre_parse, resume_args
from algd.stop import StopFlag, stop_signals

EXIT_USER_ERROR = 2


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: algd COMMAND [OPTIONS]  (algd COMMAND --help for its options)",
        "",
        "Safe RL with diffusion policies guided by the augmented Lagrangian (ALGD).",
        "",
    ]
    for name, cls in COMMANDS.items():
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        lines.append(f"  {name.ljust(width)}  {summary}")
    return "\n".join(lines)


def _cmd_train(args: list[str], flag: StopFlag) -> int:
    from algd.config import parse_seeds
    from algd.training import resume, train, train_seeds

    known = pre_parse(args)
    group: str | None = None
    if known.resume is not None and "--help" not in args and "-h" not in args:
        total = resume_args(args, known)
        result = resume(known.resume, total, console=not known.quiet, stop=flag)
        if isinstance(result, list):
            group = known.resume
    else:
        notes: list[str] = []  # said once the run's checks pass (a mistake is one line)
        ns = parse_train(args, known, notes)
        if ns.seeds is None:
            result = train(ns.run, console=not ns.quiet, stop=flag, notes=notes)
        else:
            if "--seed" in args or any(a.startswith("--seed=") for a in args):
                raise UsageError("algd train: give --seed or --seeds, not both")
            seeds = parse_seeds(ns.seeds)
            result = train_seeds(ns.run, seeds, console=not ns.quiet, stop=flag, notes=notes)
            group = str(Path(result[0]["run_dir"]).parent)
    records = result if isinstance(result, list) else [result]
    for record in records:
        _print_summary(record, group)
    stopped = [r["stopped_by_signal"] for r in records if r.get("stopped_by_signal") is not None]
    if stopped:
        return 128 + int(stopped[0])
    return 1 if any(r.get("status") == "failed" for r in records) else 0


def duration_text(seconds: float) -> str:
    """``seconds`` as a person reads a run's length: 48 s, 6 min 12 s, 2 h 05 min."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _timed(summary: dict[str, Any]) -> str:
    """The run's wall clock in this process, and from which step when it was resumed."""
    start = summary.get("timed_from_step", 0)
    since = f" since step {start}" if start else ""
    return f"{duration_text(summary['wall_s'])}{since}"


def _print_summary(summary: dict[str, Any], group: str | None = None) -> None:
    run_dir = summary["run_dir"]
    who = f"seed {summary['seed']}: " if group is not None else ""
    if summary.get("status") == "failed":
        print(f"{who}stopped: {summary['error']}", file=sys.stderr)
        return
    if summary.get("status") == "skipped":
        print(f"{who}already finished ({run_dir})")
        return
    ev = summary["final_eval"]
    if not summary["finished"]:
        print(
            f"{who}stopped at step {summary['env_steps']}; checkpoint saved. "
            f"Continue with: algd train --resume {group or run_dir}"
        )
        return
    from algd.logs import cost_name

    kind = cost_name(summary["cost_limit_kind"])
    side = "under" if ev["cost_vs_limit"] <= summary["cost_limit"] else "OVER"
    print(
        f"{who}final evaluation ({summary['algo']} on {summary['env']}, {summary['env_steps']} "
        f"steps, {_timed(summary)}): return {ev['return_mean']:.2f} +- "
        f"{ev['return_std']:.2f}, {kind} {ev['cost_vs_limit']:.2f} ({side} the limit "
        f"{summary['cost_limit']:g})"
    )
    if group is None:
        print(
            f"logs: {run_dir}/ (metrics.csv, episodes.csv, eval.csv, timing.csv, tb/, "
            f"checkpoint.npz, summary.json); TensorBoard: tensorboard --logdir {run_dir}/tb"
        )
    else:
        print(f"{who}logs: {run_dir}/")


def _cmd_eval(ns: Eval) -> int:
    from algd.api import evaluate_run

    if ns.episodes is not None and ns.episodes < 1:
        raise UsageError("algd eval: --episodes must be >= 1")
    if ns.seed is not None and not 0 <= ns.seed < 2**31:
        raise UsageError(f"algd eval: --seed must be in [0, 2^31) (got {ns.seed})")
    if ns.video is None:
        result = evaluate_run(ns.run_dir, ns.episodes, ns.seed, ns.stochastic, ns.evaluation)
        print(json.dumps(result))
        return 0
    from algd.rundir import load_run_config
    from algd.video import record

    episodes = ns.episodes or load_run_config(Path(ns.run_dir)).eval_episodes
    result = record(
        ns.run_dir, ns.video, episodes, ns.seed, ns.overwrite, ns.stochastic, ns.evaluation
    )
    print(json.dumps(result))
    print(f"video: {', '.join(result['video'])}", file=sys.stderr)
    return 0


def _cmd_export(ns: Export) -> int:
    from algd.policy import export_policy

    result = export_policy(ns.run_dir, ns.out, ns.overwrite)
    print(json.dumps(result))
    print(f"policy: {result['out']} ({result['bytes'] / 1024:.1f} KiB)", file=sys.stderr)
    return 0


def _cmd_list(ns: List) -> int:
    from algd.agents import REGISTRY

    if ns.what in ("all", "algos"):
        if ns.what == "all":
            print("# algorithms")
        for name in REGISTRY:
            print(name)
    if ns.what in ("all", "envs"):
        from algd.envs import list_env_ids

        if ns.what == "all":
            print("# environments (also: any Gymnasium id whose info reports 'cost')")
        for env_id in list_env_ids():
            print(env_id)
    return 0


def _cmd_speed(ns: BenchSpeed) -> int:
    from algd.bench.speed import bench_speed

    try:
        sizes = [int(v) for v in ns.seeds.split(",") if v.strip()]
    except ValueError:
        raise UsageError(
            f"algd bench-speed: --seeds takes group sizes such as 1,2,4 (got '{ns.seeds}')"
        ) from None
    if not sizes or min(sizes) < 1:
        raise UsageError("algd bench-speed: --seeds takes group sizes >= 1 (such as 1,2,4)")
    agent_sets = parse_sets(list(ns.set))
    bad = next((k for k in agent_sets if not k.startswith("agent.")), None)
    if bad is not None:
        raise UsageError(
            f"algd bench-speed: --set takes agent fields (agent.KEY=VALUE), got '{bad}'; "
            "--utd and --batch-size are flags"
        )
    if ns.seconds <= 0:
        raise UsageError("algd bench-speed: --seconds must be > 0")
    for size in sizes:
        result = bench_speed(
            ns.algo, ns.env, ns.utd, ns.batch_size, ns.seconds, ns.seed, size, sets=agent_sets
        )
        print(json.dumps(result), flush=True)
    return 0


def _cmd_memory(ns: BenchMemory) -> int:
    from algd.bench.memory import bench_memory, buffer_size_that_fits

    if ns.steps < 1000 or ns.interval <= 0 or ns.seeds < 1:
        raise UsageError(
            "algd bench-memory: --steps must be >= 1000, --interval > 0 and --seeds >= 1"
        )
    if ns.memory_gib is not None and ns.memory_gib <= 0:
        raise UsageError("algd bench-memory: --memory-gib must be > 0")
    result = bench_memory(ns.algo, ns.env, ns.steps, ns.interval, ns.seed, ns.seeds)
    if ns.memory_gib is not None:
        result["memory_gib"] = ns.memory_gib
        result["buffer_size_that_fits"] = buffer_size_that_fits(result, ns.memory_gib)
    print(json.dumps(result))
    return 0


def _cmd_landscape(ns: Landscape) -> int:
    from algd.bench.landscape import landscape

    if not ns.run_dirs:
        raise UsageError("algd landscape: give at least one RUN_DIR")
    if ns.lam is not None and ns.lam < 0:
        raise UsageError(f"algd landscape: --lam is a multiplier, >= 0 (got {ns.lam})")
    out = ns.out if ns.out is not None else str(Path(ns.run_dirs[0]) / "landscape")
    result = landscape(list(ns.run_dirs), out, ns.grid, ns.samples, ns.seed, ns.lam, ns.overwrite)
    print(json.dumps(result))
    print(
        f"figure: {out}/landscape.png (and .svg); diagnostics: {out}/landscape.json",
        file=sys.stderr,
    )
    return 0


def _cmd_plot(ns: Plot) -> int:
    from algd.bench.plot import plot

    if not ns.run_dirs:
        raise UsageError("algd plot: give at least one RUN_DIR")
    out = ns.out if ns.out is not None else str(Path(ns.run_dirs[0]) / "plots")
    result = plot(list(ns.run_dirs), out, ns.overwrite)
    print(json.dumps(result))
    print(f"figure: {out}/plot.png (and .svg)", file=sys.stderr)
    return 0


def _cmd_bench(ns: Bench) -> int:
    from algd.bench.grid import expand, print_progress, run_grid, spec_from_args

    spec = spec_from_args(ns.preset, ns.spec, ns.algos, ns.envs, ns.seeds, list(ns.set), ns.base)
    if ns.workers is not None and ns.workers < 1:
        raise UsageError("algd bench: --workers must be >= 1")
    if ns.dry_run:
        for cfg, _ in expand(spec, Path(ns.out)):
            print(cfg.run_dir)
        return 0
    if ns.group_size is not None and ns.group_size < 1:
        raise UsageError("algd bench: --group-size must be >= 1")
    # A signal stops the grid: nothing new starts, running groups checkpoint and stop.
    with stop_signals() as flag:
        records = run_grid(
            spec,
            ns.out,
            ns.backend,
            ns.workers,
            ns.ray_address,
            print_progress,
            ns.group_size,
            flag,
        )
    counts: dict[str, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print(json.dumps({"out": ns.out, "runs": len(records), **counts}))
    failures = [r for r in records if r["status"] == "failed"]
    if failures:
        first = failures[0]
        what_next = (
            "fix the cause, then run the same command again"
            if all(r["user_error"] for r in failures)
            else "re-run the same command to retry them"
        )
        raise AlgdError(
            f"{len(failures)} of {len(records)} runs failed ({what_next}; finished runs are "
            f"skipped); first: {first['env']} {first['algo']} seed {first['seed']}: "
            f"{first['error']}"
        )
    stopped = [r for r in records if r["status"] in ("stopped", "not started")]
    if stopped or flag.signum is not None:
        print(
            f"{len(stopped)} of {len(records)} runs stopped or not started; the same command "
            "resumes them",
            file=sys.stderr,
        )
        return 128 + int(flag.signum or stopped[0]["stopped_by_signal"])
    print(f"tables and plots: algd report {ns.out}", file=sys.stderr)
    return 0


def _cmd_report(ns: Report) -> int:
    from algd.bench.report import report

    result = report(ns.results_dir, ns.out, ns.overwrite)
    print(result["markdown"].rstrip("\n"))
    out = ns.out or str(Path(ns.results_dir) / "report")
    print(f"report: {out}/ ({', '.join(result['files'])})", file=sys.stderr)
    return 0


HANDLERS: dict[str, Any] = {
    "eval": _cmd_eval,
    "export": _cmd_export,
    "list": _cmd_list,
    "bench-speed": _cmd_speed,
    "bench-memory": _cmd_memory,
    "landscape": _cmd_landscape,
    "plot": _cmd_plot,
    "bench": _cmd_bench,
    "report": _cmd_report,
}


def _run(argv: list[str]) -> int:
    from algd.xla import enable_compilation_cache

    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        if argv:
            return 0
        raise UsageError(f"give a command: {', '.join(COMMANDS)} (algd COMMAND --help)")
    command, args = argv[0], argv[1:]
    if command not in COMMANDS:
        raise UsageError(f"unknown command '{command}' (choose from: {', '.join(COMMANDS)})")
    if command == "train":
        # Before JAX is imported: a signal from here on stops the run cleanly.
        with stop_signals() as flag:
            enable_compilation_cache()
            return _cmd_train(args, flag)
    ns: Any = parse(COMMANDS[command], command, args)
    if command != "list":
        enable_compilation_cache()
    return int(HANDLERS[command](ns))


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(sys.argv[1:] if argv is None else list(argv))
    except AlgdError as exc:
        print(f"algd: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Stopped as exc:
        print(f"algd: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except BrokenPipeError:  # output piped into a reader that stopped early (| head)
        sys.stderr.close()
        return 0
    except OSError as exc:  # a file system problem no writer anticipated: still one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"algd: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("algd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
