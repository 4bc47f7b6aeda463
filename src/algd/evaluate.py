"""Evaluation episodes: raw return and cost (plus the discounted cost that the paper's velocity
limits are stated in). Deterministic actions by default, as in the training loop's evaluations;
``deterministic=False`` samples actions as the training rollouts do (the behaviour policy, whose
episodes a multiplier stepping on training episodes' cost constrains)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from algd.agents.base import Agent
from algd.envs.base import SafeEnv
from algd.noise import NoiseStream


def episode_seed(seed: int, stream: int, *index: int) -> int:
    """Environment reset seed derived from the run seed, a stream id and indices."""
    return int(np.random.SeedSequence([seed, stream, *index]).generate_state(1)[0] % 2**31)


EVAL_STREAM = 4


def evaluate(
    agent: Agent,
    state: Any,
    env: SafeEnv,
    episodes: int,
    seed: int,
    eval_index: int,
    gamma_c: float,
    observer: Callable[[int, int, float, float, float], None] | None = None,
    deterministic: bool = True,
) -> dict[str, float]:
    """Run ``episodes`` episodes; returns means, stds and the share over the limit.
    ``observer(episode, t, reward, cost, episode_cost)`` is called after each reset (t = 0,
    reward and cost 0) and after each step (t = steps taken)."""
    returns, costs, disc_costs, lengths = [], [], [], []
    spec = env.spec
    for ep in range(episodes):
        obs, _ = env.reset(episode_seed(seed, EVAL_STREAM, eval_index, ep))
        noise = NoiseStream(agent.noise_shape(), seed, EVAL_STREAM, eval_index, ep)
        ret = cost = disc = 0.0
        t = 0
        if observer is not None:
            observer(ep, 0, 0.0, 0.0, 0.0)
        while True:
            action = agent.act(state, obs, noise(t), deterministic=deterministic)
            obs, r, c, terminated, truncated, _ = env.step(action)
            ret += r
            cost += c
            disc += gamma_c**t * c
            t += 1
            if observer is not None:
                observer(ep, t, r, c, cost)
            if terminated or truncated:
                break
        returns.append(ret)
        costs.append(cost)
        disc_costs.append(disc)
        lengths.append(t)
    judged = disc_costs if spec.cost_limit_kind == "discounted" else costs
    return {
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "cost_mean": float(np.mean(costs)),
        "cost_std": float(np.std(costs)),
        "discounted_cost_mean": float(np.mean(disc_costs)),
        "length_mean": float(np.mean(lengths)),
        "over_limit_frac": float(np.mean([c > spec.cost_limit for c in judged])),
        "cost_vs_limit": float(np.mean(judged)),
    }
