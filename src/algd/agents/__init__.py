"""Algorithm registry: every algorithm runs through the same loop, listed by ``algd list``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from algd.agents.algd import ALGD, LGD
from algd.agents.base import OffPolicyAgent
from algd.agents.cal import CAL
from algd.agents.sac import SAC
from algd.agents.sac_auglag import SACAugLagQuadratic
from algd.agents.sac_lag import SACLag
from algd.config import TrainConfig, resolve
from algd.envs.base import EnvSpec
from algd.errors import AlgdError


@dataclass(frozen=True)
class AlgoInfo:
    name: str
    cls: type[OffPolicyAgent]
    summary: str
    defaults: dict[str, Any]  # fills the config's algorithm-dependent None fields


REGISTRY: dict[str, AlgoInfo] = {}

# The authors' code warms every algorithm up with its own (untrained) policy.
_SAC_KIN = {"cost_ensemble": 1, "cost_k": 0.0, "warmup_actions": "policy"}
_DIFFUSION = {"cost_ensemble": 4, "cost_k": 1.0, "warmup_actions": "policy"}


def register(info: AlgoInfo) -> None:
    if info.name in REGISTRY:
        raise ValueError(f"algorithm '{info.name}' is already registered")
    REGISTRY[info.name] = info


register(
    AlgoInfo("algd", ALGD, "diffusion policy guided by the augmented Lagrangian L_A", _DIFFUSION)
)
register(AlgoInfo("lgd", LGD, "ALGD with the standard Lagrangian energy L (ablation)", _DIFFUSION))
register(AlgoInfo("sac_lag", SACLag, "SAC with a cost critic and a Lagrange multiplier", _SAC_KIN))
register(
    AlgoInfo(
        "sac_auglag",
        CAL,
        "SAC-AugLag as the paper ran it: CAL's rectified multiplier, one cost critic (k = 0)",
        _SAC_KIN,
    )
)
register(
    AlgoInfo(
        "cal",
        CAL,
        "Conservative Augmented Lagrangian: ensemble upper bound + rectified multiplier",
        {**_SAC_KIN, "cost_ensemble": 4, "cost_k": 1.0},
    )
)
register(AlgoInfo("sac", SAC, "unconstrained SAC (ignores the cost)", _SAC_KIN))
register(
    AlgoInfo(
        "sac_auglag_quadratic",
        SACAugLagQuadratic,
        "SAC with the textbook augmented-Lagrangian actor penalty (ALGD's L_A term)",
        _SAC_KIN,
    )
)


def get_algo(name: str) -> AlgoInfo:
    if name not in REGISTRY:
        raise AlgdError(f"unknown algorithm '{name}' (choose from: {', '.join(REGISTRY)})")
    return REGISTRY[name]


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Fill algorithm-dependent defaults (raises AlgdError for an unknown algorithm)."""
    return resolve(cfg, get_algo(cfg.algo).defaults)


def build_agent(cfg: TrainConfig, spec: EnvSpec) -> OffPolicyAgent:
    """Agent for a resolved config."""
    return get_algo(cfg.algo).cls(cfg, spec)


__all__ = ["REGISTRY", "AlgoInfo", "OffPolicyAgent", "build_agent", "get_algo", "resolve_config"]
