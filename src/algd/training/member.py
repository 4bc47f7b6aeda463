"""One seed of a training group on the host: its counters (:class:`LoopState`, checkpointed as
one record), its envs and current observation, its action noise and its logs; and what one of
its environment steps stores (:class:`Transition`).

All randomness derives from the run seed and a stream number: the training episodes' resets
(``TRAIN_STREAM``), the host minibatches (``SAMPLE_STREAM``), uniform warm-up actions
(``WARMUP_STREAM``) and the action noise (``ACT_STREAM``), each indexed by the step or episode.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from algd.checkpoint import CHECKPOINT_NAME, Checkpoint
from algd.config import TrainConfig
from algd.envs import SafeEnv, env_for
from algd.evaluate import episode_seed
from algd.noise import NoiseStream
from algd.training.runlogs import RunLogs

TRAIN_STREAM, SAMPLE_STREAM, WARMUP_STREAM, ACT_STREAM, EXPLORE_STREAM = 3, 1, 2, 5, 6
RECENT = 10  # training return/cost in metrics rows: mean over the last RECENT episodes

# The counters a checkpoint stores under meta["loop"], in this order.
COUNTERS = (
    "env_step",
    "episode",
    "updates",
    "epoch_updates",
    "eval_index",
    "ep_return",
    "ep_cost",
    "ep_disc_cost",
    "ep_len",
)


class Transition(NamedTuple):
    """One seed's environment step as the loops store it: the replay columns (``Batch``), then
    whether the episode ended there and gamma_c ** (the step's index in its episode)."""

    obs: np.ndarray
    action: np.ndarray
    reward: float
    cost: float
    next_obs: np.ndarray
    reward_done: bool
    cost_done: bool
    ended: bool
    discount: float


@dataclass
class LoopState:
    """A seed's counters and accumulators: what its checkpoint holds of the loop."""

    env_step: int = 0
    episode: int = 0
    updates: int = 0
    epoch_updates: int = 0  # gradient steps in the current epoch (for update_cap)
    eval_index: int = 0
    ep_return: float = 0.0
    ep_cost: float = 0.0
    ep_disc_cost: float = 0.0
    ep_len: int = 0
    recent: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=RECENT))
    # each recent episode's cost in the limit's units (discounted or summed), for
    # violation=episodes
    recent_limit_cost: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    # each recent evaluation's cost less the training episodes' then (eval_gap)
    recent_gaps: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))

    def counters(self) -> dict[str, Any]:
        """The scalar counters, as a checkpoint's meta["loop"] holds them."""
        return {name: getattr(self, name) for name in COUNTERS}

    def arrays(self) -> dict[str, np.ndarray]:
        """The recent episodes, as a checkpoint's loop arrays hold them."""
        return {
            "recent": np.asarray(list(self.recent), np.float64).reshape(-1, 2),
            "recent_limit_cost": np.asarray(list(self.recent_limit_cost), np.float64),
            "recent_gaps": np.asarray(list(self.recent_gaps), np.float64),
        }

    @classmethod
    def restored(cls, counters: dict[str, Any], arrays: dict[str, np.ndarray]) -> LoopState:
        """The state :meth:`counters` and :meth:`arrays` were taken from."""
        out = cls(**{name: counters[name] for name in COUNTERS})
        out.recent.extend((float(r), float(c)) for r, c in arrays["recent"])
        # (absent from checkpoints of runs that predate violation=episodes)
        out.recent_limit_cost.extend(float(c) for c in arrays.get("recent_limit_cost", ()))
        out.recent_gaps.extend(float(g) for g in arrays.get("recent_gaps", ()))
        return out

    def eval_gap(self, window: int, cap: float = np.inf) -> float:
        """The gap eval_gap adds to the episodes signal: the median of the last ``window``
        evaluations' excess costs, clipped to [0, cap] (0 if none has been measured)."""
        gaps = list(self.recent_gaps)[-window:]
        return float(np.clip(np.median(gaps), 0.0, cap)) if gaps else 0.0


def episode_end(
    env: SafeEnv, bootstrap: str, terminated: bool, truncated: bool, info: dict[str, Any]
) -> tuple[bool, bool]:
    """(reward_done, cost_done) of a transition. ``terminated``: both are the env's terminated
    flag, so a time-limit truncation bootstraps (recommended). ``reference``: the authors'
    samplers (:meth:`SafeEnv.reference_episode_end`)."""
    if bootstrap == "terminated":
        return terminated, terminated
    return env.reference_episode_end(terminated, truncated, info)


class Member:
    """One seed of a training group, on the host: its config, run directory, envs, counters,
    current observation, action noise, logs and latest update metrics."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.seed = cfg.seed
        self.run_dir = Path(str(cfg.run_dir))
        self.env = env_for(cfg)
        self.eval_env = env_for(cfg)
        self.loop = LoopState()
        self.obs = np.zeros(self.env.spec.obs_dim, np.float32)
        self.act_noise: NoiseStream | None = None
        self.explore_noise: NoiseStream | None = None
        self.logs: RunLogs | None = None
        self.last_metrics: dict[str, float] = {}

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME

    def new_episode(self) -> None:
        lp = self.loop
        lp.ep_return = lp.ep_cost = lp.ep_disc_cost = 0.0
        lp.ep_len = 0
        self.obs, _ = self.env.reset(episode_seed(self.seed, TRAIN_STREAM, lp.episode))

    def episode_done(self, discounted: bool) -> None:
        """Account the episode that just ended (its log row, the recent episodes) and begin the
        next."""
        lp = self.loop
        if self.logs is not None:
            self.logs.record(
                "episodes",
                {
                    "step": lp.env_step,
                    "episode": lp.episode,
                    "return": lp.ep_return,
                    "cost": lp.ep_cost,
                    "discounted_cost": lp.ep_disc_cost,
                    "length": lp.ep_len,
                },
            )
        lp.recent.append((lp.ep_return, lp.ep_cost))
        lp.recent_limit_cost.append(lp.ep_disc_cost if discounted else lp.ep_cost)
        lp.episode += 1
        self.new_episode()

    def note_eval_gap(self, eval_cost: float, episodes: int) -> None:
        """Keep how far an evaluation's cost (in the limit's units) exceeds the mean of the
        last ``episodes`` training episodes' (nothing before one has ended)."""
        last = list(self.loop.recent_limit_cost)[-episodes:]
        if last:
            self.loop.recent_gaps.append(eval_cost - float(np.mean(last)))

    def checkpoint_meta(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(meta["loop"], loop arrays) of this seed's checkpoint."""
        meta = {
            **self.loop.counters(),
            "env_state": self.env.get_state(),
            "last_metrics": self.last_metrics,
        }
        return meta, {"obs": self.obs, **self.loop.arrays()}

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue from ``ckpt``: its counters, observation and simulator state (a simulator
        that cannot be snapshotted drops the unfinished episode and starts the next)."""
        meta = ckpt.meta["loop"]
        self.loop = lp = LoopState.restored(meta, ckpt.loop)
        self.last_metrics = meta["last_metrics"]
        self.obs = ckpt.loop["obs"]
        if meta["env_state"] is not None:
            self.env.reset(episode_seed(self.seed, TRAIN_STREAM, lp.episode))
            self.env.set_state(meta["env_state"])
        else:
            lp.episode += 1
            self.new_episode()

    def close(self) -> None:
        if self.logs is not None:
            self.logs.close()
            self.logs = None
        self.env.close()
        self.eval_env.close()
