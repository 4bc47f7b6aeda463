"""A trained policy as an object, and the self-contained policy file.

>>> from algd import load_policy
>>> policy = load_policy("runs/pb1-algd")          # a run directory, or an exported file
>>> action = policy.act(obs)                        # one observation (obs_dim,) -> (act_dim,)
>>> actions = policy.act(batch, deterministic=False)  # (B, obs_dim) -> (B, act_dim), seeded

Loading reads only the actor's weights (not the critics, optimiser states or replay buffer).
``algd export RUN_DIR OUT`` writes a policy file: an ``.npz`` (no pickle) holding the actor's
weights and a JSON header with the format and its version, the algorithm, the env id, the
config needed to act (the run's config), and the observation and action spaces.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import jax
import numpy as np

from algd.agents import build_agent
from algd.agents.base import Agent
from algd.checkpoint import (
    CHECKPOINT_NAME,
    FORMAT_VERSION,
    POLICY_FORMAT,
    atomic_write,
    flatten_state,
    read_checkpoint,
    unflatten_state,
    write_npz,
)
from algd.config import TrainConfig, run_config_from_dict, to_dict
from algd.envs.base import EnvSpec
from algd.errors import AlgdError, CheckpointError, RunDirError
from algd.outputs import check_file

POLICY_VERSION = 1
ACTOR = "agent/.actor"


class Policy:
    """A trained policy: ``act(obs, deterministic=True)`` on one observation or a batch (numpy
    in, numpy out); ``observation_space`` and ``action_space`` are Gymnasium Boxes. Stochastic actions, and DDPM's deterministic ones (which inject noise, as
    the reference does), draw their noise from a numpy generator seeded with ``seed``."""

    def __init__(
        self, agent: Agent, actor: Any, cfg: TrainConfig, spec: EnvSpec, seed: int = 0
    ) -> None:
        self.agent, self.actor, self.cfg, self.spec = agent, actor, cfg, spec
        self.algo, self.env_id = cfg.algo, spec.id
        self.obs_dim, self.act_dim = spec.obs_dim, spec.act_dim
        self.action_low = np.asarray(spec.act_low, np.float32)
        self.action_high = np.asarray(spec.act_high, np.float32)
        from gymnasium.spaces import Box

        #: Gymnasium spaces of what ``act`` takes and returns (one observation, one action).
        self.observation_space = Box(-np.inf, np.inf, (spec.obs_dim,), np.float32)
        self.action_space = Box(self.action_low, self.action_high, dtype=np.float32)
        self.seed(seed)

    def seed(self, seed: int) -> None:
        """Restart the noise stream."""
        self._rng = np.random.default_rng(seed)

    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """Observation(s) (obs_dim,) or (B, obs_dim) -> action(s) (act_dim,) or (B, act_dim)
        inside the action box."""
        x = np.asarray(obs, np.float32)
        single = x.ndim == 1
        if x.ndim not in (1, 2) or x.shape[-1] != self.obs_dim:
            raise AlgdError(
                f"policy for {self.env_id} takes observations of shape ({self.obs_dim},) or "
                f"(batch, {self.obs_dim}); got {x.shape}"
            )
        batch = x[None] if single else x
        noise = None
        if not deterministic or self.agent.deterministic_needs_noise():
            shape = (batch.shape[0], *self.agent.noise_shape())
            noise = self._rng.standard_normal(shape).astype(np.float32)
        out = np.asarray(self.agent.act_batch(self.actor, batch, noise, deterministic))
        return out[0] if single else out

    __call__ = act


def _actor_template(agent: Agent) -> Any:
    """The actor's parameter structure, shapes and dtypes (nothing is computed)."""
    return jax.eval_shape(agent.init, jax.random.PRNGKey(0)).actor


def _read_actor(path: Path, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON header and the arrays under ``prefix`` of an .npz (only those are read), named
    as the actor's own parameter paths."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(data["__meta__"].tobytes().decode())
            arrays = {k[len(prefix) :]: data[k] for k in data.files if k.startswith(prefix + "[")}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is truncated or corrupt ({type(exc).__name__})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is truncated or corrupt (no header)")
    return meta, arrays


def _build(cfg: TrainConfig, spec: EnvSpec, arrays: dict[str, np.ndarray], where: str, seed: int):
    agent = build_agent(cfg, spec)
    template = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), _actor_template(agent))
    actor = unflatten_state(template, arrays, where)
    return Policy(agent, actor, cfg, spec, seed)


