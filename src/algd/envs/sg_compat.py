"""Import Safety-Gymnasium 1.0.0 on Python 3.11.

Python 3.11's dataclasses reject unhashable defaults, and several Safety-Gymnasium asset
dataclasses use numpy arrays as field defaults, so ``import safety_gymnasium`` fails with
``ValueError: mutable default <class 'numpy.ndarray'> for field ...``. During that import only,
``dataclasses._get_field`` is wrapped so that an ndarray class default becomes
``field(default_factory=<copy>)`` (each instance gets its own copy, as the authors intended);
the original function is restored afterwards. Gymnasium-Robotics, imported on the way, prints a
notice about Adroit environments we never use; it is silenced during the import.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from types import ModuleType
from typing import Any

import numpy as np

_module: ModuleType | None = None


def _ndarray_safe_get_field(original: Any) -> Any:
    def _get_field(cls: type, a_name: str, a_type: Any, *args: Any, **kwargs: Any) -> Any:
        default = cls.__dict__.get(a_name, dataclasses.MISSING)
        if isinstance(default, np.ndarray):
            setattr(cls, a_name, dataclasses.field(default_factory=default.copy))
        return original(cls, a_name, a_type, *args, **kwargs)

    return _get_field


def import_safety_gymnasium() -> ModuleType:
    """Return the ``safety_gymnasium`` module, importing it with the 3.11 fix once."""
    global _module
    if _module is None:
        original = dataclasses._get_field  # type: ignore[attr-defined]
        dataclasses._get_field = _ndarray_safe_get_field(original)  # type: ignore[attr-defined]
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                import safety_gymnasium
        finally:
            dataclasses._get_field = original  # type: ignore[attr-defined]
        _module = safety_gymnasium
    return _module


def quiet_gymnasium() -> ModuleType:
    """Import gymnasium without the Gymnasium-Robotics plugin notice on stderr."""
    with contextlib.redirect_stderr(io.StringIO()):
        import gymnasium
    return gymnasium
