"""Run directories: the one module that creates, claims, locks, clears and reads them.

Promises (docs/reliability.md lists the tests of each):

- Nothing outside a run directory is ever deleted, and inside one only the files a run writes
  (:data:`RUN_ENTRIES`). A path that holds anything else is refused, ``--overwrite`` or not; so
  are the current directory, its parents, the home directory and the file-system root.
- A run or a resume holds an exclusive lock on its directory (``flock`` on the directory itself)
  for its whole life: a second process on the same directory exits at once with "in use".
- A new run claims its path with one ``mkdir`` (or by locking an empty directory); whatever it
  created is removed again if it fails before ``config.json`` is in place.
- A run directory whose run stopped before its first checkpoint can be started again, by
  ``--resume`` (from step 0, with the saved config) or by a plain re-run, without ``--overwrite``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path
from types import TracebackType

from algd.checkpoint import CHECKPOINT_NAME, CHECKPOINT_NEXT, atomic_write_bytes
from algd.config import TrainConfig, run_config_from_dict, to_json
from algd.errors import ConfigError, RunDirError

CONFIG_NAME = "config.json"
SUMMARY_NAME = "summary.json"
FAILURE_NAME = "failure.json"  # a seed that diverged: why, and where (in place of a summary)
LOG_FILES = ("episodes.csv", "eval.csv", "metrics.csv", "timing.csv")
# A run's own files name its directory relative to itself, so that they read the same on every
# machine and after a move (load_run_config gives the directory where the run is now).
HERE = "."
# Everything a run (and `algd landscape`'s default output) writes into its directory.
RUN_ENTRIES = frozenset(
    {
        CONFIG_NAME,
        SUMMARY_NAME,
        FAILURE_NAME,
        CHECKPOINT_NAME,
        CHECKPOINT_NEXT,
        *LOG_FILES,
        "tb",
        "wandb",
        "landscape",
        "plots",
    }
)
_STAGING = re.compile(r"^\.(?P<name>.+)\.tmp-\d+$")  # checkpoint.atomic_write's staging files
# Room kept under the path-length limit for the longest file name a run writes inside.
_INNER_NAME_ROOM = 64


def default_run_dir(cfg: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.algo}_{_name(cfg.env)}_s{cfg.seed}_{stamp}"


def _name(env_id: str) -> str:
    """An env id as part of a folder name (``module:EnvId`` -> ``EnvId``)."""
    return env_id.rpartition(":")[2]


def _is_run_entry(name: str) -> bool:
    m = _STAGING.match(name)
    return name in RUN_ENTRIES or (m is not None and m.group("name") in RUN_ENTRIES)


def foreign_entries(path: Path) -> list[str]:
    """Entries of directory ``path`` that no run writes (sorted)."""
    return sorted(e.name for e in os.scandir(path) if not _is_run_entry(e.name))


def _fail(path: Path, exc: OSError, doing: str) -> RunDirError:
    reason = exc.strerror or type(exc).__name__
    return RunDirError(f"cannot {doing} run directory {path}: {reason}")


def _show(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 120 else f"{text[:60]}...{text[-40:]}"


def _check_lengths(path: Path) -> None:
    absolute = Path(os.path.abspath(path))  # no file-system access: works for any length
    anchor = Path("/")
    for p in absolute.parents:
        try:
            if p.is_dir():
                anchor = p
                break
        except OSError:
            continue
    try:
        name_max = os.pathconf(anchor, "PC_NAME_MAX")
        path_max = os.pathconf(anchor, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    for part in absolute.parts[1:]:
        if len(os.fsencode(part)) > name_max:
            raise RunDirError(
                f"run directory {_show(path)}: the name '{part[:40]}...' is longer than the file "
                f"system allows ({name_max} bytes)"
            )
    size = len(os.fsencode(str(absolute)))
    if size + _INNER_NAME_ROOM > path_max:
        raise RunDirError(
            f"run directory {_show(path)}: the path is too long for the file system ({size} "
            f"bytes, at most {path_max - _INNER_NAME_ROOM})"
        )


def check_new_path(path: Path) -> None:
    """Refuse paths that must never become (or be replaced by) a run directory, and names too
    long for the file system, before anything is created."""
    _check_lengths(path)
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved == Path.home().resolve():
        raise RunDirError(f"run directory {path} is the home directory; choose a new path")
    if resolved.parent == resolved:
        raise RunDirError(f"run directory {path} is the file-system root; choose a new path")
    if resolved == cwd or resolved in cwd.parents:
        what = "the current directory" if resolved == cwd else "a parent of the current directory"
        raise RunDirError(f"run directory {path} is {what}; choose a new path for the run")


class RunDir:
    """A run directory this process holds the lock of (released by :meth:`release`, by leaving
    the ``with`` block, or by the process's end, whichever comes first)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    @classmethod
    def lock(cls, path: Path) -> RunDir:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise _fail(path, exc, "open") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise RunDirError(
                    f"run directory {path} is in use by another algd process (a run or a "
                    "resume); wait for it to end or stop it first"
                ) from None
            raise _fail(path, exc, "lock") from None
        return cls(path, fd)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1

    def __enter__(self) -> RunDir:
        return self

    def __exit__(
        self, tp: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    @property
    def has_checkpoint(self) -> bool:
        return (self.path / CHECKPOINT_NAME).is_file()

    def clear(self, keep: tuple[str, ...] = ()) -> None:
        """Remove what runs write here (never anything else), except ``keep``."""
        for entry in sorted(os.scandir(self.path), key=lambda e: e.name != CONFIG_NAME):
            if entry.name in keep or not _is_run_entry(entry.name):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            except OSError as exc:
                raise _fail(self.path, exc, "clear") from None

    def remove_staging_files(self) -> None:
        for entry in os.scandir(self.path):
            if _STAGING.match(entry.name) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)


def _classify(path: Path) -> str:
    """'missing', 'empty', 'run' (only entries runs write, config.json among them), 'remnant'
    (only entries runs write, no config.json), 'foreign' or 'file'."""
    if not path.exists() and not path.is_symlink():
        return "missing"
    if not path.is_dir():
        return "file"
    try:
        names = [e.name for e in os.scandir(path)]
    except OSError as exc:
        raise _fail(path, exc, "read") from None
    if not names:
        return "empty"
    if not all(_is_run_entry(n) for n in names):
        return "foreign"
    return "run" if CONFIG_NAME in names else "remnant"


def _check_replaceable(path: Path, kind: str, overwrite: bool, probe_lock: bool) -> None:
    if probe_lock and kind in ("empty", "run", "remnant"):
        RunDir.lock(path).release()  # "in use" while another process holds it
    if kind == "file":
        raise RunDirError(f"run directory {path} exists and is not a directory")
    if kind == "foreign":
        shown = ", ".join(foreign_entries(path)[:3])
        raise RunDirError(
            f"{path} is not an algd run directory (it holds {shown}); algd never replaces "
            "other files: choose a new path"
        )
    if kind == "remnant" and not overwrite:
        raise RunDirError(
            f"{path} holds the remains of a run (no config.json); pass --overwrite to replace it"
        )
    if kind == "run" and not overwrite:
        if not any((path / name).exists() for name in (CHECKPOINT_NAME, CHECKPOINT_NEXT)):
            return  # stopped before its first checkpoint: nothing to lose, start again
        raise RunDirError(
            f"run directory {path} already exists (pass --overwrite to replace it, or "
            f"--resume {path} to continue it)"
        )


def _make_parents(parent: Path) -> list[Path]:
    """mkdir -p, returning the folders it created (deepest last)."""
    missing = [p for p in [parent, *parent.parents] if not p.exists()]
    created: list[Path] = []
    for p in reversed(missing):
        try:
            p.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            _remove_empty(created)
            raise _fail(parent, exc, "create the parent folders of") from None
        created.append(p)
    return created


def _remove_empty(folders: list[Path]) -> None:
    for p in reversed(folders):
        try:
            p.rmdir()
        except OSError:
            break


def check_claimable(cfg: TrainConfig) -> Path:
    """The checks :func:`create` makes first, without creating anything (to fail early);
    returns the path. ``cfg.run_dir`` None means :func:`default_run_dir`, a new name each
    second: callers that check and then create fill it in first."""
    path = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
    check_new_path(path)
    _check_replaceable(path, _classify(path), cfg.overwrite, probe_lock=True)
    return path


def create(cfg: TrainConfig) -> RunDir:
    """Claim the run directory of a new run and write its config.json; returns it locked.

    Accepts a path that does not exist, an empty directory, a run directory that stopped before
    its first checkpoint, or (with ``cfg.overwrite``) any run directory. Everything else is
    refused before anything is written."""
    path = check_claimable(cfg)
    parents = _make_parents(path.parent)
    made = False
    try:
        try:
            path.mkdir()
            made = True
        except FileExistsError:
            pass
        except OSError as exc:
            raise _fail(path, exc, "create") from None
        run = RunDir.lock(path)
    except BaseException:
        _remove_empty([*parents, path] if made else parents)
        raise
    try:
        # Under the lock: another process may have changed the directory since the check above.
        kind = _classify(path)
        _check_replaceable(path, kind, cfg.overwrite, probe_lock=False)
        if kind != "empty":
            run.clear()
        text = to_json(replace(cfg, run_dir=HERE, overwrite=False)) + "\n"
        atomic_write_bytes(path / CONFIG_NAME, text.encode())
    except BaseException:
        if made:
            shutil.rmtree(path, ignore_errors=True)  # ours alone: we created it, we hold it
        run.release()
        if made:
            _remove_empty(parents)
        raise
    return run


def open_existing(path: Path) -> RunDir:
    """Lock the run directory ``path`` of an earlier run (for ``--resume``)."""
    kind = _classify(path)
    if kind != "run":
        if kind == "foreign" and (path / CONFIG_NAME).is_file():
            shown = ", ".join(foreign_entries(path)[:3])
            raise RunDirError(f"{path} is not an algd run directory (it holds {shown})")
        raise RunDirError(f"{path} is not a run directory (no config.json)")
    run = RunDir.lock(path)
    if not (path / CONFIG_NAME).is_file():  # cleared by another process meanwhile
        run.release()
        raise RunDirError(f"{path} is not a run directory (no config.json)")
    return run


def load_run_config(run_dir: Path) -> TrainConfig:
    cfg_path = run_dir / CONFIG_NAME
    if not cfg_path.is_file():
        if (run_dir / GROUP_NAME).is_file():
            raise RunDirError(
                f"{run_dir} is a group of seeds, not one run; give one of its run directories "
                f"({run_dir}/s<seed>)"
            )
        raise RunDirError(f"{run_dir} is not a run directory (no config.json)")
    try:
        data = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RunDirError(f"{cfg_path} is not valid JSON") from None
    except OSError as exc:
        raise RunDirError(f"cannot read {cfg_path}: {exc.strerror}") from None
    try:
        cfg = run_config_from_dict(data)
    except ConfigError as exc:
        raise RunDirError(f"{cfg_path}: {exc}") from None
    # Where the run is now: a run directory may have been moved or copied (a results folder
    # committed on one machine and cloned on another) since its config was written.
    return replace(cfg, run_dir=str(run_dir))


def write_config(run: RunDir, cfg: TrainConfig) -> None:
    text = to_json(replace(cfg, run_dir=HERE)) + "\n"
    atomic_write_bytes(run.path / CONFIG_NAME, text.encode())


# --- groups: the seeds of one configuration trained together (`algd train --seeds`) ----------
GROUP_NAME = "group.json"
_MEMBER = re.compile(r"^s\d+$")


def member_dir(group_dir: Path, seed: int) -> Path:
    """Seed ``seed``'s run directory in a group directory."""
    return group_dir / f"s{seed}"


def default_group_dir(cfg: TrainConfig, seeds: list[int]) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.algo}_{_name(cfg.env)}_seeds{seeds[0]}-{seeds[-1]}_{stamp}"


