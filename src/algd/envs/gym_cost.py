"""Gymnasium environments with a cost: the paper's velocity protocol, and any env that reports
``info["cost"]``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from algd.envs.base import EnvSpec, SafeEnv, box_bounds, flat_obs_dim
from algd.envs.sg_compat import quiet_gymnasium, quiet_simulator_notices
from algd.errors import EnvError


@dataclass(frozen=True)
class VelocityTask:
    """The paper's velocity-cost protocol on a Gymnasium MuJoCo task (ALGD_METHOD section 1)."""

    gym_id: str
    discounted_limit: float
    obs_dim: int | None = None  # keep the first obs_dim entries (Humanoid: qpos[2:] + qvel = 45)


# Discounted cost limits from the paper; ids are ours.
VELOCITY_TASKS: dict[str, VelocityTask] = {
    "PaperHopperVelocity-v0": VelocityTask("Hopper-v4", 82.748),
    "PaperHalfCheetahVelocity-v0": VelocityTask("HalfCheetah-v4", 151.989),
    "PaperAntVelocity-v0": VelocityTask("Ant-v4", 103.115),
    "PaperHumanoidVelocity-v0": VelocityTask("Humanoid-v4", 20.140, obs_dim=45),
}


def velocity_cost(info: dict[str, Any]) -> float:
    """Per-step cost = planar speed: sqrt(vx^2 + vy^2) when the env reports y-velocity, else |vx|."""
    vx = float(info["x_velocity"])
    if "y_velocity" in info:
        return math.hypot(vx, float(info["y_velocity"]))
    return abs(vx)


def info_cost(info: dict[str, Any]) -> float:
    return float(info["cost"])


class GymCostEnv(SafeEnv):
    """A Gymnasium env whose cost is computed from ``info`` by ``cost_fn``."""

    def __init__(
        self,
        env_id: str,
        gym_id: str,
        cost_fn: Any,
        cost_limit: float,
        limit_kind: str,
        episode_length: int | None,
        obs_dim: int | None = None,
        reference_end: str = "terminated",
        render_size: tuple[int, int] | None = None,
    ) -> None:
        gym = quiet_gymnasium()
        self.reference_end = reference_end
        kwargs: dict[str, Any] = {}
        if episode_length is not None:
            kwargs["max_episode_steps"] = episode_length
        if render_size is not None:
            kwargs.update(render_mode="rgb_array", width=render_size[0], height=render_size[1])
        try:
            self._env = gym.make(import_env_module(gym_id), **kwargs)
        except Exception as exc:  # gymnasium raises several types for unknown or broken ids
            if render_size is not None and _cannot_render(gym, gym_id):
                raise EnvError(
                    f"env {env_id} cannot render a video: its constructor takes no render_mode "
                    "(a Gymnasium env renders when its __init__ accepts render_mode='rgb_array', "
                    "width and height and its render() returns the frame)"
                ) from None
            raise EnvError(f"env {env_id}: gymnasium could not make it ({exc})") from None
        low, high = box_bounds(self._env.action_space, env_id)
        full_dim = flat_obs_dim(self._env.observation_space, env_id)
        self._keep = obs_dim or full_dim
        spec = EnvSpec(
            id=env_id,
            obs_dim=self._keep,
            act_dim=len(low),
            act_low=low,
            act_high=high,
            max_episode_steps=int(episode_length or self._env.spec.max_episode_steps or 1000),
            cost_limit=float(cost_limit),
            cost_limit_kind="discounted" if limit_kind == "discounted" else "episode",
        )
        super().__init__(spec)
        self._cost_fn = cost_fn
        self._act_dtype = self._env.action_space.dtype

    def _reset(self, seed: int) -> np.ndarray:
        obs, _ = self._env.reset(seed=seed)
        return np.asarray(obs)[: self._keep]

    def _step(self, action: np.ndarray) -> tuple[Any, float, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._env.step(action.astype(self._act_dtype))
        try:
            cost = self._cost_fn(info)
        except KeyError as exc:
            raise EnvError(
                f"env {self.spec.id} reports no cost signal: info has no {exc} entry"
            ) from None
        return np.asarray(obs)[: self._keep], reward, cost, terminated, truncated, info

    def render(self) -> np.ndarray:
        return np.asarray(self._env.render())

    def close(self) -> None:
        self._env.close()

    @property
    def unwrapped(self) -> Any:
        """The wrapped simulator environment (for inspection)."""
        return self._env.unwrapped


def make_velocity(
    env_id: str,
    episode_length: int | None,
    cost_limit: float | None,
    render_size: tuple[int, int] | None = None,
) -> GymCostEnv:
    task = VELOCITY_TASKS[env_id]
    limit = task.discounted_limit if cost_limit is None else cost_limit
    with quiet_simulator_notices():
        return GymCostEnv(
            env_id,
            task.gym_id,
            velocity_cost,
            limit,
            "discounted",
            episode_length,
            task.obs_dim,
            reference_end="any_end",  # the authors' MuJoCo sampler: the time limit ends it too
            render_size=render_size,
        )


def make_info_cost(
    env_id: str,
    episode_length: int | None,
    cost_limit: float | None,
    render_size: tuple[int, int] | None = None,
) -> GymCostEnv:
    """Any registered Gymnasium env; it must report ``info["cost"]`` (checked on one step)."""
    env = GymCostEnv(
        env_id,
        env_id,
        info_cost,
        25.0 if cost_limit is None else cost_limit,
        "episode",
        episode_length,
        render_size=render_size,
    )
    env.reset(seed=0)
    env.step(np.asarray(env.spec.act_low))  # raises EnvError when info["cost"] is missing
    return env


def _cannot_render(gym: Any, gym_id: str) -> bool:
    """Whether the env makes without the render arguments (so they were what failed)."""
    try:
        gym.make(import_env_module(gym_id)).close()
    except Exception:  # noqa: BLE001 - it fails anyway: not a rendering problem
        return False
    return True


def import_env_module(env_id: str) -> str:
    """Gymnasium's ``module:EnvId`` form: import ``module`` (which registers the env, as
    ``gymnasium.make`` does) and return ``EnvId``; a plain id is returned unchanged."""
    if ":" not in env_id:
        return env_id
    module, _, name = env_id.partition(":")
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise EnvError(
            f"env {env_id}: cannot import module '{module}' ({exc}); is its folder on PYTHONPATH?"
        ) from None
    except SyntaxError as exc:
        raise EnvError(
            f"env {env_id}: module '{module}' has a syntax error ({exc.filename}, line "
            f"{exc.lineno}: {exc.msg})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the user's module raised while it was imported
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise EnvError(
            f"env {env_id}: importing module '{module}' raised {type(exc).__name__}: {reason}"
        ) from None
    return name


def is_gym_id(env_id: str) -> bool:
    return import_env_module(env_id) in quiet_gymnasium().registry
