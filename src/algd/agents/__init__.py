"""Algorithm registry: every algorithm runs through the same loop, listed by ``algd list``.

Each entry holds the algorithm's constructor and its defaults, a typed :class:`AgentConfig`
(the only place where algorithms' defaults differ).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from algd.agents.algd import ALGD
from algd.agents.base import OffPolicyAgent, TrainState
from algd.agents.cal import CAL
from algd.agents.sac import SAC
from algd.agents.sac_auglag import SACAugLagQuadratic
from algd.agents.sac_lag import SACLag
from algd.config import AgentConfig, TrainConfig
from algd.envs.base import EnvSpec
from algd.errors import AlgdError


@dataclass(frozen=True)
class AlgoInfo:
    name: str
    make: Callable[[TrainConfig, EnvSpec], OffPolicyAgent]
    summary: str
    defaults: AgentConfig


REGISTRY: dict[str, AlgoInfo] = {}

# The AgentConfig defaults are ALGD's (and LGD's and CAL's: a 4-member cost ensemble, k = 1);
# the authors ran the other SAC variants with one cost critic.
_ONE_COST_CRITIC = AgentConfig(cost_ensemble=1, cost_k=0.0)


def register(info: AlgoInfo) -> None:
    if info.name in REGISTRY:
        raise ValueError(f"algorithm '{info.name}' is already registered")
    REGISTRY[info.name] = info


register(
    AlgoInfo("algd", ALGD, "diffusion policy guided by the augmented Lagrangian L_A", AgentConfig())
)
register(
    AlgoInfo(
        "lgd",
        partial(ALGD, energy="lagrangian"),
        "ALGD with the standard Lagrangian energy L (ablation)",
        AgentConfig(),
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
register(AlgoInfo("sac", SAC, "unconstrained SAC (ignores the cost)", _ONE_COST_CRITIC))
register(
    AlgoInfo(
        "sac_auglag_quadratic",
        SACAugLagQuadratic,
        "SAC with the textbook augmented-Lagrangian actor penalty (ALGD's L_A term)",
        _ONE_COST_CRITIC,
    )
)


def get_algo(name: str) -> AlgoInfo:
    if name not in REGISTRY:
        raise AlgdError(f"unknown algorithm '{name}' (choose from: {', '.join(REGISTRY)})")
    return REGISTRY[name]


def default_config(algo: str = "algd", **fields: object) -> TrainConfig:
    """The algorithm's defaults: a TrainConfig with its registered AgentConfig; ``fields``
    replace top-level fields (raises AlgdError for an unknown algorithm)."""
    cfg = TrainConfig(algo=algo, agent=get_algo(algo).defaults)
    return replace(cfg, **fields) if fields else cfg  # type: ignore[arg-type]


def build_agent(cfg: TrainConfig, spec: EnvSpec) -> OffPolicyAgent:
    return get_algo(cfg.algo).make(cfg, spec)


__all__ = [
    "REGISTRY",
    "AlgoInfo",
    "OffPolicyAgent",
    "TrainState",
    "build_agent",
    "default_config",
    "get_algo",
]
