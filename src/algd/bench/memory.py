"""``algd bench-memory``: resident memory over a real training run (it must stay flat).

A background thread samples the process's RSS every ``interval`` seconds while the ordinary
loop runs (acting, updates, evaluations, checkpoints). The replay buffer is allocated in full at
start, so after the first compiles RSS should not grow with the step count.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import replace
from typing import Any

import psutil

from algd.buffer import ReplayBuffer
from algd.presets import preset
from algd.rundir import create
from algd.train import Trainer


def bench_memory(algo: str, env: str, steps: int, interval: float, seed: int) -> dict[str, Any]:
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
    samples: list[tuple[int, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp, create(replace(cfg, run_dir=f"{tmp}/run")) as run:
        run_dir = run.path
        trainer = Trainer(replace(cfg, run_dir=str(run_dir)), run_dir, resume=False, console=False)
        stop = threading.Event()
        t0 = time.perf_counter()

        def sample() -> None:
            while not stop.is_set():
                samples.append(
                    (
                        trainer.loop.env_step,
                        time.perf_counter() - t0,
                        proc.memory_info().rss / 2**20,
                    )
                )
                stop.wait(interval)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            trainer.run()
        finally:
            stop.set()
            thread.join()
    spec = trainer.env.spec
    later = [rss for step, _, rss in samples if step >= steps // 5]
    return {
        "algo": algo,
        "env": env,
        "steps": steps,
        "buffer_bytes": ReplayBuffer.nbytes_for(cfg.buffer_size, spec.obs_dim, spec.act_dim),
        "rss_mb_at_20pct": later[0] if later else None,
        "rss_mb_final": samples[-1][2] if samples else None,
        "rss_mb_max_after_20pct": max(later) if later else None,
        "samples": [
            {"step": s, "t": round(t, 2), "rss_mb": round(r, 1)}
            for s, t, r in samples[:: max(len(samples) // 20, 1)]
        ],
    }
