"""``make_env(id)``: every supported environment behind one step contract.

Ids, in the order they are resolved:
- built-in tasks (``ToyRing-v0``);
- the paper's velocity protocol on Gymnasium MuJoCo (``PaperHopperVelocity-v0`` and kin);
- Safety-Gymnasium tasks (``SafetyPointButton1-v0``, ``SafetyHopperVelocity-v1``, ...);
- any other registered Gymnasium id whose ``info`` reports ``"cost"``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from algd.config import TrainConfig
from algd.envs.base import EnvSpec, SafeEnv, StepResult
from algd.envs.gym_cost import VELOCITY_TASKS, is_gym_id, make_info_cost, make_velocity
from algd.envs.safety_gym import (
    SafetyGymEnv,
    is_navigation_id,
    is_safety_gym_id,
    list_safety_gym_ids,
)
from algd.envs.toy import ToyRing
from algd.errors import EnvError

__all__ = [
    "EnvSpec",
    "SafeEnv",
    "StepResult",
    "env_for",
    "env_kind",
    "layout_seed",
    "list_env_ids",
    "make_env",
]

LAYOUT_STREAM = 11  # numpy stream of the fixed layout's seed

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
    env_id: str,
    episode_length: int | None = None,
    cost_limit: float | None = None,
    layout_seed: int | None = None,
    render_size: tuple[int, int] | None = None,
) -> SafeEnv:
    """Build an environment. Raises EnvError for unknown ids and envs without a cost signal.
    ``layout_seed`` (Safety-Gymnasium navigation tasks only): every reset uses this seed, so
    every episode has the same layout. ``render_size`` (width, height): the simulator renders
    frames off-screen (``env.render()``)."""
    kind = env_kind(env_id)
    if layout_seed is not None and not (kind == "safety_gym" and is_navigation_id(env_id)):
        raise EnvError(
            f"a fixed layout applies to Safety-Gymnasium navigation tasks only; {env_id} is not one"
        )
    if kind == "builtin":
        return BUILTIN[env_id](episode_length, cost_limit)
    if kind == "velocity":
        return make_velocity(env_id, episode_length, cost_limit, render_size)
    if kind == "safety_gym":
        return SafetyGymEnv(env_id, episode_length, cost_limit, layout_seed, render_size)
    return make_info_cost(env_id, episode_length, cost_limit, render_size)


def env_for(cfg: TrainConfig, render_size: tuple[int, int] | None = None) -> SafeEnv:
    """The env a run's config describes (id, episode length, cost limit, layout)."""
    return make_env(cfg.env, cfg.episode_length, cfg.cost_limit, layout_seed(cfg), render_size)


def layout_seed(cfg: TrainConfig) -> int | None:
    """With ``layout=fixed``: the one reset seed of every episode, drawn from the run's seed."""
    if cfg.layout == "random":
        return None
    return int(np.random.default_rng([cfg.seed, LAYOUT_STREAM]).integers(2**31))


def list_env_ids() -> list[str]:
    """Built-in, paper-velocity and Safety-Gymnasium ids (any Gymnasium id with a cost also works)."""
    return [*BUILTIN, *VELOCITY_TASKS, *list_safety_gym_ids()]
