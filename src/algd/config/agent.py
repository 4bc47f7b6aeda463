"""The learner's settings: :class:`AgentConfig`, with one nested group per family of
algorithms (critics, the Lagrangian, the diffusion policy, SAC's temperature, HJ, PPO). Each
field states its range where it is declared (:mod:`algd.config.fields`). Defaults are ALGD's
(the authors' settings); each algorithm registers what it changes (``algd.agents.REGISTRY``)
and the families it uses, which are all that ``algd train --algo X --help`` shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from algd.config.fields import (
    COUNT,
    DISCOUNT,
    FINITE,
    FRACTION,
    LR,
    NONNEGATIVE,
    POS_INT,
    POSITIVE,
    TINY_POSITIVE,
    UNIT,
    WIDTHS,
    Int,
    Num,
    check_fields,
    require,
)

MultiplierKind = Literal["dual", "multipliers", "pid"]


@dataclass(frozen=True)
class CriticsConfig:
    """The off-policy critics: two reward critics and the cost-critic ensemble."""

    critic_lr: Annotated[float, LR] = 3e-4
    """Adam learning rate of the reward critics."""
    cost_critic_lr: Annotated[float, LR] = 3e-4
    """Adam learning rate of the cost critics."""
    critic_hidden: Annotated[tuple[int, ...], WIDTHS] = (256, 256)
    """Hidden widths of every critic MLP."""
    cost_ensemble: Annotated[int, POS_INT] = 4
    """Cost-critic ensemble size E (4 for ALGD, LGD and CAL; 1 for the other SAC variants)."""
    cost_k: Annotated[float, NONNEGATIVE] = 1.0
    """Pessimism k in Qc_bar = mean + k * std over the ensemble (1.0; 0 with one member)."""
    tau: Annotated[float, Num(1e-9, 1.0, "in (0, 1]")] = 0.005
    """Polyak averaging rate of the target networks."""
    target_every: Annotated[int, POS_INT] = 2
    """Polyak-update the targets on every this many gradient steps (the reference: 2)."""
    cost_init: Literal["normal", "truncated"] = "normal"
    """Cost critics' weights under init=reference: normal (what the authors' code computes) or
    truncated at two standard deviations (what it intends)."""
    cost_loss_reduction: Literal["mean", "sum"] = "mean"
    """Cost critics' loss over the ensemble: mean (reference: one mean squared error over all
    members and samples) or sum of the per-member mean squared errors."""
    cost_floor: Literal["none", "zero"] = "none"
    """The cost critics' bootstrapped value: as the target critics read it (none, the
    reference) or floored at zero (zero: every true Qc is >= 0). HJ's backup needs none."""

    def __post_init__(self) -> None:
        check_fields(self, "agent.critics.")


