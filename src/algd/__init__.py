"""algd: safe reinforcement learning with diffusion policies guided by the augmented Lagrangian.

The Python API (each name is imported on first use, so ``import algd`` stays light):

- ``load_policy(path)``: a trained policy (a run directory or an exported policy file) as a
  :class:`Policy`, with ``act(obs)`` and Gymnasium ``observation_space``/``action_space``.
- ``export_policy(run_dir, out)``: a run's policy as a self-contained file.
- ``make_config(overrides, preset=...)``, ``preset(name, ...)``, ``TrainConfig``,
  ``AgentConfig``: configurations, as the command line builds them.
- ``train(cfg)``, ``resume(run_dir)``, ``evaluate_run(run_dir)``, ``load_agent(run_dir)``: the
  command line's operations (:mod:`algd.api`).
"""

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_policy": "algd.policy",
    "export_policy": "algd.policy",
    "Policy": "algd.policy",
    "make_config": "algd.api",
    "preset": "algd.api",
    "TrainConfig": "algd.api",
    "AgentConfig": "algd.api",
    "train": "algd.api",
    "resume": "algd.api",
    "evaluate_run": "algd.api",
    "load_agent": "algd.api",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `import algd` stays light (no JAX).
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'algd' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
