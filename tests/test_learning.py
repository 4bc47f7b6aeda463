"""Learning on the built-in ToyRing-v0 (see algd.envs.toy and algd.presets for why the settings).

Thresholds: a uniform-random policy earns about 66 per 100-step episode and the safe optimum
about 119 (band edges near (+-0.4, 0.63)); the unconstrained optimum earns about 123 but pays
cost about 100 against a limit of 5. "return > 100" therefore means a policy well past random
that has moved onto the ring, and "cost <= 5" that it respects the limit.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd.agents import build_agent
from algd.checkpoint import read_checkpoint, split_arrays, unflatten_state
from algd.envs import make_env
from algd.envs.toy import ring_cost
from algd.train import load_run_config, train
from helpers import toy

LIMIT = 5.0


def final(summary: dict) -> tuple[float, float]:
    ev = summary["final_eval"]
    return ev["return_mean"], ev["cost_mean"]


@pytest.mark.parametrize("seed", [0, 1])
def test_safe_baselines_respect_the_limit_and_sac_does_not(tmp_path: Path, seed: int) -> None:
    results = {
        algo: final(train(toy(algo, tmp_path / algo, seed=seed), console=False))
        for algo in ("sac", "sac_lag", "sac_auglag", "cal")
    }
    sac_return, sac_cost = results["sac"]
    assert sac_cost > 5 * LIMIT, results  # ignoring the cost pays for it
    for algo in ("sac_lag", "sac_auglag", "cal"):
        ret, cost = results[algo]
        assert cost <= LIMIT, (algo, results)
        assert ret > 100.0, (algo, results)


def test_algd_is_safe_and_multimodal(tmp_path: Path) -> None:
    # The diffusion policy converges more slowly than a Gaussian here: 6000 steps, not 4000.
    summary = train(toy("algd", tmp_path / "algd", total_steps=6000), console=False)
    ret, cost = final(summary)
    assert cost <= LIMIT and ret > 100.0, summary["final_eval"]
    # Sampled actions at one state occupy both safe modes (left and right of the hazard band).
    cfg = load_run_config(tmp_path / "algd")
    env = make_env(cfg.env)
    agent = build_agent(cfg, env.spec)
    _, arrays = read_checkpoint(tmp_path / "algd" / "checkpoint.npz")
    state = unflatten_state(agent.init(jax.random.PRNGKey(0)), split_arrays(arrays, "agent"), "x")
    obs, _ = env.reset(0)
    acts = np.asarray(
        agent.policy(state["actor"], jnp.tile(obs, (2000, 1)), jax.random.PRNGKey(1), False)
    )
    # Two separated clusters, one each side of the band. The minority side's share shrinks as
    # training goes on (about 45% at 4000 steps, 10% at 6000, 6% at 8000 for seed 0: the energy
    # term is mode-seeking), but it stays far above what a Gaussian puts there (0%, below).
    left, right = acts[acts[:, 0] < -0.3], acts[acts[:, 0] > 0.3]
    assert min(len(left), len(right)) / len(acts) > 0.05, (len(left), len(right))
    assert left[:, 0].mean() < -0.4 and right[:, 0].mean() > 0.4
    assert np.mean(np.abs(acts[:, 0]) <= 0.3) < 0.15  # few samples in the band's middle
    assert float(np.mean(ring_cost(acts))) < 0.1


def test_gaussian_policy_is_unimodal(tmp_path: Path) -> None:
    """The contrast: SAC-Lag's tanh-Gaussian puts (almost) all its samples on one side."""
    train(toy("sac_lag", tmp_path / "sl"), console=False)
    cfg = load_run_config(tmp_path / "sl")
    env = make_env(cfg.env)
    agent = build_agent(cfg, env.spec)
    _, arrays = read_checkpoint(tmp_path / "sl" / "checkpoint.npz")
    state = unflatten_state(agent.init(jax.random.PRNGKey(0)), split_arrays(arrays, "agent"), "x")
    obs, _ = env.reset(0)
    acts = np.asarray(
        agent.policy(state["actor"], jnp.tile(obs, (2000, 1)), jax.random.PRNGKey(1), False)
    )
    assert min(np.mean(acts[:, 0] < -0.3), np.mean(acts[:, 0] > 0.3)) < 0.01
