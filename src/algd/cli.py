"""``algd`` command line: the only place that reads argv.

Flags of ``algd train`` are generated from :class:`algd.config.TrainConfig` (and ``--agent.*``
from :class:`algd.config.AgentConfig`); their help text is the field docstrings. User mistakes end
with exit code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any, Literal, NoReturn

from algd.config import AgentConfig, TrainConfig
from algd.errors import AlgdError, Stopped
from algd.stop import StopFlag, stop_signals

EXIT_USER_ERROR = 2


class UsageError(AlgdError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def field_docs(cls: type) -> dict[str, str]:
    """Docstrings written under dataclass fields (``x: int = 1`` then ``\"\"\"doc\"\"\"``)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for prev, node in zip(body, body[1:]):
        if (
            isinstance(prev, ast.AnnAssign)
            and isinstance(prev.target, ast.Name)
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            docs[prev.target.id] = " ".join(node.value.value.split())
    return docs


def _converter(tp: Any) -> tuple[Any, dict[str, Any]]:
    """argparse ``type`` and extra kwargs for a field type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if (
        origin in (typing.Union, getattr(__import__("types"), "UnionType", None))
        and type(None) in args
    ):
        inner = next(a for a in args if a is not type(None))
        conv, extra = _converter(inner)
        if "choices" in extra:
            extra["choices"] = [*extra["choices"], None]

        def optional(text: str) -> Any:
            return None if text.lower() == "none" else conv(text)

        optional.__name__ = getattr(conv, "__name__", "value")
        return optional, {**extra, "metavar": extra.get("metavar", "VALUE|none")}
    if origin is Literal:
        return str, {"choices": list(args)}
    if origin is tuple:
        return args[0], {"nargs": "+"}
    return tp, {}


def add_config_args(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            continue
        tp = hints[f.name]
        default = getattr(defaults, f.name)
        names = [f"--{prefix}{f.name.replace('_', '-')}"]
        if "_" in f.name:
            names.append(f"--{prefix}{f.name}")
        help_text = f"{docs.get(f.name, '')} (default: {default})".replace("%", "%%")
        dest = f"{prefix}{f.name}"
        if tp is bool:
            parser.add_argument(
                *names,
                dest=dest,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
            continue
        conv, extra = _converter(tp)
        parser.add_argument(
            *names, dest=dest, type=conv, default=argparse.SUPPRESS, help=help_text, **extra
        )


def config_from_args(ns: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """Apply the flags given on the command line to ``base`` (defaults when None)."""
    given = vars(ns)
    top = {k: v for k, v in given.items() if k in {f.name for f in dataclasses.fields(TrainConfig)}}
    agent_fields = {f.name for f in dataclasses.fields(AgentConfig)}
    agent = {k[6:]: v for k, v in given.items() if k.startswith("agent.") and k[6:] in agent_fields}
    for key, value in list(top.items()) + list(agent.items()):
        if isinstance(value, list):
            (agent if key in agent else top)[key] = tuple(value)
    base = base or TrainConfig()
    return dataclasses.replace(base, agent=dataclasses.replace(base.agent, **agent), **top)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="algd",
        description="Safe RL with diffusion policies guided by the augmented Lagrangian (ALGD).",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p_train = sub.add_parser("train", help="train an agent (or --resume a stopped run)")
    p_train.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="continue the run in RUN_DIR from its last checkpoint (only --total-steps may change)",
    )
    p_train.add_argument("--quiet", action="store_true", help="no progress display")
    p_train.add_argument(
        "--preset",
        default=None,
        help="start from a named config (toy, reference); flags given override it",
    )
    add_config_args(p_train, TrainConfig)
    add_config_args(p_train, AgentConfig, prefix="agent.")

    p_eval = sub.add_parser("eval", help="evaluate a run's latest checkpoint deterministically")
    p_eval.add_argument("run_dir", metavar="RUN_DIR")
    p_eval.add_argument("--episodes", type=int, default=None, help="episodes (default: the run's)")
    p_eval.add_argument(
        "--seed", type=int, default=None, help="evaluation seed (default: the run's)"
    )

    p_list = sub.add_parser("list", help="registered algorithms and environment ids, one per line")
    p_list.add_argument("what", nargs="?", choices=["all", "algos", "envs"], default="all")

    p_speed = sub.add_parser("bench-speed", help="measure updates/s, env steps/s, latency, FLOPs")
    p_speed.add_argument("--algo", default="algd")
    p_speed.add_argument("--env", default="SafetyPointButton1-v0")
    p_speed.add_argument("--utd", type=int, default=10)
    p_speed.add_argument("--batch-size", type=int, default=256)
    p_speed.add_argument(
        "--seconds",
        type=float,
        default=20.0,
        help="seconds of each timed phase (updates, full loop)",
    )
    p_speed.add_argument("--seed", type=int, default=0)
    p_land = sub.add_parser(
        "landscape", help="heatmaps of L and L_A over a 2-D action square, curvature diagnostics"
    )
    p_land.add_argument(
        "run_dirs",
        metavar="RUN_DIR",
        nargs="+",
        help="runs whose sampled actions are drawn; the first one's critics "
        "and multiplier define the energies",
    )
    p_land.add_argument("--out", default=None, help="output folder (default: FIRST_RUN/landscape)")
    p_land.add_argument("--grid", type=int, default=81, help="grid points per axis")
    p_land.add_argument("--samples", type=int, default=1000, help="sampled actions per run")
    p_land.add_argument("--seed", type=int, default=0, help="reset seed of the state shown")
    p_land.add_argument(
        "--lam", type=float, default=None, help="multiplier to use (default: the first run's)"
    )
    p_land.add_argument("--overwrite", action="store_true", help="replace existing output files")

    p_bench = sub.add_parser("bench", help="run a grid of algorithms x envs x seeds (local or Ray)")
    p_bench.add_argument("--out", required=True, help="results folder (one run dir per point)")
    p_bench.add_argument(
        "--preset", default=None, help="grid preset: smoke, cpu, paper, safety-gymnasium"
    )
    p_bench.add_argument("--spec", default=None, help="JSON grid spec (fields of GridSpec)")
    p_bench.add_argument(
        "--base", default=None, help="training preset every point starts from (e.g. toy)"
    )
    p_bench.add_argument("--algos", default=None, help="comma-separated algorithms")
    p_bench.add_argument("--envs", default=None, help="comma-separated env ids")
    p_bench.add_argument("--seeds", default=None, help="comma-separated seeds")
    p_bench.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every point (e.g. agent.rho=2.0); repeatable",
    )
    p_bench.add_argument("--backend", choices=["local", "ray"], default="local")
    p_bench.add_argument("--workers", type=int, default=None, help="parallel runs (default: cores)")
    p_bench.add_argument(
        "--ray-address", default=None, help="existing Ray cluster (default: start one)"
    )
    p_bench.add_argument("--dry-run", action="store_true", help="list the grid's run dirs and stop")

    p_rep = sub.add_parser("report", help="tables and plots over a folder of finished runs")
    p_rep.add_argument("results_dir", metavar="RESULTS_DIR")
    p_rep.add_argument("--out", default=None, help="output folder (default: RESULTS_DIR/report)")
    p_rep.add_argument("--overwrite", action="store_true", help="replace existing output files")

    p_mem = sub.add_parser("bench-memory", help="resident memory over a training run (JSON)")
    p_mem.add_argument("--algo", default="sac_lag")
    p_mem.add_argument("--env", default="ToyRing-v0")
    p_mem.add_argument("--steps", type=int, default=50_000)
    p_mem.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    p_mem.add_argument("--seed", type=int, default=0)
    return parser


def _cmd_train(ns: argparse.Namespace, flag: StopFlag) -> int:
    from algd.train import resume, train

    quiet = ns.__dict__.pop("quiet")
    resume_dir = ns.__dict__.pop("resume")
    preset_name = ns.__dict__.pop("preset")
    ns.__dict__.pop("command")
    if resume_dir is not None:
        extra = sorted(k for k in vars(ns) if k != "total_steps")
        if extra or preset_name:
            extra = extra or ["preset"]
            raise UsageError(
                f"algd train: --resume continues the saved config; --{extra[0].replace('_', '-')} "
                "cannot change (only --total-steps can)"
            )
        summary = resume(resume_dir, getattr(ns, "total_steps", None), console=not quiet, stop=flag)
    else:
        from algd.presets import preset

        given_env = {"env": ns.env} if getattr(ns, "env", None) else {}
        cfg = config_from_args(ns, preset(preset_name, **given_env) if preset_name else None)
        summary = train(cfg, console=not quiet, stop=flag)
    _print_summary(summary)
    if summary["stopped_by_signal"] is not None:
        return 128 + int(summary["stopped_by_signal"])
    return 0


def _print_summary(summary: dict[str, Any]) -> None:
    ev = summary["final_eval"]
    run_dir = summary["run_dir"]
    if not summary["finished"]:
        print(
            f"stopped at step {summary['env_steps']}; checkpoint saved. "
            f"Continue with: algd train --resume {run_dir}"
        )
        return
    kind = "discounted cost" if summary["cost_limit_kind"] == "discounted" else "cost"
    print(
        f"final evaluation ({summary['algo']} on {summary['env']}, {summary['env_steps']} steps): "
        f"return {ev['return_mean']:.2f} +- {ev['return_std']:.2f}, "
        f"{kind} {ev['cost_vs_limit']:.2f} (limit {summary['cost_limit']:g})"
    )
    print(
        f"logs: {run_dir}/ (metrics.csv, episodes.csv, eval.csv, timing.csv, tb/, "
        f"checkpoint.npz, summary.json); TensorBoard: tensorboard --logdir {run_dir}/tb"
    )


def _cmd_eval(ns: argparse.Namespace) -> int:
    from algd.api import evaluate_run

    if ns.episodes is not None and ns.episodes < 1:
        raise UsageError("algd eval: --episodes must be >= 1")
    print(json.dumps(evaluate_run(ns.run_dir, ns.episodes, ns.seed)))
    return 0


def _cmd_list(ns: argparse.Namespace) -> int:
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


def _cmd_speed(ns: argparse.Namespace) -> int:
    from algd.bench.speed import bench_speed

    result = bench_speed(ns.algo, ns.env, ns.utd, ns.batch_size, ns.seconds, ns.seed)
    print(json.dumps(result))
    return 0


def _cmd_memory(ns: argparse.Namespace) -> int:
    from algd.bench.memory import bench_memory

    if ns.steps < 1000 or ns.interval <= 0:
        raise UsageError("algd bench-memory: --steps must be >= 1000 and --interval > 0")
    print(json.dumps(bench_memory(ns.algo, ns.env, ns.steps, ns.interval, ns.seed)))
    return 0


def _cmd_landscape(ns: argparse.Namespace) -> int:
    from algd.bench.landscape import landscape

    out = ns.out if ns.out is not None else str(Path(ns.run_dirs[0]) / "landscape")
    result = landscape(ns.run_dirs, out, ns.grid, ns.samples, ns.seed, ns.lam, ns.overwrite)
    print(json.dumps(result))
    print(
        f"figure: {out}/landscape.png (and .svg); diagnostics: {out}/landscape.json",
        file=sys.stderr,
    )
    return 0


def _cmd_bench(ns: argparse.Namespace) -> int:
    from algd.bench.grid import expand, print_progress, run_grid, spec_from_args

    spec = spec_from_args(ns.preset, ns.spec, ns.algos, ns.envs, ns.seeds, ns.set, ns.base)
    if ns.workers is not None and ns.workers < 1:
        raise UsageError("algd bench: --workers must be >= 1")
    if ns.dry_run:
        for cfg, _ in expand(spec, Path(ns.out)):
            print(cfg.run_dir)
        return 0
    records = run_grid(spec, ns.out, ns.backend, ns.workers, ns.ray_address, print_progress)
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
    print(f"tables and plots: algd report {ns.out}", file=sys.stderr)
    return 0


def _cmd_report(ns: argparse.Namespace) -> int:
    from algd.bench.report import report

    result = report(ns.results_dir, ns.out, ns.overwrite)
    print(result["markdown"], end="")
    out = ns.out or str(Path(ns.results_dir) / "report")
    print(f"report: {out}/ ({', '.join(result['files'])})", file=sys.stderr)
    return 0


COMMANDS = {
    "eval": _cmd_eval,
    "list": _cmd_list,
    "bench-speed": _cmd_speed,
    "bench-memory": _cmd_memory,
    "landscape": _cmd_landscape,
    "report": _cmd_report,
    "bench": _cmd_bench,
}


def main(argv: list[str] | None = None) -> int:
    from algd._xla import enable_compilation_cache

    try:
        ns = build_parser().parse_args(argv)
        if ns.command == "train":
            # Before JAX is imported: a signal from here on stops the run cleanly.
            with stop_signals() as flag:
                enable_compilation_cache()
                return _cmd_train(ns, flag)
        if ns.command != "list":
            enable_compilation_cache()
        return COMMANDS[ns.command](ns)
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
