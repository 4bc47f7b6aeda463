"""Whole-training-state checkpoints in one ``.npz`` file, written atomically, loaded without
executing code (``allow_pickle=False``).

Contents: every leaf of the agent state (networks, targets, optimiser states, multiplier, step
counter) under ``agent/<path>``, the filled part of the replay buffer under ``buffer/<column>``,
loop arrays under ``loop/<name>``, and a JSON header (``__meta__``: format version, algorithm,
env, shapes, loop counters). Randomness needs no stored state: every key and numpy generator is
derived from the run seed and the step or episode index.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import jax
import numpy as np

from algd.errors import CheckpointError, WriteError

# 2: every critic member's weights and every first layer's state / action rows are separate
# parameters (format 1 stacked them). 3: the replay buffer stores two end-of-episode flags
# (reward_done, cost_done) instead of terminated. 4: the training state is a typed pytree
# (TrainState), critic members are structured parameters (members_j/...). Older formats are
# refused with the reason.
FORMAT_VERSION = 4
_OLD_FORMATS = {
    1: "stacked critic weights",
    2: "one end-of-episode flag in the replay buffer",
    3: "critic parameters under flat per-member names and a dict training state",
}
CHECKPOINT_NAME = "checkpoint.npz"
# A group's seeds save in two phases: every seed's checkpoint under this name, then the renames
# (see settle_checkpoints).
CHECKPOINT_NEXT = "checkpoint.next.npz"


def flatten_state(tree: Any) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def unflatten_state(template: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    """Fill ``template``'s structure from ``arrays``; shapes and dtypes must match exactly."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = []
    for path, leaf in paths:
        name = jax.tree_util.keystr(path)
        if name not in arrays:
            raise CheckpointError(f"checkpoint {where} does not match this run: no entry {name}")
        value = arrays[name]
        ref = np.asarray(leaf)
        if value.shape != ref.shape or value.dtype != ref.dtype:
            raise CheckpointError(
                f"checkpoint {where} does not match this run: {name} has shape {value.shape} "
                f"{value.dtype}, expected {ref.shape} {ref.dtype}"
            )
        leaves.append(jax.numpy.asarray(value))
    extra = set(arrays) - {jax.tree_util.keystr(p) for p, _ in paths}
    if extra:
        raise CheckpointError(
            f"checkpoint {where} does not match this run: unexpected entry {sorted(extra)[0]}"
        )
    return jax.tree_util.tree_unflatten(treedef, leaves)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Stage ``write(file)`` in a hidden sibling, fsync, rename over ``path``, fsync the folder:
    a reader (or a resumed run) sees the old or the new file, never a part."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        kept = f"; the previous {path.name} is intact" if path.exists() else ""
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}{kept}") from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    path: Path,
    agent_state: Any,
    buffer: dict[str, np.ndarray],
    loop_arrays: dict[str, np.ndarray],
    meta: dict[str, Any],
) -> None:
    arrays: dict[str, np.ndarray] = {}
    arrays.update({f"agent/{k}": v for k, v in flatten_state(agent_state).items()})
    arrays.update({f"buffer/{k}": v for k, v in buffer.items()})
    arrays.update({f"loop/{k}": np.asarray(v) for k, v in loop_arrays.items()})
    header = {**meta, "format_version": FORMAT_VERSION}
    arrays["__meta__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    atomic_write(path, lambda f: write_npz(f, arrays))


def write_npz(f: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez``'s format (an uncompressed zip of ``.npy`` members), with the zip file closed
    on every path, so a failed write (a full disk) raises one OSError and leaves nothing open."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


POLICY_FORMAT = "algd-policy"  # the header's "format" in an exported policy file (algd.policy)


def read_checkpoint(
    path: Path, meta_only: bool = False
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """-> (meta, arrays) (no arrays with ``meta_only``). Raises CheckpointError for missing,
    truncated or corrupt files."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            names = ["__meta__"] if meta_only else data.files
            arrays = {k: data[k] for k in names}
        meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(exc).__name__})"
        ) from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if isinstance(meta, dict) and meta.get("format") == POLICY_FORMAT:
        raise CheckpointError(
            f"{path} is an exported policy file (algd export), not a run's checkpoint; "
            "algd.load_policy reads it"
        )
    if version in _OLD_FORMATS:
        raise CheckpointError(
            f"checkpoint {path} is in format {version} ({_OLD_FORMATS[version]}), written by an "
            f"older algd; this version reads format {FORMAT_VERSION}: train the run again"
        )
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has an unknown format version")
    return meta, arrays


def split_arrays(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) + 1 :]: v for k, v in arrays.items() if k.startswith(prefix + "/")}


def check_meta(meta: dict[str, Any], expected: dict[str, Any], path: Path) -> None:
    """The header must hold ``expected``'s values; of its "settings" (the run's config, where
    the header has them), each one the running config also has must be the same."""
    for key, value in expected.items():
        if key == "settings":
            check_settings(meta.get(key), value, path)
        elif meta.get(key) != value:
            raise CheckpointError(
                f"checkpoint {path} does not match this run: {key} is {meta.get(key)!r}, "
                f"expected {value!r}"
            )


def check_settings(saved: Any, settings: dict[str, Any], path: Path) -> None:
    """A run continues with the config it began with: a setting of the checkpoint's that the
    run's config.json now gives another value (an edited file) stops it. A checkpoint from
    before settings were recorded, and settings added since, pass."""
    for key, value in (saved if isinstance(saved, dict) else {}).items():
        if key in settings and settings[key] != value:
            raise CheckpointError(
                f"checkpoint {path} does not match this run: it was written with {key} = "
                f"{value!r}, and config.json sets {settings[key]!r} (an edited config.json, or "
                "another run's file; a new setting needs a new run)"
            )


@dataclass(frozen=True)
class Checkpoint:
    """A run's checkpoint, read: its header, the agent state, and the buffer and loop arrays."""

    meta: dict[str, Any]
    state: Any
    buffer: dict[str, np.ndarray]
    loop: dict[str, np.ndarray]


def load_checkpoint(path: Path, template: Any, expected: dict[str, Any]) -> Checkpoint:
    """The one checkpoint reader (training, evaluation, the API): the header must match
    ``expected`` and the agent state ``template``'s structure, shapes and dtypes."""
    meta, arrays = read_checkpoint(path)
    check_meta(meta, expected, path)
    state = unflatten_state(template, split_arrays(arrays, "agent"), str(path))
    return Checkpoint(meta, state, split_arrays(arrays, "buffer"), split_arrays(arrays, "loop"))


def checkpoint_step(path: Path) -> int:
    """The environment step a checkpoint was written at."""
    meta, _ = read_checkpoint(path, meta_only=True)
    loop = meta.get("loop")
    return int(loop["env_step"]) if isinstance(loop, dict) else 0


def commit_next(run_dir: Path) -> None:
    """Put a staged group checkpoint in place (an atomic rename)."""
    try:
        os.replace(run_dir / CHECKPOINT_NEXT, run_dir / CHECKPOINT_NAME)
        _fsync_dir(run_dir)
    except OSError as exc:
        raise WriteError(
            f"cannot write {run_dir / CHECKPOINT_NAME}: {exc.strerror or exc}"
        ) from None


def settle_checkpoints(run_dirs: list[Path]) -> None:
    """Bring the seeds of a group stopped while it saved back to one common step. If every seed
    holds its next checkpoint, or has already put it in place, at the newest step, the renames
    are finished (the save had completed its first phase); otherwise the next checkpoints are
    removed and every seed keeps the checkpoint before (the first phase had not completed). A
    seed resumed alone keeps its own next checkpoint (it is complete)."""
    staged = [d for d in run_dirs if (d / CHECKPOINT_NEXT).is_file()]
    if not staged:
        return
    target = max(checkpoint_step(d / CHECKPOINT_NEXT) for d in staged)

    def at_target(d: Path) -> bool:
        path = d / (CHECKPOINT_NEXT if d in staged else CHECKPOINT_NAME)
        return path.is_file() and checkpoint_step(path) == target

    forward = all(at_target(d) for d in run_dirs)
    for d in staged:
        if forward:
            commit_next(d)
        else:
            (d / CHECKPOINT_NEXT).unlink()
