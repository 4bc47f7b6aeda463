"""What a config field may hold, stated where the field is declared (``Annotated[float,
LR]``), and the one check that reads it: finite numbers in a range, integers in a range, layer
widths, and the choices of a ``Literal``."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Literal

from algd.errors import ConfigError


@dataclass(frozen=True)
class Num:
    """A finite number in [low, high]."""

    low: float
    high: float
    what: str

    def problem(self, v: Any) -> str | None:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return f"must be a number, {self.what} (got {v!r})"
        ok = math.isfinite(v) and self.low <= v <= self.high
        return None if ok else f"must be {self.what} (got {v!r})"


@dataclass(frozen=True)
class Int:
    """An integer >= low (and <= high where given)."""

    low: int
    high: int | None = None
    what: str | None = None  # the range in words, where they read better than low..high

    def problem(self, v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= self.low
        ok = ok and (self.high is None or v <= self.high)
        if ok:
            return None
        if self.what is not None:
            return f"must be {self.what} (got {v!r})"
        if self.high is None:
            return f"must be an integer >= {self.low} (got {v!r})"
        return f"must be an integer in {self.low}..{self.high} (got {v!r})"


@dataclass(frozen=True)
class Widths:
    """One or more layer widths in [1, 65536]."""

    def problem(self, v: Any) -> str | None:
        ok = isinstance(v, tuple) and len(v) > 0
        ok = ok and all(isinstance(w, int) and not isinstance(w, bool) for w in v)
        ok = ok and all(1 <= w <= 65536 for w in v)
        return None if ok else f"must be one or more layer widths in [1, 65536] (got {v!r})"


Check = Num | Int | Widths

DISCOUNT = Num(0.0, 0.99999, "a discount in [0, 1)")
LR = Num(1e-12, 1.0, "in (0, 1]")
POSITIVE = Num(1e-9, 1e9, "a positive number")
TINY_POSITIVE = Num(1e-12, 1e9, "a positive number")
NONNEGATIVE = Num(0.0, 1e9, "a number >= 0")
UNIT = Num(0.0, 1.0, "in [0, 1]")
FRACTION = Num(0.0, 0.99999, "in [0, 1)")
FINITE = Num(-1e9, 1e9, "a finite number")
POS_INT = Int(1)
COUNT = Int(0)
WIDTHS = Widths()


def _choices(tp: Any) -> tuple[list[Any], bool]:
    """The choices of a Literal type (or of the Literal in an Optional), and whether None is
    allowed."""
    args = typing.get_args(tp) if typing.get_origin(tp) is not Literal else (tp,)
    choices = [c for arg in args if typing.get_origin(arg) is Literal for c in typing.get_args(arg)]
    return choices, type(None) in typing.get_args(tp)


def check_fields(obj: Any, prefix: str) -> None:
    """Raise ConfigError naming the first field of dataclass ``obj`` whose value is outside
    what its annotation states (a None where None is allowed passes; a bool field takes only
    a bool); nested dataclasses are checked where they are built."""
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for f in dataclasses.fields(obj):
        tp, value = hints[f.name], getattr(obj, f.name)
        name = prefix + f.name
        checks: tuple[Any, ...] = ()
        if typing.get_origin(tp) is typing.Annotated:
            tp, *meta = typing.get_args(tp)
            checks = tuple(m for m in meta if isinstance(m, (Num, Int, Widths)))
        if tp is bool and not isinstance(value, bool):
            raise ConfigError(name, f"must be true or false (got {value!r})")
        choices, allow_none = _choices(tp)
        if value is None and (allow_none or not checks and not choices):
            continue
        if choices and value not in choices:
            raise ConfigError(name, f"must be one of {', '.join(choices)} (got {value!r})")
        for check in checks:
            problem = check.problem(value)
            if problem is not None:
                raise ConfigError(name, problem)


def require(cond: bool, name: str, problem: str) -> None:
    """A check across fields: raise ConfigError(name, problem) unless ``cond``."""
    if not cond:
        raise ConfigError(name, problem)
