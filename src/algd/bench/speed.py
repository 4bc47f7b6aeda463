"""``algd bench-speed``: updates/s, env steps/s of the full online loop, single-state action
latency, and FLOPs per gradient step (XLA's cost analysis), for any registered algorithm,
with the JAX backend and devices it ran on.

Phases, each timed after a warm-up call so compilation is excluded:
1. updates: the fused UTD update alone, on batches from a buffer filled by the real env;
2. loop: the whole online loop (act, env step, store, fused UTD update) at the given UTD;
3. latency: median wall time of one single-state action (stochastic and deterministic).

On a virtual machine the host can take CPU time away ("steal"); the share of CPU time stolen
during phases 1 and 2 is reported (``cpu_steal_fraction``, from /proc/stat; null where that
does not exist), so that a slow figure can be told apart from a slow program.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from algd.agents import default_config
from algd.errors import AlgdError
from algd.rundir import create
from algd.train import RunLogs, Trainer


def _cpu_jiffies() -> tuple[int, int] | None:
    """(stolen, total) CPU time since boot from /proc/stat, or None where it is unavailable."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        values = [int(v) for v in fields[1:9]]
    except (OSError, ValueError):
        return None
    if not fields or fields[0] != "cpu" or len(values) < 8:
        return None
    return values[7], sum(values)


def _steal_fraction(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def _timed(fn: Any, seconds: float, min_calls: int = 3) -> tuple[int, float]:
    calls, t0 = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - t0 < seconds:
        fn()
        calls += 1
    return calls, time.perf_counter() - t0


def flops_per_update(trainer: Trainer) -> float:
    """FLOPs of one gradient step by XLA's cost analysis."""
    agent, cfg = trainer.agent, trainer.cfg
    rng = np.random.default_rng(0)
    batch = jax.tree_util.tree_map(lambda x: x[0], trainer.buffer.sample(rng, (1, cfg.batch_size)))
    index = jnp.int32(0)
    compiled = (
        jax.jit(agent.grad_step).lower(trainer.state, batch, trainer.k_update, index).compile()
    )
    cost: Any = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def bench_speed(
    algo: str, env: str, utd: int, batch_size: int, seconds: float, seed: int
) -> dict[str, Any]:
    if utd < 1 or batch_size < 1 or seconds <= 0:
        raise AlgdError("bench-speed: --utd and --batch-size must be >= 1 and --seconds > 0")
    fill = max(2 * batch_size, 2000)
    cfg = default_config(
        algo,
        env=env,
        seed=seed,
        utd=utd,
        batch_size=batch_size,
        total_steps=10**9,
        warmup_steps=fill,
        warmup_actions="uniform",
        learning_starts=batch_size,
        update_cap=None,  # the steady state: every loop step runs its UTD gradient steps
        buffer_size=100_000,
        eval_every=0,
        checkpoint_every=0,
        log_every=10**9,
        progress=False,
    )
    with tempfile.TemporaryDirectory() as tmp, create(replace(cfg, run_dir=f"{tmp}/run")) as run:
        run_dir = run.path
        trainer = Trainer(replace(cfg, run_dir=str(run_dir)), run_dir, resume=False, console=False)
        logs = RunLogs(run_dir, cfg.total_steps, 0, False)
        try:
            for _ in range(fill):  # warm-up: the real env, uniform actions, no updates
                trainer.step(logs)
            rng = np.random.default_rng(seed)
            state = {"s": trainer.state}

            def update() -> None:
                batches = trainer.buffer.sample(rng, (utd, batch_size))
                state["s"], m = trainer.agent.update(state["s"], batches, trainer.k_update)
                jax.block_until_ready(m)

            update()
            c0 = _cpu_jiffies()
            n_upd, t_upd = _timed(update, seconds)
            c1 = _cpu_jiffies()
            trainer.state = state["s"]

            trainer.step(logs)  # compiles the act path
            c2 = _cpu_jiffies()
            updates_before = trainer.loop.updates
            n_loop, t_loop = _timed(lambda: trainer.step(logs), seconds)
            loop_updates = trainer.loop.updates - updates_before
            c3 = _cpu_jiffies()

            obs = trainer.obs
            latency = {}
            for det in (False, True):
                trainer.agent.act(trainer.state, obs, trainer.act_noise(0), deterministic=det)
                times = []
                for i in range(2000):  # includes fetching the step's noise, as the loop does
                    t0 = time.perf_counter()
                    trainer.agent.act(trainer.state, obs, trainer.act_noise(i), deterministic=det)
                    times.append(time.perf_counter() - t0)
                latency["deterministic" if det else "stochastic"] = float(np.median(times)) * 1e6
            flops = flops_per_update(trainer)
        finally:
            logs.close()
    return {
        "algo": algo,
        "env": env,
        "utd": utd,
        "batch_size": batch_size,
        "updates_per_s": n_upd * utd / t_upd,
        "env_steps_per_s": n_loop / t_loop,
        "loop_updates_per_s": loop_updates / t_loop,
        "action_latency_us": latency["stochastic"],
        "action_latency_deterministic_us": latency["deterministic"],
        "flops_per_update": flops,
        "gflops_per_s": flops * n_upd * utd / t_upd / 1e9,
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "cpu_steal_fraction": {
            "updates": _steal_fraction(c0, c1),
            "loop": _steal_fraction(c2, c3),
        },
    }
