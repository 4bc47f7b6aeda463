"""algd: safe reinforcement learning with diffusion policies guided by the augmented Lagrangian.

``algd.load_policy(path)`` gives a trained policy (a run directory or an exported policy file);
the rest of the Python API is in :mod:`algd.api`.
"""

from typing import Any

__version__ = "0.1.0"

_LAZY = {"load_policy": "algd.policy", "export_policy": "algd.policy", "Policy": "algd.policy"}


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `import algd` stays light (no JAX).
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'algd' has no attribute '{name}'")
