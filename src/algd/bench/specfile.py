"""A grid spec file (``algd bench --spec FILE``): its fields, checked for their types before
anything runs."""

from __future__ import annotations

from typing import Any

from algd.config import parse_seeds
from algd.suggest import did_you_mean


def spec_fields(data: Any, known: set[str]) -> dict[str, Any]:
    """A grid spec file's fields (``known``: the GridSpec's), each checked for its type; a
    ValueError names the field."""
    if not isinstance(data, dict):
        raise ValueError(f"must be a JSON object, got a {type(data).__name__}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ValueError(f"unknown field '{key}'{did_you_mean(key, known)}")
        if key in ("algos", "envs"):
            names = value.split(",") if isinstance(value, str) else value
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError(f"'{key}' must be a list of names (or one string, a,b)")
            value = tuple(n for n in names if n)
        elif key == "seeds":
            if isinstance(value, str):
                value = parse_seeds(value)
            if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise ValueError("'seeds' must be a list of integers (or a string, 0-4)")
            value = tuple(value)
        elif key == "base":
            if value is not None and not isinstance(value, str):
                raise ValueError("'base' must be a preset's name or null")
        elif not isinstance(value, dict) or (
            key.startswith("per_") and not all(isinstance(v, dict) for v in value.values())
        ):
            raise ValueError(f"'{key}' must be a JSON object" + SPEC_SHAPES.get(key, ""))
        elif key == "sweep" and not all(isinstance(v, list) for v in value.values()):
            raise ValueError("'sweep' must map each key to a list of values")
        out[key] = value
    return out


SPEC_SHAPES = {
    "overrides": ' of dotted keys, {"agent.lagrangian.rho": 2.0}',
    "per_env": " of env ids, each to an object of dotted keys",
    "per_algo": " of algorithms, each to an object of dotted keys",
    "per_pair": ' of "ENV:ALGO" keys, each to an object of dotted keys',
    "sweep": ' of dotted keys, each to a list of values: {"agent.lagrangian.rho": [1, 2]}',
}
