"""Typed run configuration: the single source of defaults, validated on construction.

Field docstrings are the CLI's ``--help``. The defaults here are ALGD's (the authors'
settings); each algorithm's own defaults are an :class:`AgentConfig` registered with it
(``algd.agents.REGISTRY``), and :func:`algd.presets.make_config` builds a run's config from
them, a named preset and overrides given as dotted keys (``agent.rho``), the same keys as the
command line's flags. A run's ``config.json`` holds every value.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from algd.errors import AlgdError, ConfigError

MultiplierKind = Literal["dual", "multipliers", "pid"]


@dataclass(frozen=True)
class AgentConfig:
    """Hyperparameters of the learner. Defaults are the ALGD reference defaults."""

    gamma: float = 0.99
    """Reward discount."""
    gamma_c: float = 0.99
    """Cost discount (also used to turn an episode cost limit into the per-state budget h)."""
    critic_lr: float = 3e-4
    """Adam learning rate of the reward critics (and of the cost critics unless cost_critic_lr)."""
    cost_critic_lr: float = 3e-4
    """Adam learning rate of the cost critics."""
    actor_lr: float = 3e-4
    """Adam learning rate of the policy (Gaussian actor or diffusion score network)."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of every critic MLP."""
    cost_ensemble: int = 4
    """Cost-critic ensemble size E (4 for ALGD, LGD and CAL; 1 for the other SAC variants)."""
    cost_k: float = 1.0
    """Pessimism k in Qc_bar = mean + k * std over the ensemble (1.0; 0 with one member)."""
    tau: float = 0.005
    """Polyak averaging rate of the target networks."""
    target_every: int = 2
    """Polyak-update the targets on every this many gradient steps (the reference: 2)."""
    rho: float = 1.0
    """Augmented-Lagrangian penalty rho (> 0)."""
    multiplier: MultiplierKind = "dual"
    """Multiplier update: dual (reference: Adam on log lambda), multipliers (method of
    multipliers: lambda <- max(0, lambda + step * mean(Qc_bar - h))), or pid (PID Lagrangian)."""
    lambda_init: float = 0.6931
    """Initial Lagrange multiplier lambda."""
    lambda_lr: float = 3e-4
    """Adam learning rate on log lambda (multiplier=dual)."""
    dual_grad: Literal["lambda", "log"] = "lambda"
    """Gradient the dual's Adam steps on log lambda with (multiplier=dual): lambda (reference:
    -lambda * violation, the derivative of lambda * (h - Qc_bar); a positive feedback once the
    violation is positive) or log (-violation: log lambda moves at about lambda_lr per step up
    or down, whatever lambda's size)."""
    lambda_max: float | None = None
    """Cap on lambda (None: uncapped, as every reference agent runs; PPO-Lag's configuration
    declares 80, but its clamp acts on a copy and never binds)."""
    lambda_min: float | None = None
    """Floor on lambda (None: none, the reference). Under multiplier=dual, lambda decays
    geometrically while the constraint is slack and then needs log(1/lambda) / lambda_lr steps
    to recover; a floor bounds that delay."""
    violation: Literal["replay", "policy", "episodes"] = "replay"
    """What the multiplier of the off-policy Lagrangian agents (ALGD, LGD, SAC-Lag,
    SAC-AugLag, CAL) steps on: mean(Qc_bar(s, a) - h) over the minibatch at the replayed
    actions (replay, the reference) or at fresh draws a ~ pi(.|s) (policy); or the mean cost of
    the last ``violation_episodes`` training episodes minus the limit, in the limit's own units
    (episodes: a Monte-Carlo estimate of the current policy's constraint; 0 until an episode
    has ended)."""
    violation_episodes: int = 5
    """Training episodes in the episodes violation's mean (1-10)."""
    cost_margin: float = 0.0
    """Fraction of the cost limit d that the multiplier agents train below (0 to 0.5): they hold
    their cost to (1 - cost_margin) d (the budget h, the episodes signal, PPO-Lag's budget),
    while evaluations and reports still compare with d. 0: the reference. HJ's threshold is
    its own setting and is not moved."""
    mom_step: float = 1.0
    """Step size of the method-of-multipliers update (classically rho, whose default is 1)."""
    mom_every: int = 1
    """Apply the method-of-multipliers update every this many gradient steps."""
    pid_kp: float = 0.05
    """PID Lagrangian proportional gain (multiplier=pid)."""
    pid_ki: float = 0.005
    """PID Lagrangian integral gain."""
    pid_kd: float = 0.1
    """PID Lagrangian derivative gain."""
    pid_ema: float = 0.95
    """Smoothing of the constraint violation fed to the PID derivative term."""
    # Diffusion policy (ALGD, LGD).
    diffusion: Literal["ve", "ddpm"] = "ve"
    """Diffusion process: ve (VE-SDE, default) or ddpm."""
    denoise_steps: int = 5
    """K, the number of reverse (denoising) steps."""
    mc_samples: int = 4
    """N, Monte-Carlo samples for the Boltzmann score target."""
    beta: float = 1.0
    """Temperature of the Boltzmann target exp(-L_A / beta)."""
    sigma_min: float = 0.01
    """VE-SDE smallest noise level."""
    sigma_max: float = 1.0
    """VE-SDE largest noise level (sampling starts from N(0, sigma_max^2 I))."""
    ve_single_level: Literal["sigma_min", "sigma_max"] = "sigma_min"
    """VE-SDE with K = 1: the one noise level is sigma_min (reference: the geometric schedule
    sigma_min (sigma_max / sigma_min)^linspace(0, 1, K) at K = 1) or sigma_max (the chain starts
    from the largest noise, as it does for K > 1)."""
    ddpm_beta_min: float = 1e-4
    """DDPM linear beta schedule start."""
    ddpm_beta_max: float = 0.02
    """DDPM linear beta schedule end."""
    ddpm_guidance: float = 0.05
    """DDPM energy-guidance step: the mean moves by this times phi / ||phi||."""
    guidance_scale: float = 1.0
    """VE-SDE: multiplies the learned score in each reverse step."""
    energy_weight: float = 1.0
    """Weight of the energy term (L_A through the chain) in the actor loss."""
    score_weight: float = 0.1
    """Weight of the score-matching term in the actor loss."""
    score_hidden: tuple[int, ...] = (128, 128, 128)
    """Hidden widths of the score network."""
    time_embed_dim: int = 16
    """Width of the diffusion-step embedding fed to the score network."""
    score_space: Literal["action", "latent"] = "action"
    """Space of the score and its Monte-Carlo target: action (reference: squashed action, added
    to the pre-tanh latent unchanged) or latent (the space the sampler moves in, with the tanh
    change of variables)."""
    init: Literal["reference", "lecun"] = "reference"
    """Weight initialisation: reference (Glorot uniform for the reward critics, actors and score
    network; a normal of std 1 / (2 sqrt(fan_in)) for the cost critics, see cost_init; zero
    biases) or lecun (Flax's default)."""
    cost_init: Literal["normal", "truncated"] = "normal"
    """Cost critics' weights under init=reference: normal (what the authors' code computes: its
    truncation loop writes to a local variable, so the normal is never truncated) or truncated
    (at two standard deviations, as that loop intends)."""
    time_embedding: Literal["learned", "sinusoidal"] = "learned"
    """Diffusion step embedding: learned (reference: a K x time_embed_dim table, N(0, 1) at
    initialisation) or sinusoidal."""
    alpha_loss: Literal["alpha", "log_alpha"] = "alpha"
    """SAC temperature loss: alpha (reference: mean(alpha (-log pi - target entropy)) with Adam
    on log alpha, so the step scales with alpha) or log_alpha (the SAC paper's
    -log alpha (log pi + target entropy))."""
    ddpm_start: Literal["standard", "schedule"] = "standard"
    """DDPM chain start: standard (reference: N(0, I), although alpha_bar_K is about 0.95 at K = 5
    with betas 1e-4..0.02) or schedule (N(0, (1 - alpha_bar_K) I), the noise level the last
    reverse step expects)."""
    cost_loss_reduction: Literal["mean", "sum"] = "mean"
    """Cost critics' loss over the ensemble: mean (reference: one mean squared error over all
    members and samples) or sum of the per-member mean squared errors."""
    score_chain_grad: bool = True
    """Let the score-matching loss back-propagate into the reverse chain through the chain
    state a_tau it is evaluated at (reference: a_tau is not detached); off: a_tau is a constant
    and the score loss trains phi at given points only."""
    score_time: Literal["output", "input"] = "output"
    """Which chain state trains phi(s, ., tau): output (reference: the output of reverse step tau,
    off by one from sampling) or input (the input of step tau, as sampling evaluates it)."""
    eval_noise_free: bool = False
    """Deterministic evaluation without injected noise in DDPM's intermediate steps (the reference
    injects it; VE-SDE evaluation is noise-free either way)."""
    # Gaussian actor (SAC family).
    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the tanh-Gaussian actor (SAC family)."""
    alpha_init: float = 1.0
    """Initial entropy temperature (SAC family)."""
    log_prob: Literal["reference", "exact"] = "reference"
    """Tanh correction of the Gaussian actors' log pi (SAC family, HJ): reference
    (log pi(u) - log(scale (1 - tanh(u)^2) + 1e-6), as the authors' code; its gradient vanishes
    once an action saturates) or exact (log pi(u) - log(1 - tanh(u)^2) - log scale, computed
    stably). PPO-Lag inverts stored actions through the reference form either way."""
    alpha_lr: float = 3e-4
    """Learning rate of log alpha (SAC family)."""
    learn_alpha: bool = True
    """Learn the entropy temperature toward the target entropy -|A| (SAC family)."""
    cal_c: float = 10.0
    """CAL's rectification coefficient c in rect = min(c * mean(h - Qc_bar), lambda)."""
    # HJ (reachability).
    hj_threshold: float = 1.0
    """HJ's constraint Q_h(s, a) <= threshold (the reference: 1.0; with per-step costs in [0, 1]
    Q_h never exceeds 1, so it binds only where costs exceed 1; RCRL's own feasibility
    threshold is 0)."""
    hj_lambda_hidden: tuple[int, ...] = (256,)
    """Hidden widths of HJ's multiplier network lambda(s) = softplus(MLP(s))."""
    hj_lambda_lr: float = 3e-4
    """Adam learning rate of lambda(s)."""
    # PPO-Lag (on-policy).
    ppo_rollout: int = 2048
    """Environment steps per rollout (per seed) before a PPO update."""
    ppo_epoch_flush: bool = True
    """Also update at the end of every epoch (one episode length of steps) with the rollout
    collected so far (the reference; with 2048 > the episode length, every update then uses one
    episode length of steps)."""
    ppo_epochs: int = 10
    """Passes over a rollout per update."""
    ppo_minibatch: int = 64
    """Minibatch size of each PPO gradient step (the last one of a pass takes the remainder)."""
    ppo_clip: float = 0.2
    """Clipping epsilon of the surrogate ratio."""
    gae_lambda: float = 0.95
    """GAE lambda of the reward advantages."""
    cost_gae_lambda: float = 0.95
    """GAE lambda of the cost advantages."""
    value_hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of PPO-Lag's reward and cost value networks."""
    value_lr: float = 3e-4
    """Adam learning rate of the value networks."""
    vf_coef: float = 0.5
    """Weight of the reward value loss (before its gradient is clipped)."""
    cost_vf_coef: float = 0.5
    """Weight of the cost value loss (before its gradient is clipped)."""
    entropy_coef: float = 0.0
    """Entropy bonus of the PPO actor loss (base Gaussian entropy)."""
    max_grad_norm: float = 0.5
    """Global-norm clip of each PPO network's gradient."""
    ppo_budget: Literal["reference", "limit"] = "reference"
    """What PPO-Lag's multiplier compares the rollout's episode cost with: reference (the
    per-state budget h, as the authors' code, which is a per-step quantity) or limit (the
    task's limit in its own units: the episode cost, discounted on the paper's velocity
    tasks)."""

    def __post_init__(self) -> None:
        _validate_agent(self)


