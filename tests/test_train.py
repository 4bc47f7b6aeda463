"""Runs, checkpoints, resume and determinism on the built-in task."""

from __future__ import annotations

import csv
import json
import shutil
import signal
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np
import pytest

from algd.agents import build_agent
from algd.bench.grid import print_progress
from algd.checkpoint import read_checkpoint, split_arrays, unflatten_state
from algd.config import agent_from_dict, apply_overrides
from algd.errors import CheckpointError, RunDirError
from algd.rundir import create, load_run_config
from algd.stop import StopFlag
from algd.training import resume, run_members, train
from algd.training.offpolicy import OffPolicyLoop
from helpers import toy

SHORT = {
    "total_steps": 1000,
    "warmup_steps": 300,
    "learning_starts": 300,
    "eval_every": 500,
    "checkpoint_every": 500,
    "log_every": 100,
    "eval_episodes": 2,
}


def files(run_dir: Path) -> dict[str, str]:
    return {n: (run_dir / n).read_text() for n in ("metrics.csv", "episodes.csv", "eval.csv")}


# Toy runs at SHORT settings that several tests start from: (algorithm, steps).
RUNS = {"sac_lag": ("sac_lag", 1000), "sac_lag_500": ("sac_lag", 500), "algd_400": ("algd", 400)}
# The tests that start from them share one worker, so each run is trained once.
SHARED = pytest.mark.xdist_group("train_runs")


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``shared_run(name)``: the run RUNS[name], trained on its first use. Tests read it, or
    copy it (``copy_of``) before they change it."""
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            algo, steps = RUNS[name]
            run = tmp_path_factory.mktemp(name) / "run"
            train(toy(algo, run, **{**SHORT, "total_steps": steps}), console=False)
            made[name] = run
        return made[name]

    return get


def copy_of(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


@SHARED
def test_run_directory_contents(shared_run: Callable[[str], Path]) -> None:
    run = shared_run("sac_lag")
    summary = json.loads((run / "summary.json").read_text())
    for name in (
        "config.json",
        "metrics.csv",
        "episodes.csv",
        "eval.csv",
        "timing.csv",
        "checkpoint.npz",
        "summary.json",
    ):
        assert (run / name).is_file(), name
    assert any((run / "tb").iterdir())
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["agent"]["critics"]["cost_ensemble"] == 1 and cfg["algo"] == "sac_lag"  # resolved
    # The run's files name its directory relative to itself: no machine's path in them.
    assert cfg["run_dir"] == "." and summary["run_dir"] == "."
    assert str(run) not in (run / "config.json").read_text() + (run / "summary.json").read_text()
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,episodes,updates,train/return,train/cost,lambda")
    assert "loss/actor" in rows[0] and "loss/qc" in rows[0] and "violation" in rows[0]
    assert len(rows) == 1 + 10
    assert rows[1].split(",")[rows[0].split(",").index("loss/q")] == "nan"  # before learning
    assert rows[-1].split(",")[rows[0].split(",").index("loss/q")] != "nan"
    assert summary["finished"] and summary["env_steps"] == 1000
    assert summary["final_eval"]["cost_mean"] >= 0


@SHARED
def test_checkpoint_round_trip_gives_identical_actions(shared_run: Callable[[str], Path]) -> None:
    run = shared_run("algd_400")
    cfg = load_run_config(run)
    from algd.envs import make_env

    env = make_env(cfg.env)
    agent = build_agent(cfg, env.spec)
    meta, arrays = read_checkpoint(run / "checkpoint.npz")
    state = unflatten_state(agent.init(jax.random.PRNGKey(99)), split_arrays(arrays, "agent"), "x")
    fresh = build_agent(cfg, env.spec)
    state2 = unflatten_state(fresh.init(jax.random.PRNGKey(7)), split_arrays(arrays, "agent"), "x")
    obs = np.array([0.1, 0.5, -0.3], np.float32)
    a1 = agent.act(state, obs, None, deterministic=True)
    a2 = fresh.act(state2, obs, None, deterministic=True)
    np.testing.assert_array_equal(a1, a2)
    assert meta["loop"]["env_step"] == 400
    untrained = fresh.act(fresh.init(jax.random.PRNGKey(7)), obs, None, deterministic=True)
    assert not np.array_equal(a1, untrained)


@SHARED
def test_resume_is_exact(shared_run: Callable[[str], Path], tmp_path: Path) -> None:
    """A run stopped at step 500 and resumed ends with exactly the metrics of an uninterrupted
    run: every key and numpy generator derives from the seed and step, all state is saved."""
    parted = copy_of(shared_run("sac_lag_500"), tmp_path / "parted")
    resume(parted, total_steps=1000, console=False)
    assert files(parted) == files(shared_run("sac_lag"))


@SHARED
def test_finished_run_without_its_checkpoint_is_skipped_not_retrained(
    shared_run: Callable[[str], Path], tmp_path: Path
) -> None:
    """Committed results keep a run's small files only: a re-run skips it and leaves them be."""
    run = copy_of(shared_run("sac_lag_500"), tmp_path / "run")
    for ckpt in run.glob("checkpoint*"):
        ckpt.unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    (record,) = run_members([run], console=False)
    assert record["status"] == "skipped" and record["env_steps"] == 500
    with pytest.raises(RunDirError, match="is finished"):
        resume(run, console=False)
    with pytest.raises(RunDirError, match="has no checkpoint to continue from"):
        resume(run, total_steps=1000, console=False)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


