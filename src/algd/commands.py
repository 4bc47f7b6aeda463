"""The ``algd`` subcommands' flags, one typed frozen dataclass each: tyro generates the flags
and ``--help`` from the fields and their docstrings (``algd train``'s from
:class:`algd.config.TrainConfig`, with ``--agent.*`` from :class:`algd.config.AgentConfig`).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, Literal

import tyro

from algd.config import FAMILIES, AgentConfig, TrainConfig


@dataclass(frozen=True)
class Train:
    """Train an agent, or --resume a stopped run.

    Defaults come from the algorithm (--algo), then --preset, then --config FILE; flags given
    override them.

    Navigation ids without a preset: Safety-Gymnasium's protocol (1000 steps, limit 25, new
    layouts); the paper's (400 steps, limit 10, one layout) is --preset reference."""

    run: Annotated[TrainConfig, tyro.conf.arg(name="")]
    resume: str | None = None
    """Continue the run in this directory from its last checkpoint (only --total-steps may
    change)."""
    preset: Literal["toy", "reference", "cpu", "safe", "safe-bounded", "quick"] | None = None
    """A named config: toy (built-in task), reference (the authors'), cpu (theirs at a 2-core
    CPU's cost), safe (cpu, a multiplier that holds the limit), safe-bounded (safe, the
    diffusion chain off the box's corners), quick (safe at 30k steps; docs/experiments.md)."""
    config: str | None = None
    """A run's config.json, or a JSON or YAML file of fields (nested, or dotted keys such as
    agent.lagrangian.rho), applied after --preset; its run_dir and overwrite are not taken."""
    seeds: str | None = None
    """Train these seeds together in one process and one compiled program (0,1,2 or a range
    0-4); --run-dir is then the group's folder, seed s's run directory its subfolder s<s>.
    Replaces --seed."""
    quiet: bool = False
    """No progress display."""


@dataclass(frozen=True)
class Eval:
    """Evaluate a run's latest checkpoint on the episodes of its last evaluation (prints JSON)."""

    run_dir: tyro.conf.Positional[str]
    episodes: int | None = None
    """Episodes (default: the run's eval_episodes)."""
    seed: int | None = None
    """Run the episodes of this seed's first evaluation (default: the run's seed)."""
    evaluation: int | None = None
    """Run the episodes of the run's evaluation number N, 0 the first (default: its last, so a
    finished run's final evaluation is reproduced: the numbers of its summary.json)."""
    stochastic: bool = False
    """Sample actions as the training rollouts do (the behaviour policy) instead of the
    deterministic ones the training loop's evaluations use."""
    video: str | None = None
    """Also render the episodes off-screen to this .mp4 (or folder: one file per episode),
    with each step's reward and cost, the episode's cost and the limit on the frames."""
    overwrite: bool = False
    """Replace an existing video."""


@dataclass(frozen=True)
class Export:
    """Write a run's policy to a self-contained file that algd.load_policy reads."""

    run_dir: tyro.conf.Positional[str]
    out: tyro.conf.Positional[str]
    """The policy file (.npz: the actor's weights and a JSON header; no pickle)."""
    overwrite: bool = False
    """Replace an existing file."""


@dataclass(frozen=True)
class List:
    """Registered algorithms and environment ids, one per line."""

    what: tyro.conf.Positional[Literal["all", "algos", "envs"]] = "all"


@dataclass(frozen=True)
class BenchSpeed:
    """Measure updates/s, env steps/s, action latency and FLOPs (prints JSON)."""

    algo: str = "algd"
    env: str = "SafetyPointButton1-v0"
    utd: int = 10
    batch_size: int = 256
    seconds: float = 20.0
    """Seconds of each timed phase (updates, full loop)."""
    seed: int = 0
    seeds: str = "1"
    """Group sizes to measure, side by side in this process (e.g. 1,2,4): each a group of that
    many seeds (seed, seed + 1, ...) trained as one program."""
    set: tyro.conf.UseAppendAction[tuple[str, ...]] = ()
    """agent.KEY=VALUE override of the algorithm's defaults (agent.critics.critic_hidden=[128,128]);
    repeatable."""


@dataclass(frozen=True)
class BenchMemory:
    """Resident memory over a training run (prints JSON)."""

    algo: str = "sac_lag"
    env: str = "ToyRing-v0"
    steps: int = 50_000
    interval: float = 1.0
    """Seconds between samples."""
    seed: int = 0
    seeds: int = 1
    """Seeds trained together as one group (one replay buffer each)."""
    memory_gib: float | None = None
    """Also report the largest --buffer-size per seed with which the group fits this memory."""