@dataclass(frozen=True)
class TrainConfig:
    """One training run."""

    algo: str = "algd"
    """Algorithm (see `algd list`)."""
    env: str = "ToyRing-v0"
    """Environment id (see `algd list`)."""
    seed: int = 0
    """Root seed: network init, sampling, environment resets and replay all derive from it."""
    total_steps: int = 100_000
    """Environment steps in total, warm-up included."""
    warmup_steps: int = 5000
    """Environment steps collected before learning starts."""
    warmup_actions: Literal["uniform", "policy"] = "policy"
    """Warm-up actions: the untrained policy (the reference, for every algorithm) or uniform in
    the box."""
    update_cap: float | None = 5.0
    """Reference throttle of the updates: an environment step runs its UTD gradient steps only
    while the current epoch's (one episode length's) gradient steps are at most update_cap x
    the environment steps since the warm-up; at UTD 10 this halves the first epoch's updates
    and never binds later. None: every step after the warm-up updates."""
    learning_starts: int = 1000
    """Do no gradient step before the buffer holds this many transitions."""
    utd: int = 10
    """Gradient steps per environment step (run as one compiled call)."""
    batch_size: int = 256
    """Minibatch size of each gradient step."""
    replacement: bool = False
    """Draw each minibatch with replacement (off: without, as the reference's random.sample;
    a minibatch larger than the buffer's fill is then drawn with replacement)."""
    buffer_size: int = 1_000_000
    """Replay capacity in transitions (memory is allocated once, at start)."""
    replay: Literal["auto", "host", "device"] = "auto"
    """Where the replay buffers live and are sampled. device: on the accelerator, sampled inside
    the compiled update (jax.random), so no minibatch crosses from the host. host: numpy arrays,
    sampled on the host (numpy) and sent to the update. auto: device on a GPU or TPU, host on a
    CPU (where XLA's in-place write of one row costs time in proportion to the capacity, numpy's
    does not). The two draw different (equally uniform) minibatches."""
    episode_length: int | None = None
    """Override the environment's episode length (the paper uses 400 on navigation tasks)."""
    cost_limit: float | None = None
    """Override the environment's cost limit (episode sum, or discounted sum on paper velocity
    tasks)."""
    eval_every: int = 5000
    """Evaluate every this many environment steps (0: only at the end)."""
    eval_episodes: int = 5
    """Deterministic evaluation episodes per evaluation."""
    log_every: int = 1000
    """Write a metrics row every this many environment steps."""
    checkpoint_every: int = 10_000
    """Checkpoint every this many environment steps (0: only at the end)."""
    layout: Literal["random", "fixed"] = "random"
    """Safety-Gymnasium navigation layouts: random (a new layout at every reset) or fixed (every
    training and evaluation episode of the run starts from one layout drawn from its seed,
    closer to the fixed layouts of the paper's Safety-Gym fork; docs/environments.md)."""
    bootstrap: Literal["reference", "terminated"] = "reference"
    """Where the critics stop bootstrapping. reference: as the authors' samplers (navigation:
    the reward critic stops at a met goal, the cost critics never stop; paper velocity tasks:
    both stop at termination and at the time limit, a bug kept for reproduction). terminated:
    both stop at true terminations only (recommended for new work)."""
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


