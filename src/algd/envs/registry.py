"""The environment families, in one table: which ids each takes, how it builds one, what
``algd list envs`` shows of it, and the settings the paper's protocol adds for its tasks. An
id goes to the first family that takes it. A new family is its adapter (a
:class:`algd.envs.base.SafeEnv`) and one :func:`register_family` call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from algd.envs.base import SafeEnv
from algd.envs.gym_cost import VELOCITY_TASKS, is_gym_id, make_info_cost, make_velocity
from algd.envs.safety_gym import (
    SafetyGymEnv,
    is_navigation_id,
    is_safety_gym_id,
    list_safety_gym_ids,
)
from algd.envs.toy import ToyRing

# (env id, episode length or None, cost limit or None, layout seed or None, render size or None)
Maker = Callable[[str, int | None, float | None, int | None, tuple[int, int] | None], SafeEnv]


def _nothing(env_id: str) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class EnvFamily:
    """One family of environments."""

    name: str
    takes: Callable[[str], bool]
    """Whether an id is this family's (nothing is built)."""
    make: Maker
    """Build the env (``layout_seed`` only where ``fixed_layouts`` says so)."""
    ids: Callable[[], list[str]] = list
    """The ids ``algd list envs`` shows (a family may take ids it does not list)."""
    exists: Callable[[str], bool] = lambda env_id: True
    """Whether a taken id names an actual task (else: an unknown id of this family)."""
    fixed_layouts: Callable[[str], bool] = lambda env_id: False
    """Whether the task can keep one layout for a whole run (``--layout fixed``)."""
    protocol: Callable[[str], dict[str, Any]] = field(default=_nothing)
    """The settings the paper's protocol adds for the task (the reference, cpu and safe
    presets), as config fields."""
    title: str | None = None
    """How messages name the family (default: its name)."""


# The paper's navigation protocol (the authors' Safety-Gym runs): 400-step episodes, limit 10
# per episode, one layout per run. Velocity tasks need nothing beyond the defaults: the
# Paper*Velocity ids carry the paper's discounted limits.
NAVIGATION_PROTOCOL = {"episode_length": 400, "cost_limit": 10.0, "layout": "fixed"}
BUILTIN: dict[str, Callable[[int | None, float | None], SafeEnv]] = {"ToyRing-v0": ToyRing}

FAMILIES: list[EnvFamily] = [
    EnvFamily(
        "builtin",
        takes=lambda env_id: env_id in BUILTIN,
        make=lambda env_id, length, limit, _layout, _render: BUILTIN[env_id](length, limit),
        ids=lambda: list(BUILTIN),
    ),
    EnvFamily(
        "velocity",
        takes=lambda env_id: env_id in VELOCITY_TASKS,
        make=lambda env_id, length, limit, _layout, render: make_velocity(
            env_id, length, limit, render
        ),
        ids=lambda: list(VELOCITY_TASKS),
    ),
    EnvFamily(
        "safety_gym",
        takes=is_safety_gym_id,
        make=SafetyGymEnv,
        ids=list_safety_gym_ids,
        exists=lambda env_id: env_id in list_safety_gym_ids(),
        title="Safety-Gymnasium",
        fixed_layouts=is_navigation_id,
        protocol=lambda env_id: dict(NAVIGATION_PROTOCOL) if is_navigation_id(env_id) else {},
    ),
    EnvFamily(
        "gym",
        takes=is_gym_id,
        make=lambda env_id, length, limit, _layout, render: make_info_cost(
            env_id, length, limit, render
        ),
    ),
]


def register_family(family: EnvFamily, before: str = "gym") -> None:
    """Add a family, tried before family ``before`` (by default before any registered
    Gymnasium id, which takes every id Gymnasium knows)."""
    if any(f.name == family.name for f in FAMILIES):
        raise ValueError(f"env family '{family.name}' is already registered")
    names = [f.name for f in FAMILIES]
    FAMILIES.insert(names.index(before) if before in names else len(FAMILIES), family)
