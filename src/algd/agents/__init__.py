"""Algorithm registry: every algorithm runs through the same loop, listed by ``algd list``.

Each entry holds the algorithm's constructor and its defaults, a typed :class:`AgentConfig`
(the only place where algorithms' defaults differ).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Literal

from algd.agents.algd import ALGD
from algd.agents.base import Agent, OffPolicyAgent, TrainState
from algd.agents.cal import CAL
from algd.agents.hj import HJ
from algd.agents.ppo_lag import PPOLag
from algd.agents.sac import SAC
from algd.agents.sac_auglag import SACAugLagQuadratic
from algd.agents.sac_lag import SACLag
from algd.config import AgentConfig, CriticsConfig, SACConfig, TrainConfig
from algd.envs.base import EnvSpec
from algd.errors import AlgdError
from algd.suggest import did_you_mean


@dataclass(frozen=True)
class AlgoInfo:
    name: str
    make: Callable[[TrainConfig, EnvSpec], Agent]
    summary: str
    defaults: AgentConfig
    on_policy: bool = False
    """Trained by the on-policy loop (rollouts, then an update) instead of the off-policy one."""
    loop_defaults: Mapping[str, Any] = field(default_factory=dict)
    """Top-level TrainConfig fields the algorithm sets differently (dotted keys)."""
    preset_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per named preset, what the algorithm changes after the preset is applied."""
    families: tuple[str, ...] = ("critics", "lagrangian", "sac")
    """The AgentConfig families the algorithm reads (``--help`` shows only these)."""
    role: Literal["paper", "reference", "variant"] = "paper"
    """paper: one the paper compares (the benchmark grids run these); reference: the
    unconstrained reference the grids add; variant: an extra, run when named."""


REGISTRY: dict[str, AlgoInfo] = {}

# The AgentConfig defaults are ALGD's (and LGD's and CAL's: a 4-member cost ensemble, k = 1);
# the authors ran the other SAC variants with one cost critic.
_ONE_COST_CRITIC = AgentConfig(critics=CriticsConfig(cost_ensemble=1, cost_k=0.0))
# The cpu preset's diffusion agents: 2 Monte-Carlo samples and 2 cost critics (pilot runs,
# docs/experiments.md).
_DIFFUSION_FAMILIES = ("critics", "lagrangian", "diffusion")
_DIFFUSION_CPU = {"agent.diffusion.mc_samples": 2, "agent.critics.cost_ensemble": 2}
# The diffusion agents' own preset changes: cpu's above, and safe-bounded's latent penalty, the
# one that won the navigation pilot (docs/experiments.md, "Four seeds").
_DIFFUSION_PRESETS: dict[str, dict[str, Any]] = {
    "cpu": _DIFFUSION_CPU,
    "safe-bounded": {"agent.diffusion.latent_penalty": 0.01},
}


def register(info: AlgoInfo) -> None:
    if info.name in REGISTRY:
        raise ValueError(f"algorithm '{info.name}' is already registered")
    REGISTRY[info.name] = info


register(
    AlgoInfo(
        "algd",
        ALGD,
        "diffusion policy guided by the augmented Lagrangian L_A",
        AgentConfig(),
        preset_overrides=_DIFFUSION_PRESETS,
        families=_DIFFUSION_FAMILIES,
    )
)
register(
    AlgoInfo(
        "lgd",
        partial(ALGD, energy="lagrangian"),
        "ALGD with the standard Lagrangian energy L (ablation)",
        AgentConfig(),
        preset_overrides=_DIFFUSION_PRESETS,
        families=_DIFFUSION_FAMILIES,
    )
)
register(
    AlgoInfo(
        "sac_lag", SACLag, "SAC with a cost critic and a Lagrange multiplier", _ONE_COST_CRITIC
    )
)
register(
    AlgoInfo(
        "sac_auglag",
        CAL,
        "SAC-AugLag as the paper ran it: CAL's rectified multiplier, one cost critic (k = 0)",
        _ONE_COST_CRITIC,
    )
)
register(
    AlgoInfo(
        "cal",
        CAL,
        "Conservative Augmented Lagrangian: ensemble upper bound + rectified multiplier",
        AgentConfig(),
    )
)
register(
    AlgoInfo(
        "sac",
        SAC,
        "unconstrained SAC (ignores the cost)",
        _ONE_COST_CRITIC,
        families=("critics", "sac"),
        role="reference",
    )
)
register(
    AlgoInfo(
        "sac_auglag_quadratic",
        SACAugLagQuadratic,
        "SAC with the textbook augmented-Lagrangian actor penalty (ALGD's L_A term)",
        _ONE_COST_CRITIC,
        role="variant",
    )
)