def _check(cond: bool, name: str, problem: str) -> None:
    if not cond:
        raise ConfigError(name, problem)


def _pos_int(cfg: Any, prefix: str, names: tuple[str, ...], minimum: int = 1) -> None:
    for n in names:
        v = getattr(cfg, n)
        if v is None:
            continue
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= minimum
        _check(ok, prefix + n, f"must be an integer >= {minimum} (got {v!r})")


def _finite(cfg: Any, prefix: str, names: tuple[str, ...], low: float, high: float, what: str):
    for n in names:
        v = getattr(cfg, n)
        if v is None:
            continue
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        _check(ok and low <= v <= high, prefix + n, f"must be {what} (got {v!r})")


def _check_choices(cfg: Any, prefix: str) -> None:
    """Every Literal-typed field holds one of its choices."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        tp = hints[f.name]
        choices = [
            c
            for arg in (typing.get_args(tp) if typing.get_origin(tp) is not Literal else (tp,))
            if typing.get_origin(arg) is Literal
            for c in typing.get_args(arg)
        ]
        allow_none = type(None) in typing.get_args(tp)
        value = getattr(cfg, f.name)
        if choices and not (value in choices or (allow_none and value is None)):
            _check(False, prefix + f.name, f"must be one of {', '.join(choices)} (got {value!r})")


def _validate_agent(a: AgentConfig, p: str = "agent.") -> None:
    _finite(a, p, ("gamma", "gamma_c"), 0.0, 0.99999, "a discount in [0, 1)")
    _finite(a, p, ("tau",), 1e-9, 1.0, "in (0, 1]")
    lrs: tuple[str, ...] = ("critic_lr", "cost_critic_lr", "actor_lr", "lambda_lr", "alpha_lr")
    lrs += ("hj_lambda_lr", "value_lr")
    _finite(a, p, lrs, 1e-12, 1.0, "in (0, 1]")
    _finite(a, p, ("rho", "beta", "alpha_init"), 1e-9, 1e9, "a positive number")
    _finite(a, p, ("lambda_init", "cost_k", "cal_c"), 0.0, 1e9, "a number >= 0")
    _finite(
        a,
        p,
        ("mom_step", "lambda_max", "lambda_min", "ppo_clip", "max_grad_norm"),
        1e-12,
        1e9,
        "a positive number",
    )
    _check(
        a.lambda_min is None or a.lambda_max is None or a.lambda_min <= a.lambda_max,
        p + "lambda_min",
        "must be <= lambda_max",
    )
    _check(1 <= a.violation_episodes <= 10, p + "violation_episodes", "must be in 1..10")
    _finite(a, p, ("cost_margin",), 0.0, 0.5, "in [0, 0.5]")
    _finite(a, p, ("hj_threshold",), -1e9, 1e9, "a finite number")
    _finite(a, p, ("vf_coef", "cost_vf_coef", "entropy_coef"), 0.0, 1e9, "a number >= 0")
    _finite(a, p, ("gae_lambda", "cost_gae_lambda"), 0.0, 1.0, "in [0, 1]")
    _pos_int(a, p, ("ppo_rollout", "ppo_epochs", "ppo_minibatch"))
    _check(a.ppo_rollout <= 10**6, p + "ppo_rollout", "must be <= 1e6")
    _finite(a, p, ("pid_kp", "pid_ki", "pid_kd"), 0.0, 1e9, "a number >= 0")
    _finite(a, p, ("pid_ema",), 0.0, 0.99999, "in [0, 1)")
    _finite(a, p, ("energy_weight", "score_weight", "guidance_scale"), 0.0, 1e9, "a number >= 0")
    _finite(a, p, ("ddpm_guidance",), 0.0, 1e9, "a number >= 0")
    _finite(a, p, ("sigma_min", "sigma_max"), 1e-9, 1e9, "a positive number")
    _check(a.sigma_min < a.sigma_max, p + "sigma_min", "must be smaller than sigma_max")
    _finite(a, p, ("ddpm_beta_min", "ddpm_beta_max"), 1e-9, 0.999, "in (0, 1)")
    _check(a.ddpm_beta_min <= a.ddpm_beta_max, p + "ddpm_beta_min", "must be <= ddpm_beta_max")
    _pos_int(a, p, ("target_every", "mom_every", "denoise_steps", "mc_samples", "time_embed_dim"))
    _pos_int(a, p, ("cost_ensemble",))
    _check(a.denoise_steps <= 1000, p + "denoise_steps", "must be <= 1000")
    for n in ("critic_hidden", "actor_hidden", "score_hidden", "hj_lambda_hidden", "value_hidden"):
        widths = getattr(a, n)
        ok = isinstance(widths, tuple) and len(widths) > 0
        ok = ok and all(isinstance(w, int) and 1 <= w <= 65536 for w in widths)
        _check(ok, p + n, f"must be one or more layer widths in [1, 65536] (got {widths!r})")
    _check_choices(a, p)


def validate(cfg: TrainConfig) -> None:
    """Raise ConfigError naming the first invalid field."""
    _check(isinstance(cfg.algo, str) and cfg.algo != "", "algo", "must be a non-empty name")
    _check(isinstance(cfg.env, str) and cfg.env != "", "env", "must be a non-empty id")
    _check(isinstance(cfg.seed, int) and 0 <= cfg.seed < 2**31, "seed", "must be in [0, 2^31)")
    _pos_int(cfg, "", ("total_steps", "utd", "batch_size", "buffer_size", "log_every"))
    _pos_int(cfg, "", ("eval_episodes", "episode_length"))
    _pos_int(cfg, "", ("warmup_steps", "learning_starts", "eval_every", "checkpoint_every"), 0)
    _check(cfg.total_steps <= 10**9, "total_steps", "must be <= 1e9")
    _check(cfg.buffer_size <= 10**8, "buffer_size", "must be <= 1e8")
    _check(
        cfg.batch_size <= cfg.buffer_size,
        "batch_size",
        f"({cfg.batch_size}) must not exceed buffer_size ({cfg.buffer_size})",
    )
    _check(
        cfg.learning_starts <= cfg.buffer_size,
        "learning_starts",
        f"({cfg.learning_starts}) must not exceed buffer_size ({cfg.buffer_size})",
    )
    _check(
        cfg.warmup_steps < cfg.total_steps,
        "warmup_steps",
        f"({cfg.warmup_steps}) must be smaller than total_steps ({cfg.total_steps}), or the run "
        "never learns: lower it (--warmup-steps) or raise --total-steps",
    )
    _finite(cfg, "", ("cost_limit",), 0.0, 1e12, "a number >= 0")
    _finite(cfg, "", ("update_cap",), 1e-9, 1e9, "a positive number")
    if cfg.run_dir is not None:
        _check(
            isinstance(cfg.run_dir, str) and cfg.run_dir.strip() != "",
            "run_dir",
            "must be a non-empty path",
        )
        _check("\x00" not in cfg.run_dir, "run_dir", "contains a NUL byte")
    _check_choices(cfg, "")
    _validate_agent(cfg.agent)


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _coerce(cls: type, data: dict[str, Any], prefix: str) -> dict[str, Any]:
    known = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(prefix + key, "unknown field")
        if isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return out


def from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig from its JSON form (validates; unknown fields are an error)."""
    if not isinstance(data, dict):
        raise ConfigError("<root>", "config must be a JSON object")
    top = _coerce(TrainConfig, {k: v for k, v in data.items() if k != "agent"}, "")
    agent_data = data.get("agent", {})
    if not isinstance(agent_data, dict):
        raise ConfigError("agent", "must be a JSON object")
    try:
        agent = AgentConfig(**_coerce(AgentConfig, agent_data, "agent."))
        cfg = TrainConfig(**top, agent=agent)
    except TypeError as exc:
        raise ConfigError("<root>", str(exc)) from None
    validate(cfg)
    return cfg


