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

__all__ = ["EnvSpec", "SafeEnv", "StepResult", "list_env_ids", "make_env"]

BUILTIN: dict[str, Callable[[int | None, float | None], SafeEnv]] = {
    "ToyRing-v0": ToyRing,
}


def make_env(
    env_id: str, episode_length: int | None = None, cost_limit: float | None = None
) -> SafeEnv:
    """Build an environment. Raises EnvError for unknown ids and envs without a cost signal."""
    if env_id in BUILTIN:
        return BUILTIN[env_id](episode_length, cost_limit)
    if env_id in VELOCITY_TASKS:
        return make_velocity(env_id, episode_length, cost_limit)
    if is_safety_gym_id(env_id):
        if env_id not in list_safety_gym_ids():
            raise EnvError(
                f"unknown env id '{env_id}': no such Safety-Gymnasium task (see `algd list`)"
            )
        return SafetyGymEnv(env_id, episode_length, cost_limit)
    if is_gym_id(env_id):
        return make_info_cost(env_id, episode_length, cost_limit)
    raise EnvError(
        f"unknown env id '{env_id}': not a built-in, paper-velocity, Safety-Gymnasium or "
        "registered Gymnasium id (see `algd list`)"
    )


def list_env_ids() -> list[str]:
    """Built-in, paper-velocity and Safety-Gymnasium ids (any Gymnasium id with a cost also works)."""
    return [*BUILTIN, *VELOCITY_TASKS, *list_safety_gym_ids()]
