"""``make_env(id)``: every supported environment behind one step contract.

Ids, in the order they are resolved:
- built-in tasks (``ToyRing-v0``);
- the paper's velocity protocol on Gymnasium MuJoCo (``PaperHopperVelocity-v0`` and kin);
- Safety-Gymnasium tasks (``SafetyPointButton1-v0``, ``SafetyHopperVelocity-v1``, ...);
- any other registered Gymnasium id whose ``info`` reports ``"cost"``.
"""

from __future__ import annotations

import numpy as np

from algd.config import TrainConfig
from algd.envs.base import EnvSpec, SafeEnv, StepResult
from algd.envs.registry import FAMILIES, EnvFamily, register_family
from algd.errors import EnvError
from algd.suggest import did_you_mean

__all__ = [
    "EnvFamily",
    "EnvSpec",
    "SafeEnv",
    "StepResult",
    "env_family",
    "env_for",
    "env_kind",
    "layout_seed",
    "list_env_ids",
    "make_env",
    "register_family",
]

LAYOUT_STREAM = 11  # numpy stream of the fixed layout's seed


def env_family(env_id: str) -> EnvFamily:
    """The family that takes ``env_id`` (nothing is built). Raises EnvError for ids that no
    family takes, or that name no task of the family that takes them."""
    for family in FAMILIES:
        if family.takes(env_id):
            if not family.exists(env_id):
                raise EnvError(
                    f"unknown env id '{env_id}': no such {family.title or family.name} task"
                    f"{did_you_mean(env_id, family.ids())} (see `algd list`)"
                )
            return family
    hint = did_you_mean(env_id, [i for family in FAMILIES for i in family.ids()])
    raise EnvError(
        f"unknown env id '{env_id}': not a built-in, paper-velocity, Safety-Gymnasium or "
        f"registered Gymnasium id{hint} (see `algd list`)"
    )


def env_kind(env_id: str) -> str:
    """The name of the family that takes ``env_id`` ('builtin', 'velocity', 'safety_gym',
    'gym', or a registered one)."""
    return env_family(env_id).name


def make_env(
    env_id: str,
    episode_length: int | None = None,
    cost_limit: float | None = None,
    layout_seed: int | None = None,
    render_size: tuple[int, int] | None = None,
) -> SafeEnv:
    """Build an environment. Raises EnvError for unknown ids and envs without a cost signal.
    ``layout_seed`` (tasks with fixed layouts only, the navigation tasks): every reset uses
    this seed, so every episode has the same layout. ``render_size`` (width, height): the
    simulator renders frames off-screen (``env.render()``)."""
    family = env_family(env_id)
    if layout_seed is not None and not family.fixed_layouts(env_id):
        raise EnvError(
            f"a fixed layout applies to Safety-Gymnasium navigation tasks only; {env_id} is not one"
        )
    return family.make(env_id, episode_length, cost_limit, layout_seed, render_size)


def env_for(cfg: TrainConfig, render_size: tuple[int, int] | None = None) -> SafeEnv:
    """The env a run's config describes (id, episode length, cost limit, layout)."""
    return make_env(cfg.env, cfg.episode_length, cfg.cost_limit, layout_seed(cfg), render_size)


def layout_seed(cfg: TrainConfig) -> int | None:
    """With ``layout=fixed``: the one reset seed of every episode, drawn from the run's seed."""
    if cfg.layout == "random":
        return None
    return int(np.random.default_rng([cfg.seed, LAYOUT_STREAM]).integers(2**31))


def list_env_ids() -> list[str]:
    """Every family's listed ids (any Gymnasium id with a cost also works)."""
    return [env_id for family in FAMILIES for env_id in family.ids()]
