"""``algd bench-speed``: updates/s, env steps/s of the full online loop, single-state action
latency, and FLOPs per gradient step (XLA's cost analysis), for any registered algorithm and a
group of any number of seeds trained together, with the JAX backend and devices it ran on.

Rates are per seed (each seed of a group advances at the group's rate) and for all seeds.
Phases, each timed after a warm-up call so compilation is excluded:
1. updates: the group's compiled UTD update alone (sampling included), on buffers filled by
   the real env;
2. loop: the whole online loop (act, env step, store, UTD update) at the given UTD;
3. latency: median wall time of one single-state action (stochastic and deterministic).

On a virtual machine the host can take CPU time away ("steal"); the share of CPU time stolen
during phases 1 and 2 is reported (``cpu_steal_fraction``, from /proc/stat; null where that
does not exist), so that a slow figure can be told apart from a slow program.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from algd.agents import default_config, is_on_policy
from algd.buffer import sample_group
from algd.config import apply_overrides
from algd.errors import AlgdError
from algd.rundir import create
from algd.training import make_loop
from algd.training.loop import GroupLoop
from algd.training.offpolicy import OffPolicyLoop
from algd.training.onpolicy import OnPolicyLoop


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


def flops_per_update(trainer: OffPolicyLoop) -> float:
    """FLOPs of one seed's gradient step by XLA's cost analysis."""
    agent, cfg = trainer.agent, trainer.cfg
    buffers = trainer.buffers
    if buffers.on_device:
        size = jnp.int32(buffers.size)
        batches = sample_group(buffers.columns, size, (1, cfg.batch_size), trainer.k_sample)
    else:
        rngs = [np.random.default_rng(i) for i in range(buffers.seeds)]
        batches = buffers.sample_host(rngs, (1, cfg.batch_size))
    batch = jax.tree_util.tree_map(lambda x: jnp.asarray(x[0, 0]), batches)
    index = jnp.int32(0)
    state = trainer.member_state(0)
    compiled = jax.jit(agent.grad_step).lower(state, batch, trainer.k_update[0], index).compile()
    cost: Any = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def bench_speed(
    algo: str,
    env: str,
    utd: int,
    batch_size: int,
    seconds: float,
    seed: int,
    seeds: int = 1,
    sets: dict[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """One group of ``seeds`` seeds (seed, seed + 1, ...) of the algorithm's defaults on
    ``env``, with ``sets`` (dotted keys, ``agent.mc_samples``) applied: updates/s and env
    steps/s per seed and in all, action latency, FLOPs."""
    if utd < 1 or batch_size < 1 or seconds <= 0 or seeds < 1:
        raise AlgdError(
            "bench-speed: --utd, --batch-size and --seeds must be >= 1 and --seconds > 0"
        )
    on_policy = is_on_policy(algo)
    fill = 0 if on_policy else max(2 * batch_size, 2000)
    cfg = default_config(
        algo,
        env=env,
        seed=seed,
        utd=utd,
        batch_size=batch_size,
        total_steps=10**9,
        warmup_steps=fill,
        warmup_actions="uniform",
        learning_starts=min(batch_size, 1000),
        update_cap=None,  # the steady state: every loop step runs its UTD gradient steps
        buffer_size=100_000,
        eval_every=0,
        checkpoint_every=0,
        log_every=10**9,
        progress=False,
        **overrides,
    )
    cfg = apply_overrides(cfg, sets) if sets else cfg
    with tempfile.TemporaryDirectory() as tmp:
        cfgs = [replace(cfg, seed=seed + i, run_dir=f"{tmp}/s{seed + i}") for i in range(seeds)]
        with contextlib.ExitStack() as stack:
            for c in cfgs:
                stack.enter_context(create(c))
            trainer = make_loop(cfgs, resume=False, console=False)
            trainer.open_logs()
            try:
                if isinstance(trainer, OnPolicyLoop):
                    out = _measure_on_policy(trainer, seconds, algo, env)
                elif isinstance(trainer, OffPolicyLoop):
                    out = _measure(trainer, fill, seconds, algo, env, utd, batch_size)
                else:
                    raise AlgdError(f"bench-speed: {algo} runs in no known loop")
                return {**out, "sets": dict(sets or {})}
            finally:
                trainer.close_logs()


def _measure(
    trainer: OffPolicyLoop,
    fill: int,
    seconds: float,
    algo: str,
    env: str,
    utd: int,
    batch_size: int,
) -> dict[str, Any]:
    for _ in range(fill):  # warm-up: the real env, uniform actions, no updates
        trainer.step()
    box: dict[str, Any] = {"s": trainer.state, "t": trainer.env_step}

    def update() -> None:
        box["s"], m = trainer.update(box["s"], box["t"])
        box["t"] += 1
        jax.block_until_ready(m)

    figures = _phases(trainer, update, box, utd, seconds)
    flops = flops_per_update(trainer)
    return {
        "algo": algo,
        "env": env,
        "utd": utd,
        "batch_size": batch_size,
        **figures,
        "flops_per_update": flops,
        "gflops_per_s": flops * figures["updates_per_s_all_seeds"] / 1e9,
        "replay": "device" if trainer.buffers.on_device else "host",
    }


def _phases(
    trainer: GroupLoop, update: Any, box: dict[str, Any], steps_per_call: int, seconds: float
) -> dict[str, Any]:
    """The figures every loop shares: ``update()`` (one compiled update call of
    ``steps_per_call`` gradient steps on ``box["s"]``) alone, after a warm-up call; then the
    whole loop (``trainer.step``) from the updated state; then the action latency."""
    seeds = len(trainer.members)
    update()
    c0 = _cpu_jiffies()
    n_upd, t_upd = _timed(update, seconds)
    c1 = _cpu_jiffies()
    trainer.state = box["s"]
    trainer.step()  # compiles the act path
    c2 = _cpu_jiffies()
    updates_before = trainer.members[0].loop.updates
    n_loop, t_loop = _timed(trainer.step, seconds)
    loop_updates = trainer.members[0].loop.updates - updates_before
    c3 = _cpu_jiffies()
    per_seed_updates = n_upd * steps_per_call / t_upd
    return {
        "seeds": seeds,
        "updates_per_s": per_seed_updates,
        "updates_per_s_all_seeds": per_seed_updates * seeds,
        "update_call_s": t_upd / n_upd,
        "env_steps_per_s": n_loop / t_loop,
        "env_steps_per_s_all_seeds": n_loop * seeds / t_loop,
        "loop_updates_per_s": loop_updates / t_loop,
        **_latency(trainer),
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "cpu_steal_fraction": {
            "updates": _steal_fraction(c0, c1),
            "loop": _steal_fraction(c2, c3),
        },
    }


def _latency(trainer: GroupLoop) -> dict[str, float]:
    """Median wall time of one single-state action, stochastic and deterministic (us)."""
    m0 = trainer.members[0]
    state = trainer.member_state(0)
    noise = m0.act_noise
    assert noise is not None
    latency = {}
    for det in (False, True):
        trainer.agent.act(state, m0.obs, noise(0), deterministic=det)
        times = []
        for i in range(2000):  # includes fetching the step's noise, as the loop does
            t0 = time.perf_counter()
            trainer.agent.act(state, m0.obs, noise(i), deterministic=det)
            times.append(time.perf_counter() - t0)
        key = "action_latency_deterministic_us" if det else "action_latency_us"
        latency[key] = float(np.median(times)) * 1e6
    return latency


def _measure_on_policy(
    trainer: OnPolicyLoop, seconds: float, algo: str, env: str
) -> dict[str, Any]:
    """The on-policy loop: env steps/s of the whole loop (collection and the updates at each
    rollout's end), and the update on a full rollout alone (gradient steps/s)."""
    agent = trainer.agent
    cap = agent.capacity
    while trainer.buffers.size < cap - 1:  # one rollout, short of its update
        trainer.step()
    rollouts, t = trainer.buffers.columns, trainer.env_step
    box: dict[str, Any] = {"s": trainer.state}

    def update() -> None:
        box["s"], m = agent.update_group(
            box["s"], rollouts, np.int32(cap), trainer.k_update, np.int32(t)
        )
        jax.block_until_ready(m)

    # The loop's first step closes the rollout: it compiles nothing new.
    figures = _phases(trainer, update, box, agent.grad_steps(cap), seconds)
    return {
        "algo": algo,
        "env": env,
        "rollout": cap,
        "grad_steps_per_rollout": agent.grad_steps(cap),
        "minibatch": min(trainer.cfg.agent.ppo.minibatch, cap),
        **figures,
        "rollout_update_s": figures["update_call_s"],
    }
