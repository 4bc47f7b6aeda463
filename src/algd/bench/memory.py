"""``algd bench-memory``: resident memory over a real training run of a group of seeds (it must
stay flat).

A background thread samples the process's RSS every ``interval`` seconds while the ordinary
loop runs (acting, updates, evaluations, checkpoints). The replay buffers (one per seed) are
allocated in full at start, so after the first compiles RSS should not grow with the step
count. The report gives the bytes per stored transition and, from the measured RSS, the
buffer size per seed that fits a given memory.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from dataclasses import replace
from typing import Any

import psutil

from algd.buffer import nbytes_for
from algd.presets import preset
from algd.rundir import create
from algd.training.offpolicy import OffPolicyLoop


def bench_memory(
    algo: str, env: str, steps: int, interval: float, seed: int, seeds: int = 1
) -> dict[str, Any]:
    cfg = preset(
        "toy",
        algo=algo,
        env=env,
        seed=seed,
        total_steps=steps,
        progress=False,
        eval_every=max(steps // 10, 1),
        checkpoint_every=max(steps // 10, 1),
        log_every=max(steps // 100, 1),
        buffer_size=min(steps, 1_000_000),
    )
    proc = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        cfgs = [replace(cfg, seed=seed + i, run_dir=f"{tmp}/s{seed + i}") for i in range(seeds)]
        for c in cfgs:
            stack.enter_context(create(c))
        rss0 = proc.memory_info().rss / 2**20
        trainer = OffPolicyLoop(cfgs, resume=False, console=False)
        spec = trainer.spec
        samples = _sampled_run(trainer, proc, interval)
    later = [rss for step, _, rss in samples if step >= steps // 5]
    per_transition = nbytes_for(1, spec.obs_dim, spec.act_dim)
    return {
        "algo": algo,
        "env": env,
        "steps": steps,
        "seeds": seeds,
        "bytes_per_transition": per_transition,
        "buffer_bytes_per_seed": nbytes_for(cfg.buffer_size, spec.obs_dim, spec.act_dim),
        "buffer_bytes": seeds * nbytes_for(cfg.buffer_size, spec.obs_dim, spec.act_dim),
        "rss_mb_before_group": rss0,
        "rss_mb_at_20pct": later[0] if later else None,
        "rss_mb_final": samples[-1][2] if samples else None,
        "rss_mb_max_after_20pct": max(later) if later else None,
        "samples": [
            {"step": s, "t": round(t, 2), "rss_mb": round(r, 1)}
            for s, t, r in samples[:: max(len(samples) // 20, 1)]
        ],
    }


def _sampled_run(
    trainer: OffPolicyLoop, proc: psutil.Process, interval: float
) -> list[tuple[int, float, float]]:
    """Run ``trainer`` to its end while a thread samples (env step, seconds, RSS in MiB) every
    ``interval`` seconds."""
    samples: list[tuple[int, float, float]] = []
    stop = threading.Event()
    t0 = time.perf_counter()

    def sample() -> None:
        while not stop.is_set():
            rss = proc.memory_info().rss / 2**20
            samples.append((trainer.env_step, time.perf_counter() - t0, rss))
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        trainer.run()
    finally:
        stop.set()
        thread.join()
    return samples


def buffer_size_that_fits(result: dict[str, Any], memory_gib: float) -> int:
    """The largest buffer size per seed with which the measured group fits ``memory_gib``:
    what the run held besides its buffers (final RSS minus the buffers) stays, the rest is
    shared by the seeds' buffers at ``bytes_per_transition`` each."""
    rest = result["rss_mb_final"] * 2**20 - result["buffer_bytes"]
    free = memory_gib * 2**30 - rest
    return max(int(free // (result["seeds"] * result["bytes_per_transition"])), 0)
