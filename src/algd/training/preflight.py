"""What is checked before a run directory exists: the env (one reset and step) and whether the
group's training state and buffers fit this machine's memory."""

from __future__ import annotations

import math
import os
from pathlib import Path

import jax
import numpy as np

from algd.agents import build_agent
from algd.agents.onpolicy import OnPolicyAgent
from algd.buffer import nbytes_for, rollout_nbytes
from algd.config import TrainConfig
from algd.envs import EnvSpec, env_for
from algd.errors import AlgdError
from algd.evaluate import episode_seed
from algd.rundir import check_claimable
from algd.training.member import TRAIN_STREAM


def probe_env(cfg: TrainConfig) -> EnvSpec:
    """Make the env, reset it and take one step: unknown ids, missing cost signals and
    non-finite values surface as EnvError before a run directory exists."""
    env = env_for(cfg)
    try:
        env.reset(episode_seed(cfg.seed, TRAIN_STREAM, 0))
        low, high = np.asarray(env.spec.act_low), np.asarray(env.spec.act_high)
        env.step((low + high) / 2)
        return env.spec
    finally:
        env.close()


def physical_memory_bytes() -> int:
    """This machine's memory, or the control group's limit where that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def memory_estimate(cfg: TrainConfig, spec: EnvSpec, seeds: int = 1) -> dict[str, int]:
    """A lower bound of the bytes a group of ``seeds`` runs holds: the training states
    (networks, targets, optimiser moments; shapes only, nothing is allocated), the replay
    buffers, and one batch's activations in the widest critic layer, each times ``seeds``."""
    agent = build_agent(cfg, spec)
    shapes = jax.eval_shape(agent.init, jax.random.PRNGKey(0))
    state = sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(shapes))
    if isinstance(agent, OnPolicyAgent):
        buffer = rollout_nbytes(agent.capacity, spec.obs_dim, spec.act_dim)
    else:
        buffer = nbytes_for(cfg.buffer_size, spec.obs_dim, spec.act_dim)
    members = 2 + cfg.agent.critics.cost_ensemble
    activations = cfg.batch_size * max(cfg.agent.critics.critic_hidden) * members * 4
    return {"state": seeds * state, "buffer": seeds * buffer, "activations": seeds * activations}


def check_memory(cfg: TrainConfig, spec: EnvSpec, seeds: int = 1) -> None:
    """Refuse, with what to reduce, a group that cannot fit this machine's memory."""
    parts = memory_estimate(cfg, spec, seeds)
    need, have = sum(parts.values()), physical_memory_bytes()
    if need > have:
        gib = 2.0**30
        who = f"a group of {seeds} seeds of this config" if seeds > 1 else "this config"
        raise AlgdError(
            f"{who} needs at least {need / gib:.1f} GiB of memory (training state "
            f"{parts['state'] / gib:.1f} GiB, replay buffer {parts['buffer'] / gib:.1f} GiB) but "
            f"this machine has {have / gib:.1f} GiB; reduce the network widths, the ensemble or "
            "--buffer-size" + (" or the number of seeds" if seeds > 1 else "")
        )


def check_new(cfgs: list[TrainConfig]) -> None:
    """Everything that can be checked before a run directory exists: the paths, the env (one
    reset and step), the memory of the whole group."""
    for c in cfgs:
        check_claimable(c)
    spec = probe_env(cfgs[0])
    check_memory(cfgs[0], spec, seeds=len(cfgs))