@dataclass(frozen=True)
class LagrangianConfig:
    """The constraint: the multiplier lambda, what it steps on, and the penalties."""

    rho: Annotated[float, POSITIVE] = 1.0
    """Augmented-Lagrangian penalty rho (> 0)."""
    multiplier: MultiplierKind = "dual"
    """Multiplier update: dual (reference: Adam on log lambda), multipliers (method of
    multipliers: lambda <- max(0, lambda + step * mean(Qc_bar - h))), or pid (PID Lagrangian)."""
    lambda_init: Annotated[float, NONNEGATIVE] = 0.6931
    """Initial Lagrange multiplier lambda."""
    lambda_lr: Annotated[float, LR] = 3e-4
    """Adam learning rate on log lambda (multiplier=dual)."""
    dual_grad: Literal["lambda", "log"] = "lambda"
    """Gradient of the dual's Adam step on log lambda: lambda (reference: -lambda *
    violation) or log (-violation: a step of about lambda_lr at any lambda)."""
    lambda_max: Annotated[float | None, TINY_POSITIVE] = None
    """Cap on lambda (None: uncapped, as every reference agent runs, PPO-Lag included)."""
    lambda_min: Annotated[float | None, TINY_POSITIVE] = None
    """Floor on lambda (None: none, the reference); bounds how long a decayed dual multiplier
    takes to recover."""
    hold_updates: Annotated[int, COUNT] = 0
    """Updates (PPO-Lag: rollouts) that lambda stays at lambda_init for; 0: the reference."""
    violation: Literal["replay", "policy", "episodes"] = "replay"
    """The off-policy multiplier's signal: mean(Qc_bar(s, a) - h) at the replayed actions
    (replay, the reference) or at a ~ pi(.|s) (policy), or the last violation_episodes
    episodes' mean cost minus the limit (episodes)."""
    violation_episodes: Annotated[int, Int(1, 10)] = 5
    """Training episodes in the episodes violation's mean (1-10)."""
    eval_gap: bool = False
    """Add the evaluations' excess cost to the episodes' signal."""
    eval_gap_window: Annotated[int, Int(1, 10)] = 1
    """eval_gap: the median excess over the last this many evaluations (1: the last)."""
    eval_gap_cap: Annotated[float | None, UNIT] = None
    """eval_gap: the largest gap, a fraction in [0, 1] of the limit d (None: uncapped)."""
    cost_margin: Annotated[float, Num(0.0, 0.5, "in [0, 0.5]")] = 0.0
    """Train for the limit (1 - cost_margin) d instead of d (the budget h, the episodes signal,
    PPO-Lag's budget); evaluations still compare with d. 0: the reference."""
    mom_step: Annotated[float, TINY_POSITIVE] = 1.0
    """Step size of the method-of-multipliers update (classically rho, whose default is 1)."""
    mom_every: Annotated[int, POS_INT] = 1
    """Apply the method-of-multipliers update every this many gradient steps."""
    pid_kp: Annotated[float, NONNEGATIVE] = 0.05
    """PID Lagrangian proportional gain (multiplier=pid)."""
    pid_ki: Annotated[float, NONNEGATIVE] = 0.005
    """PID integral gain."""
    pid_kd: Annotated[float, NONNEGATIVE] = 0.1
    """PID derivative gain."""
    pid_ema: Annotated[float, FRACTION] = 0.95
    """Smoothing of the constraint violation fed to the PID derivative term."""
    cal_c: Annotated[float, NONNEGATIVE] = 10.0
    """CAL's rectification coefficient c in rect = min(c * mean(h - Qc_bar), lambda)."""

    def __post_init__(self) -> None:
        check_fields(self, "agent.lagrangian.")
        require(
            self.lambda_min is None
            or self.lambda_max is None
            or self.lambda_min <= self.lambda_max,
            "agent.lagrangian.lambda_min",
            "must be <= lambda_max",
        )
        require(
            not self.eval_gap or self.violation == "episodes",
            "agent.lagrangian.eval_gap",
            "needs --agent.lagrangian.violation episodes (it corrects the episodes' signal)",
        )
        require(
            self.eval_gap_cap is None or self.eval_gap,
            "agent.lagrangian.eval_gap_cap",
            "needs --agent.lagrangian.eval-gap (it caps that gap)",
        )