@SHARED
def test_a_part_that_diverges_leaves_the_other_runs_be(
    shared_run: Callable[[str], Path], tmp_path: Path, monkeypatch
) -> None:
    """run_members (a grid's group, a group's resume): a finished seed stays skipped and keeps
    its files when the part still to train diverges."""
    done = copy_of(shared_run("sac_lag_500"), tmp_path / "s0")
    fresh = tmp_path / "s1"
    create(toy("sac_lag", fresh, seed=1, **{**SHORT, "total_steps": 500})).release()
    before = (done / "summary.json").read_text()
    original = OffPolicyLoop.step

    def poisoned(self: OffPolicyLoop) -> None:
        if self.env_step == 400:
            self.buffers.columns.reward[0] = np.nan  # host buffers on this CPU
        original(self)

    monkeypatch.setattr(OffPolicyLoop, "step", poisoned)
    skipped, failed = run_members([done, fresh], console=False)
    assert skipped["status"] == "skipped" and (done / "summary.json").read_text() == before
    assert failed["status"] == "failed" and "non-finite" in failed["error"]
    assert json.loads((fresh / "failure.json").read_text())["error"] == failed["error"]


class StopAfter(StopFlag):
    """A stop flag that reads as SIGTERM from its ``reads``-th look on (a signal mid-run)."""

    def __init__(self, reads: int) -> None:
        self.reads = reads

    @property
    def signum(self) -> int | None:  # type: ignore[override]
        self.reads -= 1
        return int(signal.SIGTERM) if self.reads < 0 else None

    @signum.setter
    def signum(self, value: int | None) -> None:
        pass


@SHARED
def test_a_stopped_member_is_reported_as_stopped(
    shared_run: Callable[[str], Path], tmp_path: Path, capsys
) -> None:
    run = copy_of(shared_run("sac_lag_500"), tmp_path / "run")
    (record,) = run_members([run], total_steps=1000, console=False, stop=StopAfter(150))
    assert record["status"] == "stopped" and 500 < record["env_steps"] < 1000
    assert record["stopped_by_signal"] == signal.SIGTERM and not record["finished"]
    print_progress(record, 1, 1)
    assert "stopped  ToyRing-v0 sac_lag seed 0 at step" in capsys.readouterr().err


@pytest.mark.parametrize("margin", [0.0, 0.2])
def test_episodes_violation_is_the_last_episodes_cost_minus_the_limit(
    tmp_path: Path, margin: float
) -> None:
    """violation=episodes: each update's multiplier signal is the mean cost of the last k
    finished training episodes minus the limit less the cost margin, and a resumed run
    carries those episodes."""
    cfg = toy("sac_lag", tmp_path / "straight", **SHORT)
    settings = {"violation": "episodes", "violation_episodes": 2, "cost_margin": margin}
    cfg = apply_overrides(cfg, {f"agent.{k}": v for k, v in settings.items()})
    train(cfg, console=False)
    episodes = list(
        csv.DictReader((tmp_path / "straight" / "episodes.csv").read_text().splitlines())
    )
    rows = list(csv.DictReader((tmp_path / "straight" / "metrics.csv").read_text().splitlines()))
    limit = json.loads((tmp_path / "straight" / "summary.json").read_text())["cost_limit"]
    checked = 0
    for row in rows:
        step = int(row["step"])
        if step <= cfg.learning_starts:
            continue  # no update yet
        done = [float(e["cost"]) for e in episodes if int(e["step"]) <= step][-2:]
        expected = np.mean(done) - limit * (1.0 - margin) if done else 0.0
        assert float(row["violation"]) == pytest.approx(expected, rel=1e-5, abs=1e-4)
        checked += bool(done)
    assert checked >= 3
    if margin:
        return  # the resume half does not depend on the margin
    parted = tmp_path / "parted"
    train(replace(cfg, run_dir=str(parted), total_steps=500), console=False)
    resume(parted, total_steps=1000, console=False)
    assert files(parted) == files(tmp_path / "straight")


