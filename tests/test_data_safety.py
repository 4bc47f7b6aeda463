"""Run directories never cost the user data: dangerous paths, foreign folders, concurrent runs,
stops before the first checkpoint, a resume after the last one, a full disk, long names, and the
one-line errors of the other commands (docs/reliability.md lists the promises)."""

from __future__ import annotations

import errno
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from algd.checkpoint import read_checkpoint
from algd.cli import main
from algd.errors import WriteError
from algd.rundir import RunDir
from algd.training import train
from helpers import ROOT, quick, toy
from test_reliability import CRASH, LOGS, _spawn, dying_at_rename, snapshot

TINY = ["--preset", "toy", "--algo", "sac_lag", "--quiet"]
# The tests that compare with the `straight` run (tests/conftest.py) share one worker, so it is
# trained once.
STRAIGHT = pytest.mark.xdist_group("straight")


def one_line_error(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("algd: error:") and err.count("\n") == 1, err
    assert message in err, err
    return err


# --- paths that must never be replaced ---------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home directory holding the user's files; the current directory is home/work/today."""
    home = tmp_path / "home"
    (home / "work" / "today").mkdir(parents=True)
    (home / "notes.txt").write_text("keep")
    (home / "work" / "photo.jpg").write_bytes(b"\xff\xd8 keep")
    (home / "work" / "today" / "data.csv").write_text("keep")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home / "work" / "today")
    return home


