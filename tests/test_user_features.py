"""What users ask for: a trained policy as an object and as a file, videos of evaluations,
Weights & Biases logging (offline), their own environment, and plots of a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import algd
from algd.api import load_agent
from algd.checkpoint import write_npz
from algd.cli import main
from algd.errors import AlgdError
from algd.training import train
from helpers import ROOT, quick, run_cli, toy


def _one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("algd: error:") and err.count("\n") == 1 and message in err, err


# --- a trained policy -----------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["algd", "ppo_lag"])
def test_exported_policy_acts_as_the_run(algo: str, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    settings = quick(400, every=200) if algo == "algd" else {"total_steps": 300, "eval_every": 300}
    train(toy(algo, run, **settings), console=False)
    out = tmp_path / "policy.npz"
    assert main(["export", str(run), str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["bytes"] == out.stat().st_size > 0 and printed["algo"] == algo
    _, agent, state, _ = load_agent(run)
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    expected = np.stack([agent.act(state, o, None, deterministic=True) for o in obs])
    for source in (out, run):  # the file and the run directory give the same policy
        policy = algd.load_policy(source)
        single = np.stack([policy.act(o) for o in obs])  # one observation at a time
        np.testing.assert_array_equal(single, expected)
        # A batch is one program over all rows: equal up to float rounding.
        np.testing.assert_allclose(policy.act(obs), expected, rtol=0, atol=1e-6)
    # Stochastic actions are seeded: the same seed repeats them, another does not.
    a = algd.load_policy(out, seed=3).act(obs, deterministic=False)
    b = algd.load_policy(out, seed=3).act(obs, deterministic=False)
    c = algd.load_policy(out, seed=4).act(obs, deterministic=False)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and np.all(np.abs(a) <= 1.0)
    with pytest.raises(AlgdError, match=r"takes observations of shape \(3,\)"):
        policy.act(np.zeros(4))
    # An existing file is kept unless --overwrite.
    before = out.read_bytes()
    _one_line(["export", str(run), str(out)], "already exists (pass --overwrite", capsys)
    assert out.read_bytes() == before


@pytest.mark.xdist_group("finished_runs")
def test_damaged_or_newer_policy_files_are_refused(finished, tmp_path: Path) -> None:
    good = tmp_path / "p.npz"
    algd.export_policy(finished["a"], good)
    with np.load(good) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(arrays["__meta__"].tobytes().decode())
    newer = tmp_path / "newer.npz"
    arrays["__meta__"] = np.frombuffer(
        json.dumps({**header, "format_version": 99}).encode(), np.uint8
    )
    with open(newer, "wb") as f:
        write_npz(f, arrays)
    with pytest.raises(AlgdError, match="format version 99; this algd reads version 1"):
        algd.load_policy(newer)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:500])
    with pytest.raises(AlgdError, match="truncated or corrupt"):
        algd.load_policy(truncated)
    with pytest.raises(AlgdError, match="neither a run directory nor a policy file"):
        algd.load_policy(tmp_path / "missing.npz")


# --- videos ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_video_of_an_evaluation(tmp_path: Path) -> None:
    """A short episode of a velocity task rendered headless: one frame per step plus the first,
    with the text band on top; a folder gets one file per episode."""
    import imageio.v2 as imageio

    run = tmp_path / "run"
    args = ["train", "--algo", "ppo_lag", "--env", "PaperHopperVelocity-v0"]
    args += ["--episode-length", "20", "--total-steps", "40", "--eval-every", "0"]
    args += ["--eval-episodes", "1", "--quiet", "--run-dir", str(run)]
    assert run_cli(*args).returncode == 0
    video = tmp_path / "eval.mp4"
    done = run_cli("eval", str(run), "--video", str(video), "--episodes", "1")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    with imageio.get_reader(video) as reader:  # its length is unknown until decoded
        frames = np.stack([frame for frame in reader])
    length = int(result["length_mean"])
    assert result["frames"] == [length + 1] and frames.shape[0] == length + 1
    assert frames.shape[1:] == (512, 480, 3) and frames[:, 40:].std() > 1.0  # not blank
    folder = tmp_path / "episodes"
    done = run_cli("eval", str(run), "--video", str(folder), "--episodes", "2")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["episode_000.mp4", "episode_001.mp4"]
    again = run_cli("eval", str(run), "--video", str(video), "--episodes", "1")
    assert again.returncode == 2 and "already exists (pass --overwrite" in again.stderr


@pytest.mark.xdist_group("finished_runs")
def test_video_of_a_task_without_a_view_is_one_line(finished, tmp_path: Path) -> None:
    done = run_cli("eval", str(finished["a"]), "--video", str(tmp_path / "v.mp4"))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "algd: error: env ToyRing-v0 cannot render frames (no simulator view)"
    )
    assert list(tmp_path.iterdir()) == []  # no partial file left


# --- Weights & Biases -----------------------------------------------------------------------------


def test_wandb_offline_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--preset", "toy", "--algo", "sac_lag", "--total-steps", "600"]
    args += ["--warmup-steps", "300", "--learning-starts", "300", "--eval-every", "300"]
    args += ["--log-every", "100", "--wandb", "--wandb-mode", "offline", "--quiet"]
    done = run_cli(*args, "--run-dir", str(run))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # W&B's own notices stay out of the user's terminal
    (offline,) = (run / "wandb").glob("offline-run-*")
    (log,) = offline.glob("run-*.wandb")
    assert log.stat().st_size > 1000  # the metrics and evaluations went in
    assert json.loads((run / "config.json").read_text())["wandb"] is True
    # Resuming continues the same W&B run, again without a word on stderr (no "resume will be
    # ignored" warning in offline mode).
    again = run_cli("train", "--resume", str(run), "--total-steps", "700", "--quiet")
    assert again.returncode == 0 and again.stderr == "", again.stderr


# --- your own environment -------------------------------------------------------------------------


@pytest.mark.slow
def test_custom_env_example_runs(tmp_path: Path) -> None:
    """examples/custom_env.py through the API (ALGD and SAC-Lag) and its env through the CLI."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "examples")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "custom_env.py"), "--steps", "400"]
        + ["--out", str(tmp_path / "api")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "algd on HazardPoint-v0" in done.stdout and "sac_lag on HazardPoint-v0" in done.stdout
    run = tmp_path / "cli"
    args = [sys.executable, "-m", "algd.cli", "train", "--algo", "sac_lag"]
    args += ["--env", "custom_env:HazardPoint-v0", "--cost-limit", "5", "--total-steps", "300"]
    args += ["--warmup-steps", "200", "--learning-starts", "200", "--eval-every", "0", "--quiet"]
    # The example's network sizes: the program compiled by the API run above is reused.
    args += ["--utd", "1", "--agent.critic-hidden", "64", "64", "--agent.actor-hidden", "64", "64"]
    done = subprocess.run(
        [*args, "--run-dir", str(run)], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr  # no third-party notices
    summary = json.loads((run / "summary.json").read_text())
    assert summary["cost_limit"] == 5.0 and summary["env"] == "custom_env:HazardPoint-v0"
    # The wrapper form: a cost added to an existing MuJoCo task.
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from algd.envs import make_env

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cheetah = make_env("custom_env:SpeedLimitedHalfCheetah-v0")
        # (the example wraps the current HalfCheetah, so Gymnasium has no notice to print)
        assert not [w for w in caught if "out of date" in str(w.message)], caught
        cheetah.reset(0)
        _, _, cost, *_ = cheetah.step(np.zeros(6))
        assert cost in (0.0, 1.0) and cheetah.spec.max_episode_steps == 1000
        cheetah.close()
    finally:
        sys.path.remove(str(ROOT / "examples"))


# --- plots of one run -----------------------------------------------------------------------------


@pytest.mark.xdist_group("finished_runs")
def test_plot_of_runs(finished, tmp_path: Path, capsys) -> None:
    out = tmp_path / "fig"
    assert main(["plot", str(finished["a"]), str(finished["b"]), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in printed["runs"]] == ["sac_lag s0 (a)", "sac_lag s0 (b)"]
    assert (out / "plot.png").stat().st_size > 10_000 and (out / "plot.svg").is_file()
    before = (out / "plot.png").read_bytes()
    _one_line(["plot", str(finished["a"]), "--out", str(out)], "already exists", capsys)
    assert (out / "plot.png").read_bytes() == before


@pytest.mark.xdist_group("finished_runs")
def test_the_python_api_is_discoverable(finished) -> None:
    """dir(algd) lists the API, its functions say how to use them, and a Policy has the
    Gymnasium spaces of what it takes and returns."""
    import gymnasium

    import algd

    assert {"load_policy", "export_policy", "Policy", "train", "evaluate_run"} <= set(dir(algd))
    assert "load_policy" in (algd.__doc__ or "") and "act(obs)" in (algd.load_policy.__doc__ or "")
    policy = algd.load_policy(finished["a"])
    assert isinstance(policy.observation_space, gymnasium.spaces.Box)
    assert policy.observation_space.shape == (policy.obs_dim,)
    assert isinstance(policy.action_space, gymnasium.spaces.Box)
    obs = policy.observation_space.sample().clip(-1, 1)
    assert policy.action_space.contains(policy.act(obs))
    assert policy.action_space.contains(policy.act(obs, deterministic=False))


@pytest.mark.xdist_group("finished_runs")
def test_action_spread_tells_a_policy_stuck_at_the_box_edge(finished, monkeypatch) -> None:
    """scripts/action_spread.py: a Gaussian policy's samples spread inside the box; the same
    policy made to return the box's upper corner reads all at the edge with no spread."""
    import importlib.util

    path = ROOT / "scripts" / "action_spread.py"
    spec = importlib.util.spec_from_file_location("action_spread", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    m = script.spread(str(finished["a"]))
    assert m["std"].shape[1] == 2 and (m["std"] > 0.01).all()
    assert m["edge"] < 0.5 and np.isfinite(m["return"]) and m["cost"] >= 0
    assert "at the edge" in script.line("run", m)

    def corner(self, obs, deterministic=True):
        x = np.asarray(obs, np.float32)
        return np.broadcast_to(self.action_high, (*x.shape[:-1], self.act_dim)).copy()

    monkeypatch.setattr(algd.policy.Policy, "act", corner)
    stuck = script.spread(str(finished["a"]))
    assert stuck["edge"] == 1.0 and (stuck["std"] == 0).all()
