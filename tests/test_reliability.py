"""Bad input, crashes and numerical faults lose nothing; a seed determines a run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import faulty_envs
from algd.api import TrainConfig
from algd.checkpoint import read_checkpoint
from algd.cli import main
from algd.config import DiffusionConfig, LagrangianConfig, from_dict
from algd.errors import (
    AlgdError,
    CheckpointError,
    ConfigError,
    EnvError,
    NumericalError,
    RunDirError,
)
from algd.rundir import create
from algd.training import train
from algd.training.offpolicy import OffPolicyLoop
from helpers import ROOT, quick, snapshot, toy

faulty_envs.register()

TINY = quick(600)


# --- bad input corpus -----------------------------------------------------------------------

TRAIN_CASES = [
    (["--algo", "nope"], "unknown algorithm 'nope'"),
    (["--env", "NoSuchEnv-v0"], "unknown env id 'NoSuchEnv-v0'"),
    (["--env", "Pendulum-v1"], "env Pendulum-v1 reports no cost signal"),
    (["--env", "NanCostEnv-v0"], "env NanCostEnv-v0 returned a non-finite cost"),
    (["--env", "NanObsEnv-v0"], "env NanObsEnv-v0 returned a non-finite observation at reset"),
    (["--agent.rho", "-1"], "'agent.lagrangian.rho': must be a positive number (got -1.0)"),
    (["--agent.rho", "0"], "'agent.lagrangian.rho': must be a positive number"),
    (["--agent.rho", "nan"], "'agent.lagrangian.rho': must be a positive number (got nan)"),
    (["--agent.beta", "0"], "'agent.diffusion.beta': must be a positive number"),
    (["--agent.gamma", "1.0"], "'agent.gamma': must be a discount in [0, 1)"),
    (["--agent.gamma-c", "-0.5"], "'agent.gamma_c': must be a discount in [0, 1)"),
    (["--agent.critic-lr", "0"], "'agent.critics.critic_lr': must be in (0, 1]"),
    (["--agent.actor-lr", "5"], "'agent.actor_lr': must be in (0, 1]"),
    (
        ["--agent.denoise-steps", "0"],
        "'agent.diffusion.denoise_steps': must be an integer in 1..1000",
    ),
    (["--agent.mc-samples", "0"], "'agent.diffusion.mc_samples': must be an integer >= 1"),
    (["--agent.cost-ensemble", "0"], "'agent.critics.cost_ensemble': must be an integer >= 1"),
    (["--agent.cost-k", "-1"], "'agent.critics.cost_k': must be a number >= 0"),
    (["--agent.tau", "0"], "'agent.critics.tau': must be in (0, 1]"),
    (["--agent.sigma-min", "2"], "'agent.diffusion.sigma_min': must be smaller than sigma_max"),
    (
        ["--agent.critic-hidden", "0"],
        "'agent.critics.critic_hidden': must be one or more layer widths",
    ),
    (["--agent.pid-ema", "1.0"], "'agent.lagrangian.pid_ema': must be in [0, 1)"),
    (
        ["--agent.lagrangian.eval-gap"],
        "'agent.lagrangian.eval_gap': needs --agent.lagrangian.violation episodes",
    ),
    (
        ["--agent.lagrangian.eval-gap", "--agent.violation", "episodes", "--eval-every", "0"],
        "'agent.lagrangian.eval_gap': needs evaluations (--eval-every > 0)",
    ),
    (
        ["--agent.lagrangian.eval-gap-cap", "0.1"],
        "'agent.lagrangian.eval_gap_cap': needs --agent.lagrangian.eval-gap",
    ),
    (
        [
            "--agent.lagrangian.eval-gap",
            "--agent.violation",
            "episodes",
            "--agent.lagrangian.eval-gap-cap",
            "2",
        ],
        "'agent.lagrangian.eval_gap_cap': must be in [0, 1]",
    ),
    (["--batch-size", "0"], "'batch_size': must be an integer >= 1"),
    (
        ["--batch-size", "512", "--buffer-size", "256"],
        "'batch_size': (512) must not exceed buffer_size (256)",
    ),
    (
        ["--learning-starts", "5000", "--buffer-size", "1000"],
        "'learning_starts': (5000) must not exceed",
    ),
    (["--total-steps", "0"], "'total_steps': must be an integer in 1..1000000000"),
    (
        ["--warmup-steps", "100", "--total-steps", "50"],
        "'warmup_steps': (100) must be smaller than total_steps (50)",
    ),
    (["--utd", "0"], "'utd': must be an integer >= 1"),
    (["--eval-episodes", "0"], "'eval_episodes': must be an integer >= 1"),
    (["--log-every", "0"], "'log_every': must be an integer >= 1"),
    (["--cost-limit", "-1"], "'cost_limit': must be a number >= 0"),
    (["--episode-length", "0"], "'episode_length': must be an integer >= 1"),
    (["--seed", "-1"], "'seed': must be in [0, 2^31)"),
    (
        ["--agent.multiplier", "foo"],
        "invalid choice 'foo' for argument '--agent.lagrangian.multiplier'",
    ),
    (["--utd", "x"], "Error parsing --utd"),
    (["--bogus"], "Unrecognized options: --bogus"),
    (["--preset", "huge"], "unknown preset 'huge'"),
    # The reachability baseline and the on-policy one.
    (["--algo", "hj", "--agent.hj-threshold", "nan"], "'agent.hj.threshold': must be a finite"),
    (["--algo", "hj", "--agent.hj-lambda-lr", "0"], "'agent.hj.lambda_lr': must be in (0, 1]"),
    (["--algo", "hj", "--agent.hj-lambda-hidden", "0"], "'agent.hj.lambda_hidden': must be one"),
    (["--algo", "ppo_lag", "--agent.ppo-rollout", "0"], "'agent.ppo.rollout': must be an integer"),
    (["--algo", "ppo_lag", "--agent.ppo-epochs", "0"], "'agent.ppo.epochs': must be an integer"),
    (["--algo", "ppo_lag", "--agent.ppo-minibatch", "-4"], "'agent.ppo.minibatch': must be an"),
    (["--algo", "ppo_lag", "--agent.ppo-clip", "0"], "'agent.ppo.clip': must be a positive"),
    (
        ["--algo", "ppo_lag", "--agent.gae-lambda", "1.5"],
        "'agent.ppo.gae_lambda': must be in [0, 1]",
    ),
    (["--algo", "ppo_lag", "--agent.max-grad-norm", "inf"], "'agent.ppo.max_grad_norm': must be a"),
    (
        ["--algo", "ppo_lag", "--agent.lambda-max", "-1"],
        "'agent.lagrangian.lambda_max': must be a positive",
    ),
    (["--algo", "ppo_lag", "--agent.ppo-budget", "x"], "invalid choice 'x' for argument"),
]


def _expect_one_line_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("algd: error:") and err.count("\n") == 1, err
    assert message in err, err


@pytest.mark.parametrize(("args", "message"), TRAIN_CASES)
def test_bad_train_input(args: list[str], message: str, tmp_path: Path, capsys) -> None:
    (tmp_path / "existing.txt").write_text("keep")
    before = snapshot(tmp_path)
    _expect_one_line_error(
        ["train", "--preset", "toy", *args, "--run-dir", str(tmp_path / "run")], message, capsys
    )
    assert snapshot(tmp_path) == before


# Mistakes in the other subcommands' flags and in the files and modules a flag names, caught
# before anything runs ({tmp} is the test's folder, which holds the files named).
COMMAND_CASES = [
    (["train", "--config", "{tmp}/binary.yaml"], "--config {tmp}/binary.yaml: not a UTF-8 text"),
    (["train", "--config", "{tmp}/utf16.yaml"], "not a UTF-8 text file"),
    (["train", "--config", "{tmp}/checkpoint.npz"], "a checkpoint or a policy file is not one"),
    (["train", "--env", "broken_syntax_env:Env"], "'broken_syntax_env' has a syntax error"),
    (["train", "--env", "raising_env:Env"], "module 'raising_env' raised RuntimeError: boom"),
    (["bench-speed", "--seconds", "nan"], "--seconds must be a finite number (got nan)"),
    (["bench-speed", "--seconds", "inf"], "--seconds must be a finite number (got inf)"),
    (["bench-speed", "--seconds", "0"], "--seconds must be > 0"),
    (["bench-memory", "--memory-gib", "nan"], "--memory-gib must be a finite number"),
    (["bench-memory", "--memory-gib", "inf"], "--memory-gib must be a finite number"),
    (["bench-memory", "--interval", "nan"], "--interval must be a finite number"),
    (["landscape", "{tmp}", "--lam", "nan"], "--lam must be a finite number (got nan)"),
    (["landscape", "{tmp}", "--lam", "inf"], "--lam must be a finite number (got inf)"),
    (["landscape", "{tmp}", "--lam", "-1"], "--lam is a multiplier, >= 0"),
    # Grid spec files whose fields have the wrong type, checked before anything runs.
    (["bench", "--spec", "{tmp}/spec_overrides.json"], "'overrides' must be a JSON object"),
    (["bench", "--spec", "{tmp}/spec_algos.json"], "'algos' must be a list of names"),
    (["bench", "--spec", "{tmp}/spec_seeds.json"], "'seeds' must be a list of integers"),
    (["bench", "--spec", "{tmp}/spec_unknown.json"], "unknown field 'algoss' (did you mean"),
    (["bench", "--spec", "{tmp}/spec_sweep.json"], "'sweep' must map each key to a list"),
    (["bench", "--spec", "{tmp}/spec_per_env.json"], "'per_env' must be a JSON object of env"),
    (["bench", "--spec", "{tmp}/binary.yaml"], "grid spec {tmp}/binary.yaml: 'utf-8' codec"),
    (
        ["bench", "--base", "toy", "--algos", "sac", "--envs", "ToyRing-v0", "--seeds", "0"],
        "is a file; the grid goes into a folder",
    ),
    (["export", "{tmp}/checkpoint.npz", "{tmp}/out.npz"], "is a file; algd export reads a run"),
    # A config file's value of the wrong type is refused, never read as another value.
    (
        ["train", "--config", "{tmp}/text_bool.json"],
        "'agent.lagrangian.eval_gap': must be true or false (got 'false')",
    ),
    (
        ["train", "--config", "{tmp}/null_bool.json"],
        "'agent.lagrangian.eval_gap': must be true or false (got None)",
    ),
    (
        ["train", "--config", "{tmp}/text_number.json"],
        "'agent.lagrangian.eval_gap_cap': must be a number, in [0, 1] (got '0.1')",
    ),
]

SPECS = {
    "spec_overrides.json": {"overrides": [1]},
    "spec_algos.json": {"algos": [1]},
    "spec_seeds.json": {"seeds": [0.5]},
    "spec_unknown.json": {"algoss": ["sac_lag"]},
    "spec_sweep.json": {"sweep": {"agent.rho": 2}},
    "spec_per_env.json": {"per_env": {"ToyRing-v0": 3}},
    "text_bool.json": {
        "agent.lagrangian.violation": "episodes",
        "agent.lagrangian.eval_gap": "false",
    },
    "null_bool.json": {"agent.lagrangian.eval_gap": None},
    "text_number.json": {
        "agent.lagrangian.violation": "episodes",
        "agent.lagrangian.eval_gap": True,
        "agent.lagrangian.eval_gap_cap": "0.1",
    },
}


@pytest.mark.parametrize(("argv", "message"), COMMAND_CASES)
def test_bad_command_input(
    argv: list[str], message: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)))
    (tmp_path / "utf16.yaml").write_text("algo: sac_lag\n", encoding="utf-16")
    (tmp_path / "checkpoint.npz").write_bytes(b"PK\x03\x04" + bytes(range(128, 256)))
    (tmp_path / "broken_syntax_env.py").write_text("import nope(\n")
    (tmp_path / "raising_env.py").write_text("raise RuntimeError('boom')\n")
    for name, spec in SPECS.items():
        (tmp_path / name).write_text(json.dumps(spec))
    monkeypatch.syspath_prepend(str(tmp_path))
    before = snapshot(tmp_path)
    args = [a.format(tmp=tmp_path) for a in argv]
    if args[0] == "train":
        args += ["--preset", "toy", "--run-dir", str(tmp_path / "run")]
    if args[0] == "bench":  # a file where the results folder would go
        args += ["--out", str(tmp_path / ("binary.yaml" if "--base" in args else "grid"))]
    _expect_one_line_error(args, message.format(tmp=tmp_path), capsys)
    assert snapshot(tmp_path) == before


def test_an_env_that_cannot_render_says_what_it_lacks() -> None:
    from algd.envs import make_env

    make_env("NoRenderEnv-v0").close()  # trains: only a video needs rendering
    with pytest.raises(EnvError, match="cannot render a video: its constructor takes no render_"):
        make_env("NoRenderEnv-v0", render_size=(64, 64))


def test_empty_run_dir_rejected(tmp_path: Path, capsys) -> None:
    _expect_one_line_error(
        ["train", "--run-dir", ""], "'run_dir': must be a non-empty path", capsys
    )


def _corrupt(kind: str, run: Path, other: Path) -> None:
    ckpt = run / "checkpoint.npz"
    if kind == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    elif kind == "garbage":
        ckpt.write_bytes(os.urandom(4096))
    elif kind == "missing":
        ckpt.unlink()
    elif kind == "mismatched":
        shutil.copy(other / "checkpoint.npz", ckpt)
    elif kind == "bad_json":
        (run / "config.json").write_text("{not json")
    elif kind == "unknown_field":
        cfg = json.loads((run / "config.json").read_text())
        cfg["agent"]["rhoo"] = 1.0
        (run / "config.json").write_text(json.dumps(cfg))
    elif kind == "bad_value":
        cfg = json.loads((run / "config.json").read_text())
        cfg["agent"]["rho"] = -3.0
        (run / "config.json").write_text(json.dumps(cfg))
    elif kind == "edited_value":  # a valid value, but not the one the run began with
        cfg = json.loads((run / "config.json").read_text())
        cfg["agent"]["lagrangian"]["rho"] = 2.0
        (run / "config.json").write_text(json.dumps(cfg))
    elif kind in LOG_DAMAGE:
        LOG_DAMAGE[kind](run)
    elif kind == "policy_file":  # an exported policy copied over the checkpoint
        meta = json.dumps({"format": "algd-policy", "format_version": 1}).encode()
        with ckpt.open("wb") as f:
            np.savez(f, __meta__=np.frombuffer(meta, np.uint8))


def _replace_by_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "kept.txt").write_text("a file of the user's")


def _replace_by_file(path: Path) -> None:
    shutil.rmtree(path)
    path.write_text("not a folder")


# Damaged logs and summaries of a finished run: a resume to a larger budget must refuse before
# it changes anything (it would rewrite config.json and the CSVs and delete summary.json).
LOG_DAMAGE = {
    "eval_binary": lambda run: (run / "eval.csv").write_bytes(bytes(range(256)) * 4),
    "metrics_step": lambda run: (run / "metrics.csv").write_text(
        (run / "metrics.csv").read_text() + "abc,1,2\n"
    ),
    "metrics_huge_field": lambda run: (run / "metrics.csv").write_text(
        (run / "metrics.csv").read_text() + '1,"' + "x" * 200_000 + '"\n'
    ),
    "eval_folder": lambda run: _replace_by_folder(run / "eval.csv"),
    "tb_file": lambda run: _replace_by_file(run / "tb"),
    # A committed result: its summary says what the run did, and there is no checkpoint.
    "summary_binary": lambda run: _committed(run, bytes(range(256))),
    "summary_list": lambda run: _committed(run, b"[1, 2]"),
}


def _committed(run: Path, summary: bytes) -> None:
    (run / "checkpoint.npz").unlink()
    (run / "summary.json").write_bytes(summary)


RUN_CASES = [
    ("eval", "policy_file", [], "is an exported policy file (algd export), not a run's"),
    ("resume", "policy_file", [], "is an exported policy file (algd export), not a run's"),
    ("resume", "eval_binary", [], "eval.csv is damaged ('utf-8' codec"),
    ("resume", "metrics_step", [], "metrics.csv is damaged (a row's step is 'abc')"),
    ("resume", "metrics_huge_field", [], "metrics.csv is damaged (field larger than"),
    ("resume", "eval_folder", [], "eval.csv is a folder, not a CSV log"),
    ("resume", "tb_file", [], "tb is a file; a run's tb/ is the folder"),
    ("resume", "summary_binary", [], "summary.json is damaged"),
    ("resume", "summary_list", [], "summary.json is damaged (not a JSON object)"),
    ("eval", "truncated", [], "is truncated or corrupt"),
    ("eval", "garbage", [], "is truncated or corrupt"),
    ("eval", "missing", [], "does not exist"),
    ("eval", "mismatched", [], "does not match this run: .q['members_0']['b_in'] has shape"),
    ("eval", "bad_json", [], "config.json is not valid JSON"),
    ("eval", "unknown_field", [], "config field 'agent.rhoo': unknown field"),
    ("eval", "bad_value", [], "config field 'agent.lagrangian.rho': must be a positive number"),
    ("eval", None, ["--episodes", "0"], "--episodes must be >= 1"),
    ("resume", "truncated", [], "is truncated or corrupt"),
    ("resume", "mismatched", [], "does not match this run"),
    (
        "resume",
        "edited_value",
        [],
        "written with agent.lagrangian.rho = 1.0, and config.json sets 2.0",
    ),
    ("resume", None, ["--seed", "3"], "--seed cannot change"),
    ("resume", None, ["--preset", "toy"], "--preset cannot change"),
    ("retrain", None, [], "already exists (pass --overwrite"),
]


# The tests that read the `finished` runs share one worker, so the runs are trained once.
@pytest.mark.xdist_group("finished_runs")
@pytest.mark.parametrize(("command", "corruption", "extra", "message"), RUN_CASES)
def test_bad_run_input(
    command, corruption, extra, message, finished, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished["a"], run)
    if corruption:
        _corrupt(corruption, run, finished["b"])
    before = snapshot(tmp_path)
    if command == "eval":
        argv = ["eval", str(run), *extra]
    elif command == "resume":
        argv = ["train", "--resume", str(run), "--total-steps", "900", *extra]
    else:
        argv = ["train", "--preset", "toy", "--algo", "sac_lag", "--run-dir", str(run)]
    _expect_one_line_error(argv, message, capsys)
    assert snapshot(tmp_path) == before


def _rewrite(path: Path, edit: Any) -> None:
    path.write_text(edit(path.read_text()))


def _drop_last_column(text: str) -> str:
    return "\n".join(",".join(line.split(",")[:-1]) for line in text.splitlines()) + "\n"


# What `algd report` and `algd plot` read of a finished run, damaged.
READ_DAMAGE = {
    "summary_binary": (
        lambda run: (run / "summary.json").write_bytes(b"\xff\xfe\x00"),
        "summary.json is not a readable JSON file",
    ),
    "summary_incomplete": (
        lambda run: (run / "summary.json").write_text('{"finished": true}'),
        "summary.json is not an algd run file (no '",
    ),
    "eval_extra_field": (
        lambda run: _rewrite(run / "eval.csv", lambda t: t.rstrip("\n") + ",5,6\n"),
        "eval.csv is damaged (a row has more fields than the header)",
    ),
    "eval_missing_column": (
        lambda run: _rewrite(run / "eval.csv", _drop_last_column),
        "eval.csv is damaged (no column 'cost_vs_limit')",
    ),
    "eval_huge_field": (
        lambda run: _rewrite(run / "eval.csv", lambda t: t + '1,"' + "x" * 200_000 + '"\n'),
        "eval.csv is damaged (field larger than field limit",
    ),
    "metrics_not_a_number": (
        lambda run: _rewrite(run / "metrics.csv", lambda t: t + "abc\n"),
        "metrics.csv is damaged (could not convert string to float",
    ),
}


@pytest.mark.xdist_group("finished_runs")
@pytest.mark.parametrize("command", ["report", "plot"])
@pytest.mark.parametrize("damage", list(READ_DAMAGE))
def test_damaged_runs_in_report_and_plot(
    damage: str, command: str, finished, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "results" / "run"
    shutil.copytree(finished["a"], run)
    corrupt, message = READ_DAMAGE[damage]
    corrupt(run)
    before = snapshot(tmp_path)
    target = run.parent if command == "report" else run
    _expect_one_line_error([command, str(target), "--out", str(tmp_path / "out")], message, capsys)
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


def test_missing_run_dirs(tmp_path: Path, capsys) -> None:
    _expect_one_line_error(["eval", str(tmp_path / "nope")], "is not a run directory", capsys)
    _expect_one_line_error(
        ["train", "--resume", str(tmp_path / "nope")], "is not a run directory", capsys
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: TrainConfig(utd=0), "'utd'"),
        (lambda: LagrangianConfig(rho=-1.0), "'agent.lagrangian.rho'"),
        (lambda: DiffusionConfig(score_hidden=()), "'agent.diffusion.score_hidden'"),
        (lambda: from_dict({"nope": 1}), "'nope': unknown field"),
        (lambda: from_dict({"agent": {"beta": 0.0}}), "'agent.diffusion.beta'"),
        (lambda: from_dict([1, 2]), "config must be a JSON object"),
    ],
)
def test_bad_api_input(build, error: str) -> None:
    with pytest.raises(ConfigError, match=error.replace("(", r"\(").replace("[", r"\[")):
        build()


@pytest.mark.xdist_group("finished_runs")
def test_api_refuses_existing_dir(finished, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished["a"], run)
    before = snapshot(tmp_path)
    with pytest.raises(RunDirError, match="already exists"):
        train(toy("sac_lag", run, **TINY), console=False)
    assert snapshot(tmp_path) == before


# --- crashes --------------------------------------------------------------------------------

CRASH = [
    "--preset",
    "toy",
    "--algo",
    "sac_lag",
    "--total-steps",
    "2000",
    "--warmup-steps",
    "500",
    "--eval-every",
    "500",
    "--checkpoint-every",
    "500",
    "--log-every",
    "100",
    "--eval-episodes",
    "2",
    "--quiet",
]
LOGS = ("metrics.csv", "episodes.csv", "eval.csv")


def _spawn(args: list[str], prelude: str = "") -> subprocess.Popen:
    code = f"{prelude}\nimport sys\nfrom algd.cli import main\nsys.exit(main({args!r}))"
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def dying_at_rename(name: str, nth: int) -> str:
    """Code that makes the process SIGKILL itself at its nth rename onto a file called name,
    after the staging file is written and before it replaces the old one."""
    return (
        "import os, signal\n"
        "_replace, _calls = os.replace, []\n"
        "def _dying(src, dst, *a, **k):\n"
        f"    if str(dst).endswith({name!r}):\n"
        "        _calls.append(1)\n"
        f"        if len(_calls) == {nth}:\n"
        "            os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return _replace(src, dst, *a, **k)\n"
        "os.replace = _dying\n"
    )


def _wait_for_rows(path: Path, rows: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and len(path.read_text().splitlines()) > rows:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no progress")


def _resume_and_compare(run: Path, straight: dict[str, str]) -> None:
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert {n: (run / n).read_text() for n in LOGS} == straight
    assert not list(run.glob(".checkpoint.npz.tmp-*"))


@pytest.mark.slow
@pytest.mark.xdist_group("straight")
def test_sigkill_during_training_resumes_exactly(straight, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _spawn(["train", *CRASH, "--run-dir", str(run)])
    _wait_for_rows(run / "metrics.csv", 12, proc)  # past the step-1000 checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    meta, _ = read_checkpoint(run / "checkpoint.npz")
    assert meta["loop"]["env_step"] in (1000, 1500)
    _resume_and_compare(run, straight)


@pytest.mark.xdist_group("straight")
@pytest.mark.slow
def test_sigkill_while_writing_checkpoint(straight, tmp_path: Path) -> None:
    """Killed between writing the staging file and renaming it over the 2nd checkpoint."""
    run = tmp_path / "run"
    proc = _spawn(["train", *CRASH, "--run-dir", str(run)], dying_at_rename("checkpoint.npz", 2))
    proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert list(run.glob(".checkpoint.npz.tmp-*"))  # the half-finished write is left over
    meta, _ = read_checkpoint(run / "checkpoint.npz")
    assert meta["loop"]["env_step"] == 500  # the last complete checkpoint
    _resume_and_compare(run, straight)


@pytest.mark.xdist_group("straight")
def test_sigterm_stops_gracefully(straight, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _spawn(["train", *CRASH, "--run-dir", str(run)])
    _wait_for_rows(run / "metrics.csv", 7, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped at step" in out and "--resume" in out
    meta, _ = read_checkpoint(run / "checkpoint.npz")
    stopped_at = int(out.split("stopped at step ")[1].split(";")[0])
    assert meta["loop"]["env_step"] == stopped_at and 600 <= stopped_at < 2000
    _resume_and_compare(run, straight)


# --- numerical faults -----------------------------------------------------------------------


def _poison_at(trainer: OffPolicyLoop, step: int, seed_index: int) -> None:
    """Corrupt one seed's replay buffer (every reward NaN) just before environment step
    ``step``."""
    original = trainer.step

    def poisoned() -> None:
        if trainer.env_step == step:
            trainer.buffers.columns.reward[seed_index] = np.nan  # host buffers on this CPU
        original()

    trainer.step = poisoned  # type: ignore[method-assign]


def test_non_finite_update_stops_with_a_named_error(tmp_path: Path) -> None:
    cfg = toy("sac_lag", tmp_path / "run", **{**TINY, "total_steps": 1200})
    run_dir = create(cfg).path
    trainer = OffPolicyLoop(cfg, resume=False, console=False)
    _poison_at(trainer, 700, 0)
    with pytest.raises(
        NumericalError,
        match=r"non-finite loss/q \(nan\) and \d+ more in the update at environment step 700",
    ):
        trainer.run()
    meta, arrays = read_checkpoint(run_dir / "checkpoint.npz")
    assert meta["loop"]["env_step"] == 600  # the last good checkpoint is kept
    assert all(np.isfinite(v).all() for k, v in arrays.items() if k.startswith("agent/"))
    assert isinstance(NumericalError("x"), AlgdError)  # so the CLI exits 2 with one line


# --- every number flag of every subcommand, refused in one line -----------------------------
# Generated from the commands' dataclasses (and algd train's TrainConfig), so that a new flag
# joins the corpus by itself. The agent's flags have their own cases above (TRAIN_CASES).

POSITIONALS = {
    "eval": ["{tmp}/run"],
    "export": ["{tmp}/run", "{tmp}/policy.npz"],
    "landscape": ["{tmp}/run"],
    "plot": ["{tmp}/run"],
    "report": ["{tmp}"],
    "bench": ["--out", "{tmp}/grid"],  # required
}


def _number_flag_cases() -> list[tuple[str, str, str]]:
    import typing

    from algd.commands import COMMANDS

    cases = []
    for command, cls in COMMANDS.items():
        owner = TrainConfig if command == "train" else cls
        for name, hint in typing.get_type_hints(owner).items():
            kinds = set(typing.get_args(hint)) | {hint}
            if bool in kinds or not kinds & {int, float}:
                continue
            bad = ["x", "nan", "inf"] if float in kinds else ["x", "1.5"]
            cases += [(command, name, value) for value in bad]
    return cases


@pytest.mark.parametrize(("command", "field", "value"), _number_flag_cases())
def test_every_number_flag_refuses_a_bad_value(
    command: str, field: str, value: str, tmp_path: Path, capsys
) -> None:
    flag = "--" + field.replace("_", "-")
    args = [a.format(tmp=tmp_path) for a in POSITIONALS.get(command, [])]
    argv = [command, *args, flag, value]
    if command == "train":
        argv += ["--preset", "toy", "--run-dir", str(tmp_path / "run")]
    before = snapshot(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("algd: error:") and err.count("\n") == 1, err
    assert flag in err or f"'{field}'" in err, err
    assert snapshot(tmp_path) == before and not (tmp_path / "run").exists()


def _missing_value_cases() -> list[tuple[str, str]]:
    """Every flag that takes a value, given none, for each subcommand but train (whose own
    first-pass flags are cases in tests/test_cli.py)."""
    import typing

    from algd.commands import COMMANDS

    cases = []
    for command, cls in COMMANDS.items():
        if command == "train":
            continue
        hints = typing.get_type_hints(cls, include_extras=True)
        for name, hint in hints.items():
            positional = "Positional" in repr(hint) or "PositionalRequiredArgs" in repr(hint)
            if hint is bool or positional:
                continue
            cases.append((command, name))
    return cases


@pytest.mark.parametrize(("command", "field"), _missing_value_cases())
def test_every_flag_missing_its_value_is_one_line(
    command: str, field: str, tmp_path: Path, capsys
) -> None:
    flag = "--" + field.replace("_", "-")
    args = [a.format(tmp=tmp_path) for a in POSITIONALS.get(command, [])]
    before = snapshot(tmp_path)
    assert main([command, *args, flag]) == 2
    err = capsys.readouterr().err
    assert err.startswith("algd: error:") and err.count("\n") == 1, err
    assert flag in err, err
    assert snapshot(tmp_path) == before


def _choice_cases() -> list[tuple[str, str]]:
    """Every flag with a fixed set of choices (a Literal), for every subcommand and for algd
    train's run and agent settings, as (command, flag)."""
    import dataclasses
    import typing

    from algd.commands import COMMANDS
    from algd.config import AgentConfig

    def literal_flags(cls: type, prefix: str) -> list[str]:
        out = []
        for name, hint in typing.get_type_hints(cls).items():
            kinds = [hint, *typing.get_args(hint)]
            if dataclasses.is_dataclass(hint):
                out += literal_flags(hint, f"{prefix}{name}.")
            elif any(typing.get_origin(k) is typing.Literal for k in kinds):
                out.append(f"--{prefix}{name.replace('_', '-')}")
        return out

    cases = [("train", flag) for flag in literal_flags(TrainConfig, "")]
    cases += [("train", flag) for flag in literal_flags(AgentConfig, "agent.")]
    for command, cls in COMMANDS.items():
        if command != "train":
            cases += [(command, flag) for flag in literal_flags(cls, "")]
    return cases