@pytest.mark.parametrize(("window", "cap"), [(1, None), (3, None), (1, 0.1)])
def test_eval_gap_adds_the_evaluations_excess_over_the_episodes(
    tmp_path: Path, window: int, cap: float | None
) -> None:
    """eval_gap: after each evaluation, the episodes' signal gains the median over the last
    ``window`` evaluations of how far each one's cost exceeded the mean of the last k training
    episodes then (0 when that median is negative, at most cap d), and a resumed run carries
    the gaps."""
    cfg = toy("sac_lag", tmp_path / "straight", **{**SHORT, "eval_every": 100})
    settings = {
        "violation": "episodes",
        "violation_episodes": 2,
        "eval_gap": True,
        "eval_gap_window": window,
        "eval_gap_cap": cap,
    }
    cfg = apply_overrides(cfg, {f"agent.lagrangian.{k}": v for k, v in settings.items()})
    train(cfg, console=False)
    read = lambda name: list(  # noqa: E731
        csv.DictReader((tmp_path / "straight" / name).read_text().splitlines())
    )
    episodes, evals = read("episodes.csv"), read("eval.csv")
    limit = json.loads((tmp_path / "straight" / "summary.json").read_text())["cost_limit"]

    def last_costs(step: int) -> list[float]:
        return [float(e["cost"]) for e in episodes if int(e["step"]) <= step][-2:]

    def excess(e: dict[str, str]) -> float:
        return float(e["cost_vs_limit"]) - np.mean(last_costs(int(e["step"])))

    gaps, capped = [], 0
    for row in read("metrics.csv")[3:]:  # from the first update on
        step = int(row["step"])
        seen = [excess(e) for e in evals if int(e["step"]) < step and last_costs(int(e["step"]))]
        gap = max(0.0, float(np.median(seen[-window:]))) if seen else 0.0
        if cap is not None and gap > cap * limit:
            gap, capped = cap * limit, capped + 1
        expected = np.mean(last_costs(step)) + gap - limit
        assert float(row["violation"]) == pytest.approx(expected, rel=1e-5, abs=1e-4)
        gaps.append(gap)
    assert max(gaps) > 0 and min(gaps) == 0  # the gap acted, and not from the start
    assert (cap is None) == (capped == 0)  # and a cap bound it
    parted = tmp_path / "parted"  # (stopped at an evaluation: a run evaluates where it ends)
    train(replace(cfg, run_dir=str(parted), total_steps=600), console=False)
    resume(parted, total_steps=1000, console=False)
    assert files(parted) == files(tmp_path / "straight")


@SHARED
def test_same_seed_same_metrics(shared_run: Callable[[str], Path], tmp_path: Path) -> None:
    short = {**SHORT, "total_steps": 400}
    a = shared_run("algd_400")
    train(toy("algd", tmp_path / "b", **short), console=False)
    train(toy("algd", tmp_path / "c", seed=1, **short), console=False)
    assert files(a) == files(tmp_path / "b")
    assert files(a)["metrics.csv"] != files(tmp_path / "c")["metrics.csv"]


