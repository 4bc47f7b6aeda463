"""Where a grid's groups run (local worker processes or Ray tasks) and how a stop reaches them.

A stop (SIGINT/SIGTERM to ``algd bench``) starts nothing new and passes the signal on to every
running worker, which checkpoints its runs and reports them "stopped"; the command waits for
them, so no process outlives it. A local worker whose parent is gone (even by SIGKILL) stops
the same way by itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from typing import Any

from algd.stop import StopFlag, stop_signals

Group = Callable[[list[str], StopFlag | None], list[dict[str, Any]]]  # bench.grid.run_group
Done = Callable[[int, list[dict[str, Any]]], None]
Failed = Callable[[int, BaseException], None]
POLL_SECONDS = 0.5  # how often the parent looks for a stop while it waits


class WorkerStop(StopFlag):
    """A worker's stop flag: the first SIGINT/SIGTERM it receives, or SIGTERM once the process
    that started it has gone."""

    def __init__(self, parent: int | None = None) -> None:
        self._signum: int | None = None
        self.parent = parent

    @property
    def signum(self) -> int | None:  # type: ignore[override]
        if self._signum is None and self.parent is not None and os.getppid() != self.parent:
            self._signum = int(signal.SIGTERM)
        return self._signum

    @signum.setter
    def signum(self, value: int | None) -> None:
        self._signum = value


def _worker(group: Group, job: list[str], send: Any, parent: int) -> None:
    """A local worker process: one group, its records (or its exception) sent back."""
    with stop_signals(WorkerStop(parent)) as stop:
        try:
            send.send(("ok", group(job, stop)))
        except BaseException as exc:  # noqa: BLE001 - reported by the parent as the group's
            try:
                send.send(("error", exc))
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                send.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))


def run_local(
    group: Group, jobs: list[list[str]], workers: int, done: Done, failed: Failed, stop: StopFlag
) -> list[int]:
    """``group(job)`` for each job in a spawned worker process, at most ``workers`` at once. Returns the
    jobs a stop kept from starting."""
    import multiprocessing
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("spawn")
    waiting = list(range(len(jobs)))
    running: dict[int, tuple[Any, Any]] = {}  # job -> (process, receiving end)
    passed_on = False
    try:
        while waiting or running:
            while waiting and len(running) < workers and stop.signum is None:
                b = waiting.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_worker, args=(group, jobs[b], send, os.getpid()))
                proc.start()
                send.close()
                running[b] = (proc, recv)
            if stop.signum is not None and not passed_on:
                passed_on = True
                for proc, _ in running.values():
                    _signal(proc.pid, stop.signum)
            if not running:
                break
            ends = [r for _, r in running.values()] + [p.sentinel for p, _ in running.values()]
            ready = set(wait(ends, timeout=POLL_SECONDS))
            for b, (proc, recv) in list(running.items()):
                if recv in ready or proc.sentinel in ready:
                    _collect(b, proc, recv, done, failed)
                    del running[b]
    finally:
        for proc, _ in running.values():  # only after an error in this process
            proc.kill()
            proc.join()
    return waiting


def _collect(b: int, proc: Any, recv: Any, done: Done, failed: Failed) -> None:
    try:
        kind, payload = recv.recv()
    except EOFError:
        kind, payload = "error", None
    except Exception as exc:  # noqa: BLE001 - a result or exception that does not unpickle
        kind, payload = "error", RuntimeError(f"the worker's result could not be read ({exc})")
    proc.join()
    if kind == "ok":
        done(b, payload)
    else:
        failed(b, payload or RuntimeError(f"worker process ended with code {proc.exitcode}"))


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has just ended
        os.kill(pid, signum)


def run_ray(
    group: Group,
    jobs: list[list[str]],
    workers: int,
    address: str | None,
    done: Done,
    failed: Failed,
    stop: StopFlag,
) -> list[int]:
    """``group(job)`` for each job as a Ray task, on a cluster at ``address`` or one started here (and
    shut down after). A stop cancels the tasks not started and interrupts the running ones
    (each stops as on SIGINT: its runs checkpoint and report "stopped"). Returns the jobs a
    stop kept from starting."""
    import ray

    started = not ray.is_initialized()
    if started:
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        ray.init(
            address=address,
            num_cpus=None if address else workers,
            include_dashboard=False,
            log_to_driver=False,
        )
        # ray.init installs its own SIGTERM handler (it exits at once): a stop is ours to make.
        for signum, handler in handlers.items():
            if callable(handler) or handler in (signal.SIG_DFL, signal.SIG_IGN):
                with contextlib.suppress(ValueError):  # off the main thread
                    signal.signal(signum, handler)
    remote = ray.remote(num_cpus=1, max_retries=0)(group)
    pending = {remote.remote(job, None): b for b, job in enumerate(jobs)}
    not_started: list[int] = []
    try:
        cancelled = False
        while pending:
            if stop.signum is not None and not cancelled:
                cancelled = True
                for ref in pending:
                    ray.cancel(ref, force=False)
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            for ref in ready:
                b = pending.pop(ref)
                try:
                    done(b, ray.get(ref))
                except ray.exceptions.TaskCancelledError:
                    not_started.append(b)
                except Exception as exc:  # noqa: BLE001 - one failed point must not stop the grid
                    failed(b, exc)
    finally:
        if started:
            ray.shutdown()
    return sorted(not_started)
