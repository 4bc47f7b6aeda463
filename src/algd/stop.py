"""SIGINT and SIGTERM as a request to stop: a flag the training loop reads between steps.

The handlers go in before anything is written (the CLI installs them before it imports JAX), so
a signal at any moment ends a run gracefully: before its directory exists nothing is written;
after, the loop stops at the next step boundary and writes a checkpoint that ``--resume`` reads.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """The first stop signal received (None while none has come)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum


@contextmanager
def stop_signals(flag: StopFlag | None = None) -> Iterator[StopFlag]:
    """Route SIGINT/SIGTERM to ``flag`` (a new one when None) inside the block; the previous
    handlers come back after it. Off the main thread (where Python cannot install handlers)
    the flag is returned unrouted."""
    flag = flag if flag is not None else StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.signal(s, flag) for s in SIGNALS}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