@SHARED
def test_refuses_existing_run_dir(shared_run: Callable[[str], Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("results")
    with pytest.raises(RunDirError, match="is not an algd run directory"):
        train(toy("sac_lag", run, **SHORT, overwrite=True), console=False)
    assert (run / "keep.txt").read_text() == "results"
    done = copy_of(shared_run("sac_lag_500"), tmp_path / "done")
    with pytest.raises(RunDirError, match="already exists"):
        train(toy("sac_lag", done, **SHORT), console=False)


@SHARED
def test_corrupt_and_mismatched_checkpoints(
    shared_run: Callable[[str], Path], tmp_path: Path
) -> None:
    run = copy_of(shared_run("sac_lag_500"), tmp_path / "run")
    ckpt = run / "checkpoint.npz"
    good = ckpt.read_bytes()
    ckpt.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        resume(run, total_steps=600, console=False)
    # A checkpoint from a different network shape.
    other = tmp_path / "other"
    train(
        toy(
            "sac_lag",
            other,
            **{**SHORT, "total_steps": 400},
            agent=agent_from_dict({"critic_hidden": (32, 32)}),
        ),
        console=False,
    )
    ckpt.write_bytes((other / "checkpoint.npz").read_bytes())
    with pytest.raises(CheckpointError, match="does not match this run"):
        resume(run, total_steps=600, console=False)
    assert json.loads((run / "config.json").read_text())["total_steps"] == 500  # unchanged
    # A checkpoint in the older format (stacked critic weights) is refused with that reason.
    with np.load(other / "checkpoint.npz") as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(arrays["__meta__"].tobytes().decode())
    arrays["__meta__"] = np.frombuffer(json.dumps({**meta, "format_version": 1}).encode(), np.uint8)
    with ckpt.open("wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(CheckpointError, match="format 1 .*older algd"):
        resume(run, total_steps=600, console=False)


@pytest.mark.parametrize("cap", [5.0, pytest.param(None, marks=pytest.mark.slow)])
def test_update_cap_halves_the_first_epochs_updates(tmp_path: Path, cap) -> None:
    """The reference caps an epoch's gradient steps at 5 x the environment steps since the
    warm-up: at UTD 10 the first epoch (one 100-step ToyRing episode) updates on every second
    step, later epochs on every step."""
    cfg = toy(
        "sac_lag",
        tmp_path / "run",
        total_steps=500,
        warmup_steps=300,
        learning_starts=300,
        utd=10,
        batch_size=32,
        log_every=100,
        eval_every=0,
        eval_episodes=1,
        checkpoint_every=0,
        update_cap=cap,
        agent=agent_from_dict({"critic_hidden": (16, 16), "actor_hidden": (16, 16)}),
    )
    train(cfg, console=False)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    col = rows[0].split(",").index("updates")
    updates = [int(r.split(",")[col]) for r in rows[1:]]
    assert updates == ([0, 0, 0, 500, 1500] if cap else [0, 0, 0, 1000, 2000])


def test_a_run_config_from_before_a_field_existed_reads_with_its_old_value(tmp_path: Path) -> None:
    """config.json written before replacement, log_prob, cost_init and ve_single_level existed:
    the run resumes and evaluates as it trained (the values of then); a config the user writes
    gets today's defaults."""
    from algd.config import from_dict, to_dict
    from algd.config.io import LEGACY_AGENT_FIELDS, LEGACY_FIELDS

    data = to_dict(toy("algd", tmp_path))
    for name in LEGACY_FIELDS:
        del data[name]
    for family, name, _ in LEGACY_AGENT_FIELDS.values():
        del data["agent"][family][name]
    (tmp_path / "config.json").write_text(json.dumps(data))
    old = load_run_config(tmp_path)
    assert (old.replacement, old.agent.sac.log_prob) == (True, "exact")
    assert (old.agent.critics.cost_init, old.agent.diffusion.ve_single_level) == (
        "truncated",
        "sigma_max",
    )
    new = from_dict(data)
    assert (new.replacement, new.agent.sac.log_prob) == (False, "reference")
    assert (new.agent.critics.cost_init, new.agent.diffusion.ve_single_level) == (
        "normal",
        "sigma_min",
    )


def test_a_grid_progress_line_names_the_cost_the_limit_is_stated_in(capsys) -> None:
    record = {"status": "trained", "env": "E", "algo": "algd", "seed": 0, "run_dir": "r"}
    record["final_eval"] = {"return_mean": 1.0, "cost_vs_limit": 140.0}
    print_progress({**record, "cost_limit_kind": "discounted"}, 1, 2)
    print_progress({**record, "cost_limit_kind": "episode"}, 2, 2)
    discounted, summed = capsys.readouterr().err.splitlines()
    assert "return 1.00, discounted cost 140.00 -> r" in discounted
    assert "return 1.00, cost 140.00 -> r" in summed
