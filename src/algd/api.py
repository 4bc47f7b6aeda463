"""Python API: the same operations as the CLI.

>>> from algd.api import TrainConfig, AgentConfig, train, resume, evaluate_run
>>> summary = train(TrainConfig(algo="algd", env="ToyRing-v0", total_steps=4000,
...                             agent=AgentConfig(rho=2.0)))
>>> evaluate_run(summary["run_dir"], episodes=10)["cost_mean"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from algd.config import AgentConfig, TrainConfig
from algd.presets import preset
from algd.train import resume, train

__all__ = ["AgentConfig", "TrainConfig", "evaluate_run", "load_agent", "preset", "resume", "train"]


def load_agent(run_dir: str | Path) -> tuple[Any, Any, Any, dict[str, Any]]:
    """-> (config, agent, agent state, checkpoint meta) of a run's latest checkpoint."""
    import jax

    from algd.agents import build_agent
    from algd.checkpoint import (
        CHECKPOINT_NAME,
        check_meta,
        read_checkpoint,
        split_arrays,
        unflatten_state,
    )
    from algd.envs import env_for
    from algd.train import load_run_config

    path = Path(run_dir)
    cfg = load_run_config(path)
    env = env_for(cfg)
    agent = build_agent(cfg, env.spec)
    env.close()
    ckpt = path / CHECKPOINT_NAME
    meta, arrays = read_checkpoint(ckpt)
    check_meta(meta, {"algo": cfg.algo, "env": cfg.env}, ckpt)
    state = unflatten_state(
        agent.init(jax.random.PRNGKey(0)), split_arrays(arrays, "agent"), str(ckpt)
    )
    return cfg, agent, state, meta


def evaluate_run(
    run_dir: str | Path, episodes: int | None = None, seed: int | None = None
) -> dict[str, Any]:
    """Deterministic evaluation of a run's latest checkpoint (repeatable for a given seed)."""
    from algd.envs import env_for
    from algd.errors import AlgdError
    from algd.evaluate import evaluate

    if seed is not None and not 0 <= seed < 2**31:
        raise AlgdError(f"eval: --seed must be in [0, 2^31) (got {seed})")
    cfg, agent, state, meta = load_agent(run_dir)
    n = cfg.eval_episodes if episodes is None else episodes
    if n < 1:
        raise AlgdError("evaluation needs at least 1 episode")
    env = env_for(cfg)
    result = evaluate(
        agent, state, env, n, cfg.seed if seed is None else seed, 0, cfg.agent.gamma_c
    )
    env.close()
    return {
        "run_dir": str(run_dir),
        "env_steps": meta["loop"]["env_step"],
        "episodes": n,
        "cost_limit": env.spec.cost_limit,
        **result,
    }