@dataclass(frozen=True)
class DiffusionConfig:
    """The diffusion policy (ALGD, LGD): its chain, score network and actor loss."""

    process: Literal["ve", "ddpm"] = "ve"
    """Diffusion process: ve (VE-SDE, default) or ddpm."""
    denoise_steps: Annotated[int, Int(1, 1000)] = 5
    """K, the number of reverse (denoising) steps."""
    mc_samples: Annotated[int, POS_INT] = 4
    """N, Monte-Carlo samples for the Boltzmann score target."""
    beta: Annotated[float, POSITIVE] = 1.0
    """Temperature of the Boltzmann target exp(-L_A / beta)."""
    sigma_min: Annotated[float, POSITIVE] = 0.01
    """VE-SDE smallest noise level."""
    sigma_max: Annotated[float, POSITIVE] = 1.0
    """VE-SDE largest noise level (sampling starts from N(0, sigma_max^2 I))."""
    ve_single_level: Literal["sigma_min", "sigma_max"] = "sigma_min"
    """VE-SDE with K = 1: the one noise level is sigma_min (reference: the geometric schedule
    sigma_min (sigma_max / sigma_min)^linspace(0, 1, K) at K = 1) or sigma_max (the chain starts
    from the largest noise, as it does for K > 1)."""
    ddpm_beta_min: Annotated[float, Num(1e-9, 0.999, "in (0, 1)")] = 1e-4
    """DDPM linear beta schedule start."""
    ddpm_beta_max: Annotated[float, Num(1e-9, 0.999, "in (0, 1)")] = 0.02
    """DDPM linear beta schedule end."""
    ddpm_guidance: Annotated[float, NONNEGATIVE] = 0.05
    """DDPM energy-guidance step: the mean moves by this times phi / ||phi||."""
    ddpm_start: Literal["standard", "schedule"] = "standard"
    """DDPM chain start: standard (reference: N(0, I), although alpha_bar_K is about 0.95 at K = 5
    with betas 1e-4..0.02) or schedule (N(0, (1 - alpha_bar_K) I), the noise level the last
    reverse step expects)."""
    guidance_scale: Annotated[float, NONNEGATIVE] = 1.0
    """VE-SDE: multiplies the learned score in each reverse step."""
    energy_weight: Annotated[float, NONNEGATIVE] = 1.0
    """Weight of the energy term (L_A through the chain) in the actor loss."""
    score_weight: Annotated[float, NONNEGATIVE] = 0.1
    """Weight of the score-matching term in the actor loss."""
    latent_penalty: Annotated[float, NONNEGATIVE] = 0.0
    """Weight w of w * mean_B ||x0||^2 in the actor loss, x0 the chain's pre-tanh output
    (reference: 0). It keeps the latent where tanh still passes the energy's gradient and the
    chain's noise still moves the action."""
    score_hidden: Annotated[tuple[int, ...], WIDTHS] = (128, 128, 128)
    """Hidden widths of the score network."""
    time_embed_dim: Annotated[int, POS_INT] = 16
    """Width of the diffusion-step embedding fed to the score network."""
    time_embedding: Literal["learned", "sinusoidal"] = "learned"
    """Diffusion step embedding: learned (reference: a K x time_embed_dim table, N(0, 1) at
    initialisation) or sinusoidal."""
    score_space: Literal["action", "latent"] = "action"
    """Space of the score and its Monte-Carlo target: action (reference: squashed action, added
    to the pre-tanh latent unchanged) or latent (the space the sampler moves in, with the tanh
    change of variables)."""
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

    def __post_init__(self) -> None:
        p = "agent.diffusion."
        check_fields(self, p)
        require(self.sigma_min < self.sigma_max, p + "sigma_min", "must be smaller than sigma_max")
        require(
            self.ddpm_beta_min <= self.ddpm_beta_max,
            p + "ddpm_beta_min",
            "must be <= ddpm_beta_max",
        )


@dataclass(frozen=True)
class SACConfig:
    """The tanh-Gaussian actor of the SAC family and HJ: its entropy temperature and log pi."""

    alpha_init: Annotated[float, POSITIVE] = 1.0
    """Initial entropy temperature."""
    alpha_lr: Annotated[float, LR] = 3e-4
    """Learning rate of log alpha."""
    learn_alpha: bool = True
    """Learn the entropy temperature toward the target entropy -|A|."""
    alpha_loss: Literal["alpha", "log_alpha"] = "alpha"
    """Temperature loss: alpha (reference: mean(alpha (-log pi - target entropy)), Adam on log
    alpha) or log_alpha (the SAC paper's -log alpha (log pi + target entropy))."""
    log_prob: Literal["reference", "exact"] = "reference"
    """Tanh correction of log pi: reference (log(scale (1 - tanh(u)^2) + 1e-6), the authors';
    its gradient vanishes once an action saturates) or exact (computed stably)."""

    def __post_init__(self) -> None:
        check_fields(self, "agent.sac.")


@dataclass(frozen=True)
class HJConfig:
    """HJ (reachability): the safety constraint and the state multiplier network."""

    threshold: Annotated[float, FINITE] = 1.0
    """The constraint Q_h(s, a) <= threshold (the reference: 1.0; with per-step costs in [0, 1]
    Q_h never exceeds 1, so it binds only where costs exceed 1; RCRL's own feasibility
    threshold is 0)."""
    lambda_hidden: Annotated[tuple[int, ...], WIDTHS] = (256,)
    """Hidden widths of the multiplier network lambda(s) = softplus(MLP(s))."""
    lambda_lr: Annotated[float, LR] = 3e-4
    """Adam learning rate of lambda(s)."""

    def __post_init__(self) -> None:
        check_fields(self, "agent.hj.")


