"""One training run's settings: :class:`TrainConfig` (the loop, the env, the outputs) with its
learner's :class:`algd.config.agent.AgentConfig`. Field docstrings are the CLI's ``--help``;
each field states its range where it is declared."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from algd.config.agent import AgentConfig
from algd.config.fields import COUNT, POS_INT, POSITIVE, Int, Num, check_fields, require


@dataclass(frozen=True)
class TrainConfig:
    """One training run."""

    algo: str = "algd"
    """Algorithm (see `algd list`)."""
    env: str = "ToyRing-v0"
    """Environment id (see `algd list`)."""
    seed: Annotated[int, Int(0, 2**31 - 1, "in [0, 2^31)")] = 0
    """Root seed: network init, sampling, environment resets and replay all derive from it."""
    total_steps: Annotated[int, Int(1, 10**9)] = 100_000
    """Environment steps, warm-up included."""
    warmup_steps: Annotated[int, COUNT] = 5000
    """Environment steps collected before learning starts."""
    warmup_actions: Literal["uniform", "policy"] = "policy"
    """Warm-up actions: the untrained policy (the reference, for every algorithm) or uniform in
    the box."""
    explore_std: Annotated[float, Num(0.0, 1.0, "in [0, 1]")] = 0.0
    """Std of Gaussian noise on off-policy behaviour actions, in box half-widths (clipped);
    0: the reference."""
    update_cap: Annotated[float | None, POSITIVE] = 5.0
    """The reference's throttle: a step runs its UTD updates only while the epoch's updates are
    at most update_cap x the steps since the warm-up (halves the first epoch's at UTD 10).
    None: every step after the warm-up updates."""
    learning_starts: Annotated[int, COUNT] = 1000
    """Do no gradient step before the buffer holds this many transitions."""
    utd: Annotated[int, POS_INT] = 10
    """Gradient steps per environment step (run as one compiled call)."""
    batch_size: Annotated[int, POS_INT] = 256
    """Minibatch size of each gradient step."""
    replacement: bool = False
    """Draw each minibatch with replacement (off: without, as the reference's random.sample;
    a minibatch larger than the buffer's fill is then drawn with replacement)."""
    buffer_size: Annotated[int, Int(1, 10**8)] = 1_000_000
    """Replay capacity in transitions (memory is allocated once, at start)."""
    replay: Literal["auto", "host", "device"] = "auto"
    """Where the replay buffers live and are sampled: device (sampled inside the compiled
    update), host (numpy) or auto (device on a GPU or TPU, host on a CPU). The two draw
    different, equally uniform minibatches."""
    episode_length: Annotated[int | None, POS_INT] = None
    """Override the environment's episode length (the paper uses 400 on navigation tasks)."""
    cost_limit: Annotated[float | None, Num(0.0, 1e12, "a number >= 0")] = None
    """Override the environment's cost limit (episode sum, or discounted sum on paper velocity
    tasks)."""
    eval_every: Annotated[int, COUNT] = 5000
    """Evaluate every this many environment steps (0: only at the end)."""
    eval_episodes: Annotated[int, POS_INT] = 5
    """Deterministic evaluation episodes per evaluation."""
    log_every: Annotated[int, POS_INT] = 1000
    """Write a metrics row every this many environment steps."""
    checkpoint_every: Annotated[int, COUNT] = 10_000
    """Checkpoint every this many environment steps (0: only at the end)."""
    layout: Literal["random", "fixed"] = "random"
    """Safety-Gymnasium navigation layouts: random (a new one at every reset) or fixed (one per
    run, drawn from its seed, as the paper's fork; docs/environments.md)."""
    bootstrap: Literal["reference", "terminated"] = "reference"
    """Where the critics stop bootstrapping: reference (the authors' samplers, which on the
    velocity tasks also stop at the time limit) or terminated (at true terminations only,
    recommended for new work)."""
    run_dir: str | None = None
    """Run directory (None: runs/<algo>_<env>_s<seed>_<time>)."""
    overwrite: bool = False
    """Replace an existing run directory."""
    progress: bool = True
    """Show the live progress display (plain lines when not a terminal)."""
    wandb: bool = False
    """Also log metrics and evaluations to Weights & Biases (pip install 'algd[wandb]'), one W&B
    run per run directory, files under RUN_DIR/wandb."""
    wandb_project: str = "algd"
    """W&B project."""
    wandb_group: str | None = None
    """W&B group (algd bench sets the grid's folder name; a group of seeds, its folder)."""
    wandb_mode: Literal["online", "offline"] = "online"
    """online, or offline (no network; upload later with wandb sync RUN_DIR/wandb/offline-*)."""
    agent: AgentConfig = field(default_factory=AgentConfig)

    def __post_init__(self) -> None:
        validate(self)


def validate(cfg: TrainConfig) -> None:
    """Raise ConfigError naming the first invalid field (the agent's are checked when it is
    built)."""
    require(isinstance(cfg.algo, str) and cfg.algo != "", "algo", "must be a non-empty name")
    require(isinstance(cfg.env, str) and cfg.env != "", "env", "must be a non-empty id")
    check_fields(cfg, "")
    require(
        cfg.batch_size <= cfg.buffer_size,
        "batch_size",
        f"({cfg.batch_size}) must not exceed buffer_size ({cfg.buffer_size})",
    )
    require(
        cfg.learning_starts <= cfg.buffer_size,
        "learning_starts",
        f"({cfg.learning_starts}) must not exceed buffer_size ({cfg.buffer_size})",
    )
    require(
        not cfg.agent.lagrangian.eval_gap or cfg.eval_every > 0,
        "agent.lagrangian.eval_gap",
        "needs evaluations (--eval-every > 0): it reads the gap at each evaluation",
    )
    require(
        cfg.warmup_steps < cfg.total_steps,
        "warmup_steps",
        f"({cfg.warmup_steps}) must be smaller than total_steps ({cfg.total_steps}), or the run "
        "never learns: lower it (--warmup-steps) or raise --total-steps",
    )
    if cfg.run_dir is not None:
        require(
            isinstance(cfg.run_dir, str) and cfg.run_dir.strip() != "",
            "run_dir",
            "must be a non-empty path",
        )
        require("\x00" not in cfg.run_dir, "run_dir", "contains a NUL byte")
