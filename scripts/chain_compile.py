"""Compile time and run time of one ALGD update (the UTD gradient steps of one environment
step) in the source tree on PYTHONPATH, for comparing two trees side by side:

    for src in OLD/src src OLD/src src; do
        PYTHONPATH=$src python scripts/chain_compile.py ToyRing-v0 ve
    done

Prints one JSON line: seconds to compile the update, its median run time over 30 calls, and
two of its outputs (the actor loss, the sum of the deterministic actions at the batch's first
states) that show whether the trees compute the same numbers.
"""

from __future__ import annotations

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from algd.agents import build_agent
from algd.buffer import Batch
from algd.envs import env_for
from algd.presets import preset


def main(env: str, process: str) -> dict[str, object]:
    overrides = {"env": env, "agent.diffusion": process}  # the flat name reads in every tree
    cfg = preset("toy" if env == "ToyRing-v0" else "cpu", algo="algd", **overrides)
    spec = env_for(cfg).spec
    agent = build_agent(cfg, spec)
    state = agent.init(jax.random.PRNGKey(0))
    rows, rng = (cfg.utd, cfg.batch_size), np.random.default_rng(0)

    def normal(*shape: int) -> jax.Array:
        return jnp.asarray(rng.standard_normal(shape), jnp.float32)

    batch = Batch(
        normal(*rows, spec.obs_dim),
        jnp.tanh(normal(*rows, spec.act_dim)),
        normal(*rows),
        jnp.abs(normal(*rows)),
        normal(*rows, spec.obs_dim),
        jnp.zeros(rows),
        jnp.zeros(rows),
    )
    steps = getattr(agent, "update_steps", None) or agent._update  # older trees
    fn = jax.jit(steps)
    t0 = time.perf_counter()
    compiled = fn.lower(state, batch, jax.random.PRNGKey(1)).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(state, batch, jax.random.PRNGKey(1)))
    times = []
    for i in range(30):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(state, batch, jax.random.PRNGKey(i)))
        times.append(time.perf_counter() - t0)
    new_state, metrics = compiled(state, batch, jax.random.PRNGKey(7))
    act = jax.jit(lambda p, o: agent.policy_from_noise(p, o, None, True))
    return {
        "env": env,
        "process": process,
        "compile_s": round(compile_s, 2),
        "update_ms": round(1000 * float(np.median(times)), 2),
        "loss_actor": float(metrics["loss/actor"]),
        "action_sum": float(np.asarray(act(new_state.actor, batch.obs[0])).sum()),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "ve")))
