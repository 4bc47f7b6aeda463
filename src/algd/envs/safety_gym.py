"""Safety-Gymnasium tasks (navigation and velocity) by their registered ids."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

import algd.envs.sg_compat as sg_compat
from algd.envs.base import EnvSpec, SafeEnv, box_bounds, flat_obs_dim

# Vision tasks have image observations, Debug tasks keyboard control, and *Gymnasium variants
# the 5-tuple API; algd drives the plain state-based tasks.
_PLAIN_ID = re.compile(r"^Safety[A-Za-z0-9]+-v\d+$")  # "Walker2d" has a digit inside
SAFETY_GYM_DEFAULT_LIMIT = 25.0  # per 1000-step episode, the Safety-Gymnasium/OmniSafe convention


def is_safety_gym_id(env_id: str) -> bool:
    return env_id.startswith("Safety") and _PLAIN_ID.match(env_id) is not None


def is_navigation_id(env_id: str) -> bool:
    """A Safety-Gymnasium navigation task (not one of its velocity tasks)."""
    return is_safety_gym_id(env_id) and "Velocity" not in env_id


def list_safety_gym_ids() -> list[str]:
    """Safety-Gymnasium's state-based task ids (building one needs Safety-Gymnasium
    installed: ``sg_compat.INSTALL_HINT``)."""
    return sg_compat.safety_gym_ids()


class SafetyGymEnv(SafeEnv):
    def __init__(
        self,
        env_id: str,
        episode_length: int | None,
        cost_limit: float | None,
        layout_seed: int | None = None,
        render_size: tuple[int, int] | None = None,
    ) -> None:
        self._layout_seed = layout_seed
        kwargs: dict[str, Any] = {}
        if render_size is not None:
            kwargs.update(render_mode="rgb_array", width=render_size[0], height=render_size[1])
            if is_navigation_id(env_id):  # from above, following the robot (not its own eyes)
                kwargs["camera_name"] = "track"
        self._env = sg_compat.make(env_id, **kwargs)
        low, high = box_bounds(self._env.action_space, env_id)
        spec = EnvSpec(
            id=env_id,
            obs_dim=flat_obs_dim(self._env.observation_space, env_id),
            act_dim=len(low),
            act_low=low,
            act_high=high,
            max_episode_steps=int(episode_length or sg_compat.episode_steps(env_id)),
            cost_limit=SAFETY_GYM_DEFAULT_LIMIT if cost_limit is None else float(cost_limit),
            cost_limit_kind="episode",
        )
        super().__init__(spec)
        self._act_dtype = self._env.action_space.dtype
        if is_navigation_id(env_id):
            self.reference_end = "goal"  # the authors' Safety-Gym sampler (navigation tasks)

    def _reset(self, seed: int) -> np.ndarray:
        # A fixed layout: Safety-Gymnasium draws the layout (obstacles, goal, robot start) from
        # the reset seed, so one seed for every reset gives every episode the same layout.
        obs, _ = self._env.reset(seed=seed if self._layout_seed is None else self._layout_seed)
        return obs

    def _step(self, action: np.ndarray) -> tuple[Any, float, float, bool, bool, dict[str, Any]]:
        return self._env.step(action.astype(self._act_dtype))

    def render(self) -> np.ndarray:
        return np.asarray(self._env.render())

    def close(self) -> None:
        self._env.close()

    @property
    def unwrapped(self) -> Any:
        """The wrapped simulator environment (for inspection)."""
        return self._env.unwrapped