@pytest.mark.parametrize(("command", "flag"), _choice_cases())
def test_every_choice_flag_refuses_an_unknown_choice(
    command: str, flag: str, tmp_path: Path, capsys
) -> None:
    args = [a.format(tmp=tmp_path) for a in POSITIONALS.get(command, [])]
    argv = [command, *args, flag, "no-such-choice"]
    if command == "train":
        argv += ["--preset", "toy", "--run-dir", str(tmp_path / "run")]
    before = snapshot(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("algd: error:") and err.count("\n") == 1, err
    assert "no-such-choice" in err, err
    assert snapshot(tmp_path) == before and not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", sorted(__import__("algd.commands").commands.COMMANDS))
def test_every_command_refuses_an_unknown_flag(command: str, tmp_path: Path, capsys) -> None:
    args = [a.format(tmp=tmp_path) for a in POSITIONALS.get(command, [])]
    before = snapshot(tmp_path)
    assert main([command, *args, "--no-such-flag", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("algd: error:") and err.count("\n") == 1, err
    assert "--no-such-flag" in err, err
    assert snapshot(tmp_path) == before


def test_checkpoint_settings_pass_older_checkpoints_and_new_fields(tmp_path: Path) -> None:
    """A checkpoint's recorded settings stop a resume only where the running config gives a
    recorded setting another value: a checkpoint without settings (written before they were
    recorded) and a setting the checkpoint lacks (a field added since) pass."""
    from algd.checkpoint import check_settings

    path = tmp_path / "checkpoint.npz"
    running = {"agent.lagrangian.rho": 1.0, "agent.lagrangian.eval_gap_cap": None}
    check_settings(None, running, path)
    check_settings({"agent.lagrangian.rho": 1.0}, running, path)
    check_settings({"agent.lagrangian.rho": 1.0, "gone": 3}, running, path)
    with pytest.raises(CheckpointError, match="written with agent.lagrangian.rho = 2.0"):
        check_settings({"agent.lagrangian.rho": 2.0}, running, path)