def load_policy(path: str | Path, seed: int = 0) -> Policy:
    """A run directory's latest policy, or an exported policy file (``algd export``).

    >>> policy = algd.load_policy("runs/my-run")
    >>> action = policy.act(obs)  # deterministic; act(obs, deterministic=False) samples
    >>> policy.action_space.contains(action)
    True

    ``seed`` seeds the noise of sampled actions (``policy.seed(s)`` restarts it)."""
    p = Path(path)
    if p.is_dir():
        return _from_run(p, seed)
    if not p.is_file():
        raise RunDirError(f"{p} is neither a run directory nor a policy file")
    meta = _read_actor(p, "")[0] if p.suffix == ".npz" else {}
    if meta.get("format") != POLICY_FORMAT:
        raise CheckpointError(f"{p} is not an algd policy file (write one with algd export)")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > POLICY_VERSION:
        raise CheckpointError(
            f"policy file {p} has format version {version!r}; this algd reads version "
            f"{POLICY_VERSION} and older: update algd"
        )
    meta, arrays = _read_actor(p, "actor")
    try:
        cfg = run_config_from_dict(meta["config"])
        spec = EnvSpec(
            **{
                **meta["spec"],
                "act_low": tuple(meta["spec"]["act_low"]),
                "act_high": tuple(meta["spec"]["act_high"]),
            }
        )
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"policy file {p} has a damaged header ({exc})") from None
    return _build(cfg, spec, arrays, str(p), seed)


def _from_run(run_dir: Path, seed: int) -> Policy:
    from algd.envs import env_for
    from algd.rundir import is_group_dir, load_run_config

    if is_group_dir(run_dir):
        raise RunDirError(
            f"{run_dir} is a group of seeds; load one seed's run directory ({run_dir}/s<seed>)"
        )
    cfg = load_run_config(run_dir)
    ckpt = run_dir / CHECKPOINT_NAME
    meta, _ = read_checkpoint(ckpt, meta_only=True)  # format checks
    if meta.get("algo") != cfg.algo:
        raise CheckpointError(
            f"checkpoint {ckpt} does not match this run: algo {meta.get('algo')!r}"
        )
    env = env_for(cfg)
    spec = env.spec
    env.close()
    _, arrays = _read_actor(ckpt, ACTOR)
    return _build(cfg, spec, arrays, str(ckpt), seed)


def export_policy(run_dir: str | Path, out: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Write run ``run_dir``'s policy to the file ``out`` (atomically); returns its path, size
    and header."""
    out_path = Path(out)
    if out_path.suffix != ".npz":
        raise AlgdError(f"{out_path}: a policy file is an .npz (name it {out_path.name}.npz)")
    check_file(out_path, overwrite, "policy file")
    if Path(run_dir).is_file():
        raise AlgdError(
            f"{run_dir} is a file; algd export reads a run directory (an exported policy file "
            "is already self-contained: copy it)"
        )
    policy = load_policy(run_dir)
    spec = policy.spec
    ckpt_meta, _ = read_checkpoint(Path(run_dir) / CHECKPOINT_NAME, meta_only=True)
    header = {
        "format": POLICY_FORMAT,
        "format_version": POLICY_VERSION,
        "checkpoint_format": FORMAT_VERSION,
        "algo": policy.algo,
        "env": spec.id,
        "env_steps": ckpt_meta.get("loop", {}).get("env_step"),
        "observation_space": {"shape": [spec.obs_dim], "dtype": "float32"},
        "action_space": {
            "shape": [spec.act_dim],
            "low": [float(v) for v in spec.act_low],
            "high": [float(v) for v in spec.act_high],
        },
        "spec": asdict(spec),
        "config": to_dict(policy.cfg),
    }
    arrays = {f"actor{k}": v for k, v in flatten_state(jax.device_get(policy.actor)).items()}
    arrays["__meta__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    atomic_write(out_path, lambda f: write_npz(f, arrays))
    return {
        "out": str(out_path),
        "bytes": out_path.stat().st_size,
        "algo": policy.algo,
        "env": spec.id,
        "env_steps": header["env_steps"],
    }