@pytest.mark.parametrize(
    ("run_dir", "message"),
    [
        (".", "is the current directory"),
        ("./", "is the current directory"),
        ("..", "is a parent of the current directory"),
        ("../..", "is the home directory"),
        ("../../..", "is a parent of the current directory"),
        ("~", "is the home directory"),
        ("/", "is the file-system root"),
    ],
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_special_paths_are_refused(home, run_dir, message, overwrite, capsys) -> None:
    before = snapshot(home.parent)
    path = str(home) if run_dir == "~" else run_dir
    one_line_error(
        ["train", *TINY, "--run-dir", path, *(["--overwrite"] if overwrite else [])],
        message,
        capsys,
    )
    assert snapshot(home.parent) == before


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_that_is_not_a_run_is_never_replaced(tmp_path: Path, overwrite, capsys) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"keep")
    (photos / "config.json").write_text("{}")  # even beside a file a run would write
    before = snapshot(tmp_path)
    one_line_error(
        ["train", *TINY, "--run-dir", str(photos), *(["--overwrite"] if overwrite else [])],
        "is not an algd run directory (it holds a.jpg)",
        capsys,
    )
    one_line_error(
        ["train", "--resume", str(photos)], "is not an algd run directory (it holds a.jpg)", capsys
    )
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_a_run_and_keeps_its_neighbours(tmp_path: Path) -> None:
    (tmp_path / "beside.txt").write_text("keep")
    cfg = toy("sac_lag", tmp_path / "run", **quick(400, 200))
    train(cfg, console=False)
    (tmp_path / "run" / ".eval.csv.tmp-123").write_text("a stale staging file")
    train(
        toy("sac_lag", tmp_path / "run", **quick(400, 200), seed=1, overwrite=True), console=False
    )
    assert json.loads((tmp_path / "run" / "config.json").read_text())["seed"] == 1
    assert json.loads((tmp_path / "run" / "config.json").read_text())["overwrite"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beside.txt", "run"]
    assert not list((tmp_path / "run").glob(".*.tmp-*"))


# --- exclusive use ------------------------------------------------------------------------------


def test_a_locked_run_directory_is_in_use(tmp_path: Path, capsys) -> None:
    train(toy("sac_lag", tmp_path / "run", **quick(400, 200)), console=False)
    before = snapshot(tmp_path)
    with RunDir.lock(tmp_path / "run"):
        for argv in (
            ["train", "--resume", str(tmp_path / "run"), "--total-steps", "600"],
            ["train", *TINY, "--run-dir", str(tmp_path / "run"), "--overwrite"],
        ):
            one_line_error(argv, "is in use by another algd process", capsys)
    assert snapshot(tmp_path) == before
    # Released with the block: the resume now runs.
    assert main(["train", "--resume", str(tmp_path / "run"), "--total-steps", "600"]) == 0


def _two_at_once(args: list[str]) -> list[tuple[int, str]]:
    procs = [_spawn(args) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    return sorted((p.returncode, err) for p, (_, err) in zip(procs, outs))


@pytest.mark.slow
def test_two_runs_and_two_resumes_of_one_directory(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [*TINY, "--total-steps", "1500", "--warmup-steps", "300", "--log-every", "100"]
    (ok, _), (refused, err) = _two_at_once(["train", *args, "--run-dir", str(run)])
    assert (ok, refused) == (0, 2), err
    assert err.count("\n") == 1 and "is in use by another algd process" in err, err
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 15 and rows.count(rows[0]) == 1  # one header, each row once
    (ok, _), (refused, err) = _two_at_once(
        ["train", "--resume", str(run), "--total-steps", "2000", "--quiet"]
    )
    assert (ok, refused) == (0, 2), err
    assert "is in use by another algd process" in err, err
    steps = [r.split(",")[0] for r in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [str(s) for s in range(100, 2001, 100)]


# --- stops before the first checkpoint, and after the last ---------------------------------------


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.01)


@STRAIGHT
# SIGKILL before the first checkpoint: also test_a_run_killed_before_its_first_checkpoint_...
@pytest.mark.parametrize("how", [pytest.param("sigkill", marks=pytest.mark.slow), "sigterm"])
def test_stop_before_the_first_checkpoint(straight, tmp_path: Path, how: str) -> None:
    run = tmp_path / "run"
    proc = _spawn(["train", *CRASH, "--run-dir", str(run)])
    _wait_for(run / "config.json", proc)
    proc.send_signal(signal.SIGKILL if how == "sigkill" else signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    if how == "sigterm":  # not silent: a checkpoint and a hint
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert "stopped at step" in out and f"--resume {run}" in out
        meta, _ = read_checkpoint(run / "checkpoint.npz")
        assert meta["loop"]["env_step"] < 500
    else:
        assert proc.returncode == -signal.SIGKILL
        assert not (run / "checkpoint.npz").exists()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert {n: (run / n).read_text() for n in LOGS} == straight


def test_a_run_killed_before_its_first_checkpoint_can_be_started_again(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _spawn(["train", *CRASH, "--run-dir", str(run)])
    _wait_for(run / "config.json", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert main(["train", *CRASH, "--run-dir", str(run), "--total-steps", "600"]) == 0
    assert json.loads((run / "summary.json").read_text())["env_steps"] == 600


def test_signal_before_the_run_directory_exists_writes_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    prelude = (  # SIGTERM arrives while the env is probed, before the run directory is made
        "import os, signal\n"
        "import algd.training.preflight as t\n"
        "_probe = t.probe_env\n"
        "def probe(cfg):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return _probe(cfg)\n"
        "t.probe_env = probe\n"
    )
    proc = _spawn(["train", *CRASH, "--run-dir", str(run)], prelude)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err == "algd: stopped by signal 15 before the run started; nothing was written\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@STRAIGHT
def test_kill_between_the_last_checkpoint_and_the_summary(straight, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _spawn(["train", *CRASH, "--run-dir", str(run)], dying_at_rename("summary.json", 1))
    proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL and not (run / "summary.json").exists()
    # The resume finishes the run without writing any row again; a second one is refused.
    for expected in (0, 2):
        assert main(["train", "--resume", str(run), "--quiet"]) == expected
        assert {n: (run / n).read_text() for n in LOGS} == straight
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_eval"]["return_mean"] == float(
        straight["eval.csv"].splitlines()[-1].split(",")[1]
    )


def test_resume_of_a_finished_run_needs_a_larger_budget(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    train(toy("sac_lag", run, **quick(400, 200)), console=False)
    before = snapshot(tmp_path)
    one_line_error(["train", "--resume", str(run)], "is finished (400 steps); pass", capsys)
    one_line_error(
        ["train", "--resume", str(run), "--total-steps", "300"],
        "--total-steps 300 is below the 400 steps",
        capsys,
    )
    one_line_error(
        ["train", "--resume", str(run), "--total-steps", "400"], "is finished (400 steps)", capsys
    )
    assert snapshot(tmp_path) == before
    assert json.loads((run / "config.json").read_text())["total_steps"] == 400


# --- the disk -------------------------------------------------------------------------------------


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    return done.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="tmpfs")
def test_full_disk_is_one_line_and_leaves_no_staging_file(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "300k"):
        pytest.skip("mounting a tmpfs needs root; test_injected_full_disk covers the same path")
    try:
        run = disk / "run"
        proc = subprocess.run(
            [sys.executable, "-m", "algd.cli", "train", *CRASH, "--run-dir", str(run)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "No space left on device" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert not [p for p in run.iterdir() if ".tmp-" in p.name]
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        assert main(["train", "--resume", str(run), "--quiet"]) == 0  # restarts: no checkpoint
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_injected_full_disk_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import algd.checkpoint as ckpt

    run = tmp_path / "run"
    train(toy("sac_lag", run, **quick(400, 200)), console=False)
    good = (run / "checkpoint.npz").read_bytes()
    real = ckpt.write_npz

    def full(f, arrays) -> None:
        f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt, "write_npz", full)
    one_line_error(
        ["train", "--resume", str(run), "--total-steps", "600", "--quiet"],
        f"cannot write {run / 'checkpoint.npz'}: No space left on device; the previous "
        "checkpoint.npz is intact",
        capsys,
    )
    assert (run / "checkpoint.npz").read_bytes() == good
    assert not list(run.glob(".*.tmp-*"))
    monkeypatch.setattr(ckpt, "write_npz", real)
    assert main(["train", "--resume", str(run), "--total-steps", "600", "--quiet"]) == 0


def test_failed_creation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import algd.rundir as rundir

    def failing(path, data) -> None:
        raise WriteError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(rundir, "atomic_write_bytes", failing)
    with pytest.raises(WriteError, match="No space left on device"):
        train(toy("sac_lag", tmp_path / "a" / "b" / "run", **quick(400, 200)), console=False)
    assert list(tmp_path.iterdir()) == []  # neither the run directory nor its new parents


def test_names_too_long_for_the_file_system(tmp_path: Path, capsys) -> None:
    one_line_error(
        ["train", *TINY, "--run-dir", str(tmp_path / "new" / ("x" * 300))],
        "is longer than the file system allows (255 bytes)",
        capsys,
    )
    deep = tmp_path.joinpath(*["d" * 200] * 21)
    one_line_error(["train", *TINY, "--run-dir", str(deep)], "the path is too long", capsys)
    assert list(tmp_path.iterdir()) == []


# --- sizes, ids and the other commands ----------------------------------------------------------


def test_a_config_that_cannot_fit_in_memory_is_refused(tmp_path: Path, capsys) -> None:
    one_line_error(
        [
            "train",
            *TINY,
            "--agent.critic-hidden",
            "65536",
            "65536",
            "--run-dir",
            str(tmp_path / "run"),
        ],
        "this config needs at least",
        capsys,
    )
    assert list(tmp_path.iterdir()) == []


def test_every_safety_gymnasium_task_is_listed() -> None:
    """algd's table of Safety-Gymnasium ids covers every task class the package ships: each
    navigation task ``{Task}Level{n}`` for every robot, each velocity module's class, and
    builds one of each kind."""
    import os
    import re

    from algd.envs import list_env_ids, make_env
    from algd.envs.sg_compat import ROBOTS, import_safety_gymnasium

    package = import_safety_gymnasium()
    tasks = importlib.import_module("safety_gymnasium.tasks")
    levels = [m.groups() for m in map(re.compile(r"^(\w+)Level(\d)$").match, dir(tasks)) if m]
    assert len(levels) >= 20
    velocity_dir = os.path.join(os.path.dirname(str(package.__file__)), "tasks", "safe_velocity")
    modules = [f for f in os.listdir(velocity_dir) if f.startswith("safety_") and f.endswith(".py")]
    expected = {f"Safety{r}{task}{n}-v0" for r in ROBOTS for task, n in levels}
    expected |= {
        "Safety"
        + "".join(w.capitalize() for w in f[len("safety_") : -len("_velocity_v0.py")].split("_"))
        + f"Velocity-v{f[-4]}"
        for f in modules
    }
    assert expected == {e for e in list_env_ids() if e.startswith("Safety")}
    for env_id in ("SafetyWalker2dVelocity-v1", "SafetyRacecarCircle0-v0"):
        env = make_env(env_id)
        env.reset(0)
        assert len(env.step(env.spec.act_low)) == 6
        env.close()
    assert make_env("SafetyRacecarCircle0-v0").spec.max_episode_steps == 500


def test_other_commands_answer_bad_input_with_one_line(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    train(toy("sac_lag", run, **quick(400, 200)), console=False)
    one_line_error(["eval", str(run), "--seed", "-1"], "--seed must be in [0, 2^31)", capsys)
    one_line_error(["landscape", str(run), "--seed", "-1"], "--seed must be in [0, 2^31)", capsys)
    summary = run / "summary.json"
    for damaged, message in ((os.urandom(64), "not a readable JSON"), (b"{}", "no 'algo'")):
        summary.write_bytes(damaged)
        one_line_error(["report", str(tmp_path)], message, capsys)
    spec = tmp_path / "list.json"
    spec.write_text("[1, 2]")
    one_line_error(["bench", "--out", str(tmp_path / "g"), "--spec", str(spec)], "a list", capsys)
    for flag, message in (("--algos", "unknown algorithm 'nope'"), ("--envs", "'Nope-v0'")):
        value = "nope" if flag == "--algos" else "Nope-v0"
        args = {"--algos": "sac_lag", "--envs": "ToyRing-v0", flag: value}
        argv = ["bench", "--out", str(tmp_path / "g"), "--seeds", "0"]
        for k, v in args.items():
            argv += [k, v]
        err = one_line_error(argv, message, capsys)
        assert "re-run" not in err
    assert not (tmp_path / "g").exists()