def is_group_dir(path: Path) -> bool:
    return (path / GROUP_NAME).is_file()


def check_group_path(path: Path) -> None:
    """A group directory holds group.json and its seeds' run directories (``s<seed>``), nothing
    else; a new group may also take a missing or empty directory."""
    check_new_path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise RunDirError(f"group directory {path} exists and is not a directory")
    other = sorted(
        e.name for e in os.scandir(path) if e.name != GROUP_NAME and not _MEMBER.match(e.name)
    )
    if other:
        raise RunDirError(
            f"{path} is not an algd group directory (it holds {', '.join(other[:3])}); algd "
            "never replaces other files: choose a new path"
        )


def write_group(path: Path, seeds: list[int]) -> None:
    record = {"seeds": seeds, "members": [member_dir(Path("."), s).name for s in seeds]}
    atomic_write_bytes(path / GROUP_NAME, (json.dumps(record, indent=2) + "\n").encode())


def read_group(path: Path) -> list[Path]:
    """The run directories of group directory ``path``, in its seeds' order."""
    try:
        record = json.loads((path / GROUP_NAME).read_text())
        members = [path / str(name) for name in record["members"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunDirError(f"{path / GROUP_NAME} is not a valid group record ({exc})") from None
    if not members or not all(_MEMBER.match(m.name) for m in members):
        raise RunDirError(f"{path / GROUP_NAME} is not a valid group record (bad members)")
    return members