register(
    AlgoInfo(
        "hj",
        HJ,
        "hard-constrained reachability (RCRL): safety critic Q_h, state multiplier lambda(s)",
        replace(_ONE_COST_CRITIC, sac=SACConfig(alpha_loss="log_alpha")),
        # The reference threshold (1) never binds on ToyRing's costs in [0, 1]: the toy preset
        # uses RCRL's own feasibility threshold, 0 (presets.py has the measurements).
        preset_overrides={"toy": {"agent.hj.threshold": 0.0}, "cpu": {"agent.hj.threshold": 0.0}},
        families=("critics", "sac", "hj"),
    )
)
# PPO-Lag learns from on-policy rollouts: no warm-up. On the built-in task the toy preset's
# step budget is far too small for an on-policy learner (see presets.py).
register(
    AlgoInfo(
        "ppo_lag",
        PPOLag,
        "on-policy PPO with reward and cost value networks and a Lagrange multiplier",
        _ONE_COST_CRITIC,
        on_policy=True,
        families=("lagrangian", "ppo"),
        loop_defaults={"warmup_steps": 0},
        preset_overrides={
            "toy": {
                "warmup_steps": 0,
                "total_steps": 40_000,
                "eval_every": 5000,
                "log_every": 1000,
                "checkpoint_every": 5000,
                "agent.ppo.rollout": 1000,
                "agent.ppo.epoch_flush": False,
                "agent.ppo.minibatch": 100,
                "agent.lagrangian.lambda_lr": 0.05,
            },
            # One dual step per rollout: 50 in a 50k-step run. The reference networks (PPO's
            # cost is the simulator's, not its updates), no warm-up.
            "cpu": {
                "warmup_steps": 0,
                "batch_size": 256,
                "agent.actor_hidden": (256, 256),
                "agent.lagrangian.lambda_lr": 0.05,
            },
            # The safe preset's multiplier settings step per gradient step; PPO-Lag steps once
            # per rollout, so it keeps the cpu preset's dual update on its rollouts' cost.
            "safe": {"agent.lagrangian.violation": "replay", "agent.lagrangian.multiplier": "dual"},
        },
    )
)


def algos(*roles: str) -> tuple[str, ...]:
    """The registered algorithms of the given roles, in registration order."""
    return tuple(name for name, info in REGISTRY.items() if info.role in roles)


def get_algo(name: str) -> AlgoInfo:
    if name not in REGISTRY:
        hint = did_you_mean(name, REGISTRY)
        raise AlgdError(f"unknown algorithm '{name}'{hint}; choose from: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def default_config(algo: str = "algd", **fields: object) -> TrainConfig:
    """The algorithm's defaults: a TrainConfig with its registered AgentConfig; ``fields``
    replace top-level fields (raises AlgdError for an unknown algorithm)."""
    info = get_algo(algo)
    cfg = TrainConfig(algo=algo, agent=info.defaults)
    cfg = replace(cfg, **info.loop_defaults) if info.loop_defaults else cfg
    return replace(cfg, **fields) if fields else cfg  # type: ignore[arg-type]


def build_agent(cfg: TrainConfig, spec: EnvSpec) -> Agent:
    return get_algo(cfg.algo).make(cfg, spec)


def is_on_policy(algo: str) -> bool:
    return get_algo(algo).on_policy


__all__ = [
    "REGISTRY",
    "Agent",
    "AlgoInfo",
    "algos",
    "OffPolicyAgent",
    "TrainState",
    "build_agent",
    "default_config",
    "get_algo",
    "is_on_policy",
]
