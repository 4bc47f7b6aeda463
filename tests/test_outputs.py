"""Outputs other than run directories follow the run directories' rules (algd/outputs.py):
``--overwrite`` replaces only the files a command writes, never a folder's other contents, a
run or group directory, or a run's own files; a failed command leaves everything as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from algd.cli import main
from algd.errors import RunDirError, WriteError
from algd.outputs import StagedFolder, check_file, check_folder
from algd.video import VideoWriter
from helpers import snapshot


def _user_folder(path: Path) -> Path:
    path.mkdir()
    (path / "notes.txt").write_text("mine")
    (path / "episode_000.mp4").write_bytes(b"an older video")
    return path


def test_a_staged_folder_replaces_only_its_own_files(tmp_path: Path) -> None:
    out = _user_folder(tmp_path / "out")
    with pytest.raises(RunDirError, match="episode_000.mp4 already exists"):
        check_folder(out, ["episode_000.mp4"], False, "video")
    with StagedFolder(out, True, "video", ["episode_000.mp4"]) as stage:
        (stage / "episode_000.mp4").write_bytes(b"new")
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "episode_000.mp4").read_bytes() == b"new"
    assert sorted(p.name for p in out.iterdir()) == ["episode_000.mp4", "notes.txt"]


def test_a_failed_output_leaves_everything_as_it_was(tmp_path: Path) -> None:
    out = _user_folder(tmp_path / "out")
    before = snapshot(tmp_path)
    with pytest.raises(ZeroDivisionError), StagedFolder(out, True, "plot") as stage:
        (stage / "episode_000.mp4").write_bytes(b"half")
        _ = 1 / 0
    assert snapshot(tmp_path) == before
    # A folder the command made for its files is removed again, with its missing parents.
    deep = tmp_path / "a" / "b"
    with pytest.raises(ZeroDivisionError), StagedFolder(deep, False, "plot") as stage:
        (stage / "plot.png").write_bytes(b"half")
        _ = 1 / 0
    assert not (tmp_path / "a").exists() and snapshot(tmp_path) == before
    # A file it would replace, found only when it commits, stops it with nothing changed.
    with pytest.raises(RunDirError, match="already exists"), StagedFolder(out, False, "x") as s:
        (s / "notes.txt").write_text("theirs")
    assert snapshot(tmp_path) == before


def test_a_commit_that_fails_midway_puts_everything_back(tmp_path: Path, monkeypatch) -> None:
    import os

    out = _user_folder(tmp_path / "out")
    (out / "b.txt").write_text("old b")
    before = {k: v[1] for k, v in snapshot(tmp_path).items()}
    real_replace = os.replace

    def failing(src, dst, *args, **kwargs):  # the new b.txt cannot be moved in
        if Path(dst) == out / "b.txt" and Path(src).read_text() == "new b":
            raise PermissionError(13, "Permission denied")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing)
    with (
        pytest.raises(WriteError, match="what was there is back in place"),
        StagedFolder(out, True, "report") as stage,
    ):
        (stage / "a.txt").write_text("new a")
        (stage / "b.txt").write_text("new b")
    assert {k: v[1] for k, v in snapshot(tmp_path).items()} == before
    assert sorted(p.name for p in out.iterdir()) == ["b.txt", "episode_000.mp4", "notes.txt"]


def test_runs_and_their_files_are_never_an_output(finished, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished["a"], run)
    group = tmp_path / "group"
    group.mkdir()
    (group / "group.json").write_text("{}")
    for folder in (run, group):
        with pytest.raises(RunDirError, match=r"is a (run|group) directory; write the video"):
            check_folder(folder, [], True, "video")
    for name in ("checkpoint.npz", "config.json", "metrics.csv"):
        with pytest.raises(RunDirError, match="is one of the files of run directory"):
            check_file(run / name, True, "policy file")
    with pytest.raises(RunDirError, match="is a folder; name a file"):
        check_file(tmp_path, True, "policy file")
    # Nor is a new file or folder inside a run (it would stop resuming), except the run's own
    # folders for its figures.
    with pytest.raises(RunDirError, match="is inside run directory"):
        check_file(run / "policy.npz", False, "policy file")
    for name in ("report", "tb"):
        with pytest.raises(RunDirError, match="is inside run directory"):
            check_folder(run / name, [], True, "report")
    check_folder(run / "landscape", ["landscape.png"], True, "landscape")
    check_folder(run / "plots", ["plot.png"], True, "plot")
    check_file(tmp_path / "policy.npz", False, "policy file")


@pytest.mark.xdist_group("finished_runs")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "{run}", "--video", "{run}", "--overwrite"], "is a run directory"),
        (["export", "{run}", "{run}/checkpoint.npz", "--overwrite"], "files of run directory"),
        (["plot", "{run}", "--out", "{run}", "--overwrite"], "is a run directory"),
        (["report", "{root}", "--out", "{run}", "--overwrite"], "is a run directory"),
        (["landscape", "{run}", "--out", "{run}", "--overwrite"], "is a run directory"),
        (["plot", "{run}", "--out", "{root}/notes.txt"], "is a file; the plot goes"),
    ],
)
def test_commands_refuse_to_write_over_a_run(
    argv: list[str], message: str, finished, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "runs" / "run"
    shutil.copytree(finished["a"], run)
    (tmp_path / "runs" / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    args = [a.format(run=run, root=tmp_path / "runs") for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert snapshot(tmp_path) == before


@pytest.mark.xdist_group("finished_runs")
def test_plot_and_report_overwrite_keep_the_folders_other_files(
    finished, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _user_folder(tmp_path / "out")
    (out / "plot.png").write_bytes(b"an older plot")
    assert main(["plot", str(finished["a"]), "--out", str(out)]) == 2
    assert main(["plot", str(finished["a"]), "--out", str(out), "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "plot.png").read_bytes().startswith(b"\x89PNG")
    root = tmp_path / "results"
    shutil.copytree(finished["a"], root / "a")
    capsys.readouterr()
    assert main(["report", str(root), "--out", str(out), "--overwrite"]) == 0
    printed = capsys.readouterr().out  # the tables, ending their last line
    assert printed.startswith("| env |") and printed.endswith(" |\n"), printed[-200:]
    assert (out / "notes.txt").read_text() == "mine" and (out / "report.md").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left


def test_a_video_folder_keeps_the_users_files(tmp_path: Path, recwarn) -> None:
    out = _user_folder(tmp_path / "videos")
    with pytest.raises(RunDirError, match="already exists"):
        VideoWriter(out, False, episodes=1)
    writer = VideoWriter(out, True, episodes=2)
    frame = np.zeros((48, 64, 3), np.uint8)
    for episode in (0, 1):
        for _ in range(3):
            writer.add(episode, frame)
    files = writer.close()
    assert not [w for w in recwarn if "os.fork" in str(w.message)]  # ffmpeg's start is quiet
    assert [Path(f).name for f in files] == ["episode_000.mp4", "episode_001.mp4"]
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "episode_000.mp4").read_bytes() != b"an older video"
    assert sorted(p.name for p in out.iterdir()) == [
        "episode_000.mp4",
        "episode_001.mp4",
        "notes.txt",
    ]
    # An aborted video leaves the folder as it was.
    before = snapshot(tmp_path)
    writer = VideoWriter(out, True, episodes=1)
    writer.add(0, frame)
    writer.abort()
    assert snapshot(tmp_path) == before
