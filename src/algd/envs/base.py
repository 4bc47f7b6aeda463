"""The one environment contract: ``step(a) -> (obs, reward, cost, terminated, truncated, info)``.

Every adapter subclasses :class:`SafeEnv` and implements ``_reset``/``_step``; the base class owns
the episode time limit, dtype conversion, action clipping and the finiteness checks, so those
behave identically on every family of environment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from algd.errors import EnvError

CostLimitKind = Literal["episode", "discounted"]


@dataclass(frozen=True)
class EnvSpec:
    """Shapes and safety protocol of an environment."""

    id: str
    obs_dim: int
    act_dim: int
    act_low: tuple[float, ...]
    act_high: tuple[float, ...]
    max_episode_steps: int
    cost_limit: float
    cost_limit_kind: CostLimitKind  # episode: sum of costs <= limit; discounted: sum gamma_c^t c


StepResult = tuple[np.ndarray, float, float, bool, bool, dict[str, Any]]


class SafeEnv:
    """Base of every environment adapter. Observations are float32 vectors of ``obs_dim``."""

    spec: EnvSpec

    def __init__(self, spec: EnvSpec) -> None:
        self.spec = spec
        self._t = 0
        self._low = np.asarray(spec.act_low, dtype=np.float64)
        self._high = np.asarray(spec.act_high, dtype=np.float64)

    # --- adapters implement these -------------------------------------------------------------
    def _reset(self, seed: int) -> np.ndarray:
        raise NotImplementedError

    def _step(self, action: np.ndarray) -> tuple[Any, float, float, bool, bool, dict[str, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release simulator resources."""

    def get_state(self) -> dict[str, Any] | None:
        """JSON-able mid-episode state, or None when the simulator cannot be snapshotted."""
        return None

    def set_state(self, state: dict[str, Any]) -> None:
        raise EnvError(f"env {self.spec.id}: mid-episode state cannot be restored")

    def render(self) -> np.ndarray:
        """The current frame, (height, width, 3) uint8 (envs made with a render size)."""
        raise EnvError(f"env {self.spec.id} cannot render frames (no simulator view)")

    # How the authors' samplers end an episode for the critics (``bootstrap=reference``):
    # "terminated" (envs they did not run), "goal" (their Safety-Gym sampler: the reward critic
    # stops at a met goal or a true end, the cost critics never stop), "any_end" (their MuJoCo
    # sampler: both stop at termination and at the time limit).
    reference_end = "terminated"

    def reference_episode_end(
        self, terminated: bool, truncated: bool, info: dict[str, Any]
    ) -> tuple[bool, bool]:
        """(reward_done, cost_done) as the authors' samplers set them for this env."""
        if self.reference_end == "goal":
            return terminated or bool(info.get("goal_met", False)), False
        if self.reference_end == "any_end":
            return terminated or truncated, terminated or truncated
        return terminated, terminated

    # --- the contract -------------------------------------------------------------------------
    @property
    def elapsed_steps(self) -> int:
        return self._t

    def reset(self, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        self._t = 0
        obs = self._check_obs(self._reset(int(seed)), "reset")
        return obs, {}

    def step(self, action: np.ndarray) -> StepResult:
        a = np.clip(
            np.asarray(action, dtype=np.float64).reshape(self.spec.act_dim), self._low, self._high
        )
        obs, reward, cost, terminated, truncated, info = self._step(a)
        self._t += 1
        obs = self._check_obs(obs, "step")
        reward, cost = float(reward), float(cost)
        if not math.isfinite(reward):
            raise EnvError(
                f"env {self.spec.id} returned a non-finite reward ({reward}) at step {self._t}"
            )
        if not math.isfinite(cost):
            raise EnvError(
                f"env {self.spec.id} returned a non-finite cost ({cost}) at step {self._t}"
            )
        truncated = bool(truncated) or self._t >= self.spec.max_episode_steps
        return obs, reward, cost, bool(terminated), truncated, info

    def _check_obs(self, obs: Any, where: str) -> np.ndarray:
        out = np.asarray(obs, dtype=np.float32).reshape(-1)
        if out.shape[0] != self.spec.obs_dim:
            raise EnvError(
                f"env {self.spec.id} returned an observation of size {out.shape[0]} at {where}, "
                f"expected {self.spec.obs_dim}"
            )
        if not np.isfinite(out).all():
            raise EnvError(
                f"env {self.spec.id} returned a non-finite observation at {where} (step {self._t})"
            )
        return out


def box_bounds(space: Any, env_id: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Bounds of a flat, finite Box action space."""
    low = np.asarray(getattr(space, "low", None), dtype=np.float64)
    high = np.asarray(getattr(space, "high", None), dtype=np.float64)
    if low.ndim != 1 or not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise EnvError(f"env {env_id}: algd needs a flat, bounded Box action space (got {space})")
    return tuple(low.tolist()), tuple(high.tolist())


def flat_obs_dim(space: Any, env_id: str) -> int:
    shape = getattr(space, "shape", None)
    if shape is None or len(shape) != 1:
        raise EnvError(f"env {env_id}: algd needs a flat vector observation space (got {space})")
    return int(shape[0])
