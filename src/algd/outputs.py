"""Where the commands other than ``train`` write: one file (an exported policy, a one-file
video) or named files in a folder (a plot, a report, a landscape, one video per episode).

The rules are the run directories' (rundir.py):

- A command writes only the files it names. It stages them beside their place and moves them
  in when all are complete, so a command that fails leaves everything as it was, and a folder
  it created for them is removed again.
- ``--overwrite`` replaces only those files: never a folder's other contents, never a run or
  group directory, nor one of a run's own files.
- Everything is checked before the command reads or computes anything it would lose.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from algd.errors import RunDirError, WriteError
from algd.rundir import CONFIG_NAME, GROUP_NAME, RUN_ENTRIES, is_group_dir

OUTPUT_FOLDERS = {"landscape", "plots"}  # a run's own folders for its figures (RUN_ENTRIES)


def _is_run_or_group(path: Path) -> bool:
    return (path / CONFIG_NAME).is_file() or is_group_dir(path)


def _existing_ancestor(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path("/")


def check_file(path: Path, overwrite: bool, what: str) -> None:
    """``path`` may receive the file ``what`` (a name for messages: "policy file")."""
    if path.is_dir():
        raise RunDirError(f"{what} {path} is a folder; name a file")
    parent = path.parent
    if _is_run_or_group(parent):
        own = path.name in RUN_ENTRIES or path.name == GROUP_NAME
        raise RunDirError(
            f"{path} is {'one of the files of' if own else 'inside'} run directory {parent} "
            f"(a run holds only its own files); write the {what} elsewhere"
        )
    if path.exists() and not overwrite:
        raise RunDirError(f"{path} already exists (pass --overwrite to replace it)")
    if not parent.is_dir():
        raise RunDirError(f"{parent} is not a folder (the {what} goes into an existing folder)")


def check_folder(path: Path, names: Iterable[str], overwrite: bool, what: str) -> None:
    """``path`` (missing, or a folder) may receive the files ``names`` of ``what``."""
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path} is a file; the {what} goes into a folder")
    if path.is_dir() and _is_run_or_group(path):
        kind = "group" if is_group_dir(path) else "run"
        raise RunDirError(f"{path} is a {kind} directory; write the {what} into another folder")
    if _is_run_or_group(path.parent) and not (
        (path.parent / CONFIG_NAME).is_file() and path.name in OUTPUT_FOLDERS
    ):
        raise RunDirError(
            f"{path} is inside run directory {path.parent} (a run holds only its own files; "
            f"its {', '.join(sorted(OUTPUT_FOLDERS))}/ folders excepted); write the {what} "
            "elsewhere"
        )
    if not path.exists() and not _existing_ancestor(path).is_dir():
        raise RunDirError(f"{_existing_ancestor(path)} is not a folder")
    for name in names:
        target = path / name
        if target.is_dir():
            raise RunDirError(f"{target} is a folder; the {what} writes a file of that name")
        if target.exists() and not overwrite:
            raise RunDirError(f"{target} already exists (pass --overwrite to replace it)")


class StagedFolder:
    """Files written into :attr:`stage` (after :meth:`open`) replace their namesakes in
    ``path`` (created if missing) on :meth:`commit`; :meth:`discard` removes them, with any
    folder made for them. Also a context manager: ``with StagedFolder(...) as stage:``."""

    def __init__(self, path: Path, overwrite: bool, what: str, names: Iterable[str] = ()) -> None:
        check_folder(path, names, overwrite, what)
        self.path, self.overwrite, self.what = path, overwrite, what
        self._made: list[Path] = []
        self._stage: Path | None = None

    @property
    def stage(self) -> Path:
        assert self._stage is not None, "open() first"
        return self._stage

    def open(self) -> Path:
        missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except OSError as exc:
                self.discard()
                raise RunDirError(f"cannot create {folder}: {exc.strerror or exc}") from None
            self._made.append(folder)
        try:
            self._stage = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path))
        except OSError as exc:
            self.discard()
            raise WriteError(f"cannot write into {self.path}: {exc.strerror or exc}") from None
        return self._stage

    def commit(self) -> list[Path]:
        """Move the staged files into place; returns their paths."""
        written = sorted(p.name for p in self.stage.iterdir())
        try:
            check_folder(self.path, written, self.overwrite, self.what)
        except RunDirError:
            self.discard()
            raise
        kept = self.stage / ".replaced"  # the files being replaced, until all are in place
        moved: list[str] = []
        try:
            kept.mkdir()
            for name in written:
                if (self.path / name).exists():
                    os.replace(self.path / name, kept / name)
            for name in written:
                os.replace(self.stage / name, self.path / name)
                moved.append(name)
        except OSError as exc:
            for name in moved:  # put back what was there
                with contextlib.suppress(OSError):
                    os.replace(self.path / name, self.stage / name)
            for old in kept.iterdir() if kept.is_dir() else ():
                with contextlib.suppress(OSError):
                    os.replace(old, self.path / old.name)
            self.discard()
            raise WriteError(
                f"cannot write the {self.what} into {self.path}: {exc.strerror or exc}; what "
                "was there is back in place"
            ) from None
        shutil.rmtree(self.stage)
        self._stage = None
        return [self.path / name for name in written]

    def discard(self) -> None:
        if self._stage is not None:
            shutil.rmtree(self._stage, ignore_errors=True)
            self._stage = None
        for folder in reversed(self._made):
            try:
                folder.rmdir()
            except OSError:
                break  # no longer empty: something else was written there meanwhile
        self._made = []

    def __enter__(self) -> Path:
        return self.open()

    def __exit__(
        self, tp: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.commit()  # discards on its own failure
        else:
            self.discard()
