"""Python API: the same operations as the CLI.

>>> from algd.api import make_config, train, resume, evaluate_run
>>> cfg = make_config({"algo": "algd", "env": "ToyRing-v0", "agent.lagrangian.rho": 2.0}, preset="toy")
>>> summary = train(cfg)
>>> evaluate_run(summary["run_dir"], episodes=10)["cost_mean"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from algd.config import AgentConfig, TrainConfig
from algd.presets import make_config, preset
from algd.training import resume, train

__all__ = [
    "AgentConfig",
    "TrainConfig",
    "evaluate_run",
    "load_agent",
    "make_config",
    "preset",
    "resume",
    "train",
]


def load_agent(run_dir: str | Path) -> tuple[Any, Any, Any, dict[str, Any]]:
    """-> (config, agent, agent state, checkpoint meta) of a run's latest checkpoint."""
    import jax

    from algd.agents import build_agent
    from algd.checkpoint import CHECKPOINT_NAME, load_checkpoint
    from algd.envs import env_for
    from algd.rundir import load_run_config

    path = Path(run_dir)
    cfg = load_run_config(path)
    env = env_for(cfg)
    agent = build_agent(cfg, env.spec)
    env.close()
    template = agent.init(jax.random.PRNGKey(0))
    ckpt = load_checkpoint(path / CHECKPOINT_NAME, template, {"algo": cfg.algo, "env": cfg.env})
    state, meta = ckpt.state, ckpt.meta
    return cfg, agent, state, meta


def which_evaluation(meta: dict[str, Any], seed: int | None, evaluation: int | None) -> int:
    """The evaluation whose episodes ``algd eval`` runs: ``evaluation`` if given, else the first
    of another ``seed``, else the run's last (its final one, once finished)."""
    if evaluation is not None:
        return evaluation
    if seed is not None:
        return 0
    return max(int(meta["loop"].get("eval_index", 0)) - 1, 0)


def evaluate_run(
    run_dir: str | Path,
    episodes: int | None = None,
    seed: int | None = None,
    stochastic: bool = False,
    evaluation: int | None = None,
) -> dict[str, Any]:
    """Evaluation of a run's latest checkpoint, repeatable.

    By default it runs the episodes of the run's last evaluation (the final one of a finished
    run: the same numbers as its summary.json); ``evaluation`` picks another of the run's
    evaluations (0: the first), ``seed`` the episodes of another seed's first evaluation.
    Actions are deterministic, or with ``stochastic`` sampled as in the training rollouts."""
    from algd.envs import env_for
    from algd.errors import AlgdError
    from algd.evaluate import evaluate

    if seed is not None and not 0 <= seed < 2**31:
        raise AlgdError(f"eval: --seed must be in [0, 2^31) (got {seed})")
    if evaluation is not None and evaluation < 0:
        raise AlgdError(f"eval: --evaluation must be >= 0 (got {evaluation})")
    cfg, agent, state, meta = load_agent(run_dir)
    n = cfg.eval_episodes if episodes is None else episodes
    if n < 1:
        raise AlgdError("evaluation needs at least 1 episode")
    done = int(meta["loop"].get("eval_index", 0))  # evaluations the run has made
    evaluation = which_evaluation(meta, seed, evaluation)
    env = env_for(cfg)
    eval_seed = cfg.seed if seed is None else seed
    try:
        result = evaluate(
            agent,
            state,
            env,
            n,
            eval_seed,
            evaluation,
            cfg.agent.gamma_c,
            deterministic=not stochastic,
        )
    finally:
        env.close()
    return {
        "run_dir": str(run_dir),
        "env_steps": meta["loop"]["env_step"],
        "episodes": n,
        "episodes_of": {"seed": eval_seed, "evaluation": evaluation, "run_evaluations": done},
        "policy": "stochastic" if stochastic else "deterministic",
        "cost_limit": env.spec.cost_limit,
        **result,
    }
