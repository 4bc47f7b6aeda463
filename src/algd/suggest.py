"""'Did you mean' for a misspelt name: the closest of the names that exist, if one is close."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, names: Iterable[str]) -> str | None:
    """The name in ``names`` closest to ``word`` (difflib's ratio of at least 0.6), or None."""
    found = difflib.get_close_matches(word, list(names), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(word: str, names: Iterable[str]) -> str:
    """ " (did you mean 'NAME'?)" for the closest name, "" when none is close."""
    name = closest(word, names)
    return f" (did you mean '{name}'?)" if name else ""