@dataclass(frozen=True)
class PPOConfig:
    """PPO-Lag (on-policy): rollouts, passes, value networks."""

    rollout: Annotated[int, Int(1, 10**6)] = 2048
    """Environment steps per rollout (per seed) before a PPO update."""
    epoch_flush: bool = True
    """Also update at the end of every epoch (one episode length of steps) with the rollout
    collected so far (the reference; with 2048 > the episode length, every update then uses one
    episode length of steps)."""
    epochs: Annotated[int, POS_INT] = 10
    """Passes over a rollout per update."""
    minibatch: Annotated[int, POS_INT] = 64
    """Minibatch size of each PPO gradient step (the last one of a pass takes the remainder)."""
    clip: Annotated[float, TINY_POSITIVE] = 0.2
    """Clipping epsilon of the surrogate ratio."""
    gae_lambda: Annotated[float, UNIT] = 0.95
    """GAE lambda of the reward advantages."""
    cost_gae_lambda: Annotated[float, UNIT] = 0.95
    """GAE lambda of the cost advantages."""
    value_hidden: Annotated[tuple[int, ...], WIDTHS] = (256, 256)
    """Hidden widths of the reward and cost value networks."""
    value_lr: Annotated[float, LR] = 3e-4
    """Adam learning rate of the value networks."""
    vf_coef: Annotated[float, NONNEGATIVE] = 0.5
    """Weight of the reward value loss (before its gradient is clipped)."""
    cost_vf_coef: Annotated[float, NONNEGATIVE] = 0.5
    """Weight of the cost value loss (before its gradient is clipped)."""
    entropy_coef: Annotated[float, NONNEGATIVE] = 0.0
    """Entropy bonus of the PPO actor loss (base Gaussian entropy)."""
    max_grad_norm: Annotated[float, TINY_POSITIVE] = 0.5
    """Global-norm clip of each PPO network's gradient."""
    budget: Literal["reference", "limit"] = "reference"
    """What the multiplier compares the rollout's episode cost with: reference (the per-state
    budget h, as the authors' code, which is a per-step quantity) or limit (the task's limit in
    its own units: the episode cost, discounted on the paper's velocity tasks)."""

    def __post_init__(self) -> None:
        check_fields(self, "agent.ppo.")


@dataclass(frozen=True)
class AgentConfig:
    """Hyperparameters of the learner. Defaults are the ALGD reference defaults."""

    gamma: Annotated[float, DISCOUNT] = 0.99
    """Reward discount."""
    gamma_c: Annotated[float, DISCOUNT] = 0.99
    """Cost discount (also used to turn an episode cost limit into the per-state budget h)."""
    actor_lr: Annotated[float, LR] = 3e-4
    """Adam learning rate of the policy (Gaussian actor or diffusion score network)."""
    actor_hidden: Annotated[tuple[int, ...], WIDTHS] = (256, 256)
    """Hidden widths of the Gaussian actors (SAC family, HJ, PPO-Lag)."""
    init: Literal["reference", "lecun"] = "reference"
    """Weight initialisation: reference (the authors': Glorot uniform, the cost critics a
    normal of std 1 / (2 sqrt(fan_in)), zero biases) or lecun (Flax's default)."""
    critics: CriticsConfig = field(default_factory=CriticsConfig)
    lagrangian: LagrangianConfig = field(default_factory=LagrangianConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sac: SACConfig = field(default_factory=SACConfig)
    hj: HJConfig = field(default_factory=HJConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)

    def __post_init__(self) -> None:
        check_fields(self, "agent.")


# The families, by the field that holds each in AgentConfig.
FAMILIES: dict[str, type] = {
    "critics": CriticsConfig,
    "lagrangian": LagrangianConfig,
    "diffusion": DiffusionConfig,
    "sac": SACConfig,
    "hj": HJConfig,
    "ppo": PPOConfig,
}
