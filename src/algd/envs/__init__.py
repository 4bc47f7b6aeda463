"""``make_env(id)``: every supported environment behind one step contract.

Ids, in the order they are resolved:
- built-in tasks (``ToyRing-v0``);
- the paper's velocity protocol on Gymnasium MuJoCo (``PaperHopperVelocity-v0`` and kin);
- Safety-Gymnasium tasks (``SafetyPointButton1-v0``, ``SafetyHopperVelocity-v1``, ...);
- any other registered Gymnasium id whose ``info`` reports ``"cost"``.
"""

from __future__ import annotations

from collections.abc import Callable

from algd.envs.base import EnvSpec, SafeEnv, StepResult
from algd.envs.gym_cost import VELOCITY_TASKS, is_gym_id, make_info_cost, make_velocity
from algd.envs.safety_gym import SafetyGymEnv, is_safety_gym_id, list_safety_gym_ids
from algd.envs.toy import ToyRing
from algd.errors import EnvError

__all__ = ["EnvSpec", "SafeEnv", "StepResult", "env_kind", "list_env_ids", "make_env"]

BUILTIN: dict[str, Callable[[int | None, float | None], SafeEnv]] = {
    "ToyRing-v0": ToyRing,
}


def env_kind(env_id: str) -> str:
    """'builtin', 'velocity', 'safety_gym' or 'gym' (nothing is built). Raises EnvError for
    ids that none of them knows."""
    if env_id in BUILTIN:
        return "builtin"
    if env_id in VELOCITY_TASKS:
        return "velocity"
    if is_safety_gym_id(env_id):
        if env_id not in list_safety_gym_ids():
            raise EnvError(
                f"unknown env id '{env_id}': no such Safety-Gymnasium task (see `algd list`)"
            )
        return "safety_gym"
    if is_gym_id(env_id):
        return "gym"
    raise EnvError(
        f"unknown env id '{env_id}': not a built-in, paper-velocity, Safety-Gymnasium or "
        "registered Gymnasium id (see `algd list`)"
    )


def make_env(
    env_id: str, episode_length: int | None = None, cost_limit: float | None = None
) -> SafeEnv:
    """Build an environment. Raises EnvError for unknown ids and envs without a cost signal."""
    kind = env_kind(env_id)
    if kind == "builtin":
        return BUILTIN[env_id](episode_length, cost_limit)
    if kind == "velocity":
        return make_velocity(env_id, episode_length, cost_limit)
    if kind == "safety_gym":
        return SafetyGymEnv(env_id, episode_length, cost_limit)
    return make_info_cost(env_id, episode_length, cost_limit)


def list_env_ids() -> list[str]:
    """Built-in, paper-velocity and Safety-Gymnasium ids (any Gymnasium id with a cost also works)."""
    return [*BUILTIN, *VELOCITY_TASKS, *list_safety_gym_ids()]