@dataclass(frozen=True)
class Landscape:
    """Heatmaps of L and L_A over a 2-D action square, with curvature diagnostics."""

    run_dirs: tyro.conf.Positional[tuple[str, ...]]
    """Runs whose sampled actions are drawn; the first one's critics and multiplier define the
    energies."""
    out: str | None = None
    """Output folder (default: FIRST_RUN/landscape)."""
    grid: int = 81
    """Grid points per axis."""
    samples: int = 1000
    """Sampled actions per run."""
    seed: int = 0
    """Reset seed of the state shown."""
    lam: float | None = None
    """Multiplier to use (default: the first run's)."""
    overwrite: bool = False
    """Replace existing output files."""


@dataclass(frozen=True)
class Plot:
    """Curves of one or a few runs: evaluation return, cost with the limit, multiplier."""

    run_dirs: tyro.conf.Positional[tuple[str, ...]]
    out: str | None = None
    """Output folder (default: FIRST_RUN/plots)."""
    overwrite: bool = False
    """Replace existing output files."""


@dataclass(frozen=True)
class Bench:
    """Run a grid of algorithms x envs x seeds (local processes or Ray)."""

    out: str
    """Results folder (one run directory per point)."""
    preset: str | None = None
    """Grid preset: smoke, cpu, cpu-real, safe, safe-reference, paper, safety-gymnasium."""
    spec: str | None = None
    """JSON grid spec (fields of algd.bench.grid.GridSpec)."""
    base: str | None = None
    """Training preset every point starts from (e.g. toy)."""
    algos: str | None = None
    """Comma-separated algorithms."""
    envs: str | None = None
    """Comma-separated env ids."""
    seeds: str | None = None
    """Comma-separated seeds."""
    set: tyro.conf.UseAppendAction[tuple[str, ...]] = ()
    """KEY=VALUE config override for every point, in the flags' dotted keys (agent.lagrangian.rho=2.0);
    repeatable."""
    backend: Literal["local", "ray"] = "local"
    workers: int | None = None
    """Parallel groups (default: cores)."""
    group_size: int | None = None
    """At most this many seeds of one configuration train together in one process (default:
    all of them)."""
    ray_address: str | None = None
    """An existing Ray cluster (default: start one)."""
    dry_run: bool = False
    """List the grid's run directories and stop."""


@dataclass(frozen=True)
class Report:
    """Tables and plots over a folder of finished runs."""

    results_dir: tyro.conf.Positional[str]
    out: str | None = None
    """Output folder (default: RESULTS_DIR/report)."""
    overwrite: bool = False
    """Replace existing output files."""


COMMANDS: dict[str, type] = {
    "train": Train,
    "eval": Eval,
    "export": Export,
    "list": List,
    "bench-speed": BenchSpeed,
    "bench-memory": BenchMemory,
    "landscape": Landscape,
    "plot": Plot,
    "bench": Bench,
    "report": Report,
}


@cache
def train_command(families: tuple[str, ...]) -> type[Train]:
    """:class:`Train` whose agent shows only the families ``families`` (an algorithm's): the
    others' flags are hidden from ``--help`` and refused. Its ``run`` converts back with
    :func:`algd.config.from_dict` (``to_dict`` of it is a full config)."""
    hidden = [
        (name, Annotated[cls, tyro.conf.Suppress], field(default_factory=cls))
        for name, cls in FAMILIES.items()
        if name not in families
    ]
    agent: Any = dataclasses.make_dataclass(
        "AgentConfig", hidden, bases=(AgentConfig,), frozen=True
    )
    agent.__doc__ = AgentConfig.__doc__
    run: Any = dataclasses.make_dataclass(
        "TrainConfig",
        [("agent", agent, field(default_factory=agent))],
        bases=(TrainConfig,),
        frozen=True,
    )
    run.__doc__ = TrainConfig.__doc__
    command: Any = dataclasses.make_dataclass(
        "Train",
        [("run", Annotated[run, tyro.conf.arg(name="")])],
        bases=(Train,),
        frozen=True,
    )
    command.__doc__ = Train.__doc__
    return command


def command_run(command: type[Train], cfg: TrainConfig) -> Any:
    """``cfg`` as the ``run`` of a :func:`train_command` class (the default it parses over)."""
    run_cls = typing.get_args(command.__dataclass_fields__["run"].type)[0]
    agent_cls = run_cls.__dataclass_fields__["agent"].type
    agent = agent_cls(
        **{f.name: getattr(cfg.agent, f.name) for f in dataclasses.fields(AgentConfig)}
    )
    top = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)}
    return run_cls(**{**top, "agent": agent})