# What a field added to the config had been before it existed: a run's config.json written
# before then lacks the field, and reads with this value, so that the run resumes, evaluates and
# reports as it trained. A config file the user writes gets the current defaults instead.
LEGACY_FIELDS: dict[str, Any] = {"replacement": True}
LEGACY_AGENT_FIELDS: dict[str, Any] = {
    "cost_init": "truncated",
    "log_prob": "exact",
    "ve_single_level": "sigma_max",
}


def run_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """:func:`from_dict` for a config that a run wrote (config.json, a checkpoint's or a policy
    file's copy): a field it lacks takes its value from before the field existed."""
    if not isinstance(data, dict) or not isinstance(data.get("agent", {}), dict):
        return from_dict(data)
    agent = {**LEGACY_AGENT_FIELDS, **data.get("agent", {})}
    return from_dict({**LEGACY_FIELDS, **data, "agent": agent})


def to_json(cfg: TrainConfig) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """``cfg`` with fields replaced by dotted keys (``total_steps``, ``agent.rho``), the keys of
    the command line's flags; lists become tuples. Raises ConfigError for an unknown key or a
    bad value."""
    data = to_dict(cfg)
    for dotted, value in overrides.items():
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)  # a whole sub-config (agent=AgentConfig(...))
        *parents, name = str(dotted).replace("-", "_").split(".")
        node = data
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(dotted, "unknown field")
            node = node[part]
        if name not in node:
            raise ConfigError(dotted, "unknown field")
        if isinstance(node[name], dict) != isinstance(value, dict):
            kind = "a group of fields" if isinstance(node[name], dict) else "one value"
            raise ConfigError(dotted, f"takes {kind}")
        node[name] = {**node[name], **value} if isinstance(value, dict) else value
    return from_dict(data)


def parse_sets(items: list[str], flag: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` items as overrides: a JSON value where the text parses as JSON (numbers,
    lists, true/false, null), else the text itself."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise AlgdError(f"{flag} takes KEY=VALUE (got '{item}')")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """Seeds from ``0,1,2``, a range ``0-4`` (both ends included) or a mix (``0-2,7``)."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        first, sep, last = part.partition("-")
        try:
            if sep and first:
                lo, hi = int(first), int(last)
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise AlgdError(
                f"{flag} takes comma-separated integers or ranges such as 0-4 (got '{text}')"
            ) from None
    if not seeds:
        raise AlgdError(f"{flag} names no seed (got '{text}')")
    if len(set(seeds)) != len(seeds):
        raise AlgdError(f"{flag} names a seed twice (got '{text}')")
    return seeds
