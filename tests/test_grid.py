"""`algd bench` grids: the Ray backend matches the local one; re-running skips and resumes."""

from __future__ import annotations

import json
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest

from algd.agents import default_config
from algd.bench.grid import GRID_PRESETS, SAFE_NAV_STEPS, GridSpec, expand, run_grid
from algd.cli import main
from algd.config import to_json
from algd.presets import PRESETS, preset
from algd.training import train
from helpers import quick
from test_reliability import _spawn, _wait_for_rows

SHORT = quick(400, every=200)
SPEC = GridSpec(("sac_lag",), ("ToyRing-v0",), (0, 1), base="toy", overrides=SHORT)
LOGS = ("metrics.csv", "episodes.csv", "eval.csv")


def logs(run: Path) -> dict[str, str]:
    return {n: (run / n).read_text() for n in LOGS}


def conflicting(out: Path, spec: GridSpec, seed: int) -> Path:
    """Make the run dir of one grid point hold a different config, so that point fails fast."""
    cfg, run_dir = next((c, d) for c, d in expand(spec, out) if c.seed == seed)
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(to_json(replace(cfg, total_steps=cfg.total_steps + 1)))
    return run_dir


@pytest.mark.slow
def test_ray_cluster_matches_local_backend(tmp_path: Path) -> None:
    spec = SPEC  # seed 1's run dir conflicts: it fails, seed 0 runs
    for backend in ("local", "ray"):
        conflicting(tmp_path / backend, spec, 1)
    local = run_grid(spec, str(tmp_path / "local"), backend="local", workers=1)
    remote = run_grid(spec, str(tmp_path / "ray"), backend="ray", workers=2)
    assert [r["status"] for r in local + remote] == ["trained", "failed"] * 2
    # The worker's one-line reason, not a wrapped remote traceback.
    for failed in (local[1], remote[1]):
        assert failed["error"].endswith("holds a different config; choose another output folder")
        assert "\n" not in failed["error"] and "Ray" not in failed["error"]
    a, b = local[0], remote[0]
    assert (a["seed"], a["final_eval"]) == (b["seed"], b["final_eval"]) == (0, a["final_eval"])
    assert logs(Path(a["run_dir"])) == logs(Path(b["run_dir"]))


@pytest.mark.slow  # tests/test_groups.py re-runs a grouped grid (skips, a resumed seed)
def test_rerun_skips_finished_and_resumes_interrupted(tmp_path: Path, capsys) -> None:
    """... also after the results folder moved (its configs name the old run directories)."""
    first, out = tmp_path / "first", tmp_path / "grid"
    (cfg0, _), (cfg1, _) = expand(SPEC, first)
    dir0, dir1 = (out / d.relative_to(first) for _, d in expand(SPEC, first))
    train(cfg0, console=False)  # finished
    # Interrupted: the same run stopped at its step-300 checkpoint.
    train(replace(cfg1, total_steps=300), console=False)
    (first / dir1.relative_to(out) / "config.json").write_text(to_json(cfg1) + "\n")
    (first / dir1.relative_to(out) / "summary.json").unlink()
    first.rename(out)
    finished = {p.name: p.stat().st_mtime_ns for p in dir0.iterdir() if p.is_file()}
    bad = conflicting(out, replace(SPEC, seeds=(2,)), 2)
    bad_config = (bad / "config.json").read_text()
    argv = ["bench", "--out", str(out), "--base", "toy", "--algos", "sac_lag"]
    argv += ["--envs", "ToyRing-v0", "--seeds", "0,1,2", "--workers", "1"]
    argv += [f"--set={k}={v}" for k, v in SHORT.items()]
    assert main(argv) == 2  # one point failed; the others still ran
    captured = capsys.readouterr()
    printed = captured.out.strip().splitlines()[-1]
    assert json.loads(printed) == {
        "out": str(out),
        "runs": 3,
        "skipped": 1,
        "resumed": 1,
        "failed": 1,
    }
    assert "1 of 3 runs failed" in captured.err.strip().splitlines()[-1]
    assert (bad / "config.json").read_text() == bad_config  # the conflicting dir is untouched
    assert {p.name: p.stat().st_mtime_ns for p in dir0.iterdir() if p.is_file()} == finished
    summary = json.loads((dir1 / "summary.json").read_text())
    assert summary["finished"] and summary["env_steps"] == 400


def test_a_spec_file_takes_names_as_a_list_or_one_string(tmp_path: Path) -> None:
    from algd.bench.grid import spec_from_args

    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"algos": "sac_lag,sac", "envs": ["ToyRing-v0"], "seeds": "0-2"}))
    spec = spec_from_args(None, str(path), None, None, None, [])
    assert (spec.algos, spec.envs, spec.seeds) == (("sac_lag", "sac"), ("ToyRing-v0",), (0, 1, 2))


def test_presets_expand_to_valid_configs(tmp_path: Path) -> None:
    paper = expand(GRID_PRESETS["paper"], tmp_path)
    assert len(paper) == 9 * 7 * 3
    pb1 = next(c for c, _ in paper if c.env == "SafetyPointButton1-v0")
    assert (pb1.episode_length, pb1.cost_limit, pb1.total_steps) == (400, 10.0, 105_000)
    assert pb1.layout == "fixed" and pb1.bootstrap == "reference"
    # `--preset reference` names the same settings for a single run of that env.
    single = preset("reference", env="SafetyPointButton1-v0")
    assert (single.episode_length, single.cost_limit, single.layout) == (400, 10.0, "fixed")
    assert preset("reference", env="PaperHopperVelocity-v0") == default_config(
        env="PaperHopperVelocity-v0"
    )
    hopper = next(c for c, _ in paper if c.env == "PaperHopperVelocity-v0")
    assert hopper.cost_limit is None and hopper.total_steps == 155_000
    assert hopper.layout == "random"
    sg = expand(GRID_PRESETS["safety-gymnasium"], tmp_path)
    assert all(c.episode_length is None and c.cost_limit is None for c, _ in sg)
    assert all(c.layout == "random" for c, _ in sg)
    smoke = expand(GRID_PRESETS["smoke"], tmp_path)
    assert {c.algo for c, _ in smoke} == {
        "algd",
        "lgd",
        "sac_lag",
        "sac_auglag",
        "cal",
        "sac",
        "hj",
        "ppo_lag",
    }
    # The algorithms' own toy settings apply under the grid's base preset.
    toy_ppo = next(c for c, _ in smoke if c.algo == "ppo_lag")
    assert toy_ppo.total_steps == 40_000 and toy_ppo.warmup_steps == 0
    assert next(c for c, _ in smoke if c.algo == "hj").agent.hj.threshold == 0.0
    cpu = expand(GRID_PRESETS["cpu"], tmp_path)
    assert len(cpu) == 8 * 2 * 3
    steps = {(c.env, c.algo): c.total_steps for c, _ in cpu}
    # per_pair layers: the diffusion methods' longer toy budget must not leak into other envs.
    assert steps["ToyRing-v0", "algd"] == 6000 and steps["ToyRing-v0", "sac"] == 4000
    assert steps["SafetyPointGoal1-v0", "algd"] == steps["SafetyPointGoal1-v0", "sac"] == 20_000
    ppo_sg = next(c for c, _ in cpu if (c.env, c.algo) == ("SafetyPointGoal1-v0", "ppo_lag"))
    assert ppo_sg.warmup_steps == 0 and ppo_sg.total_steps == 20_000
    paper_hj = next(c for c, _ in paper if c.algo == "hj")
    assert paper_hj.agent.hj.threshold == 1.0 and paper_hj.agent.critics.cost_ensemble == 1
    # cpu-real: the cpu training preset (task settings included) on two real tasks.
    real = {
        (c.env, c.algo): c for c, _ in expand(GRID_PRESETS["cpu-real"], tmp_path) if c.seed == 0
    }
    assert len(real) == 2 * 8
    nav = real["SafetyPointButton1-v0", "algd"]
    assert (nav.episode_length, nav.cost_limit, nav.layout, nav.utd) == (400, 10.0, "fixed", 1)
    assert (
        nav.agent.diffusion.mc_samples,
        nav.agent.critics.cost_ensemble,
        nav.agent.critics.critic_hidden,
    ) == (
        2,
        2,
        (128, 128),
    )
    assert nav == preset(
        "cpu", algo="algd", env="SafetyPointButton1-v0", seed=0, run_dir=nav.run_dir, progress=False
    )
    cheetah = "PaperHalfCheetahVelocity-v0"
    assert real[cheetah, "cal"].agent.critics.cost_ensemble == 4 and real[cheetah, "sac"].utd == 1
    assert real[cheetah, "hj"].agent.hj.threshold == pytest.approx(151.989 * 0.01)
    assert real["SafetyPointButton1-v0", "hj"].agent.hj.threshold == 0.0
    assert (
        real[cheetah, "ppo_lag"].warmup_steps == 0
        and real[cheetah, "ppo_lag"].total_steps == 50_000
    )


def test_a_grid_is_one_wandb_group(tmp_path: Path) -> None:
    spec = replace(SPEC, overrides={**SHORT, "wandb": True, "wandb_mode": "offline"})
    points = expand(spec, tmp_path / "my-grid")
    assert {c.wandb_group for c, _ in points} == {"my-grid"}
    # Without --wandb the configs stay as before (a re-run of an older grid still matches).
    assert {c.wandb_group for c, _ in expand(SPEC, tmp_path / "g")} == {None}


def assert_runs_follow_preset(name: str, configs: list) -> None:
    """Each of a safe-suite grid's run configs is --preset NAME for its algorithm, env, seed
    and run directory, at the suite's budget for its task."""
    for c in configs:
        expected = preset(
            name, algo=c.algo, env=c.env, seed=c.seed, run_dir=c.run_dir, progress=False
        )
        assert replace(c, total_steps=expected.total_steps) == expected
        assert c.total_steps == (100_000 if c.env.startswith("Paper") else SAFE_NAV_STEPS)


def test_safe_suite_grids(tmp_path: Path) -> None:
    """The safe suite: its six algorithms at the safe preset on seeds 100-104, HJ's HalfCheetah
    threshold the per-step limit less the margin; the authors' three at the cpu preset, seeds
    100-102, with the same budgets."""
    safe = expand(GRID_PRESETS["safe"], tmp_path)
    assert len(safe) == 6 * 2 * 5 and {c.seed for c, _ in safe} == set(range(100, 105))
    assert_runs_follow_preset("safe", [c for c, _ in safe if c.algo != "hj"])
    for c, _ in safe:  # HJ: its HalfCheetah threshold differs (below); the budgets do not
        assert c.total_steps == (100_000 if c.env.startswith("Paper") else SAFE_NAV_STEPS)
    hj = next(c for c, _ in safe if c.algo == "hj" and c.env.startswith("Paper"))
    margin = PRESETS["safe"]["agent.lagrangian.cost_margin"]
    assert hj.agent.hj.threshold == pytest.approx(1.51989 * (1 - margin), abs=1e-5)
    reference = expand(GRID_PRESETS["safe-reference"], tmp_path)
    assert {(c.algo, c.seed) for c, _ in reference} == {
        (a, s) for a in ("algd", "cal", "sac_auglag") for s in (100, 101, 102)
    }
    for c, _ in reference:
        assert (
            c.agent.lagrangian.violation,
            c.agent.lagrangian.multiplier,
            c.agent.lagrangian.cost_margin,
        ) == ("replay", "dual", 0)
        assert (c.agent.lagrangian.lambda_lr, c.utd, c.bootstrap) == (3e-3, 1, "reference")
        assert c.total_steps == (100_000 if c.env.startswith("Paper") else SAFE_NAV_STEPS)


def test_quick_preset_is_safe_at_a_short_budget_for_every_algorithm() -> None:
    """--preset quick applies cpu, then safe (each with the algorithms' changes), then its
    own budget; the task's protocol comes with it."""
    from algd.presets import PRESETS

    for algo in ("algd", "sac_lag", "hj", "ppo_lag"):
        for env in ("PaperHalfCheetahVelocity-v0", "SafetyPointCircle1-v0"):
            safe, quick = preset("safe", algo=algo, env=env), preset("quick", algo=algo, env=env)
            assert (quick.total_steps, quick.eval_every) == (30_000, 3000)
            own = {"total_steps", "eval_every"}
            assert own == set(PRESETS["quick"])
            rest = {f: getattr(quick, f) for f in vars(quick) if f not in own}
            assert rest == {f: getattr(safe, f) for f in vars(safe) if f not in own}
    nav = preset("quick", env="SafetyPointCircle1-v0")
    assert (nav.episode_length, nav.cost_limit, nav.layout) == (400, 10.0, "fixed")


def test_safe_preset_extends_cpu_with_each_algorithms_changes() -> None:
    """--preset safe applies cpu first, with the algorithms' own cpu changes, then its own."""
    env = "PaperHalfCheetahVelocity-v0"
    algd = preset("safe", algo="algd", env=env)
    assert (algd.agent.diffusion.mc_samples, algd.agent.critics.cost_ensemble, algd.utd) == (
        2,
        2,
        1,
    )
    assert (algd.agent.lagrangian.multiplier, algd.agent.lagrangian.violation, algd.bootstrap) == (
        "multipliers",
        "episodes",
        "terminated",
    )
    assert algd.total_steps == 100_000 and algd.agent.lagrangian.cost_margin > 0
    assert preset("safe", algo="hj", env=env).agent.hj.threshold == 0.0
    ppo = preset("safe", algo="ppo_lag", env=env)
    assert (
        ppo.agent.lagrangian.lambda_lr,
        ppo.agent.lagrangian.multiplier,
        ppo.agent.lagrangian.violation,
    ) == (
        0.05,
        "dual",
        "replay",
    )
    assert (
        ppo.agent.lagrangian.cost_margin == algd.agent.lagrangian.cost_margin
        and ppo.warmup_steps == 0
    )
    nav = preset("safe", algo="sac_lag", env="SafetyPointGoal1-v0")
    assert (nav.episode_length, nav.cost_limit, nav.layout) == (400, 10.0, "fixed")


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":  # ended, waiting for its new parent to collect it
            return True
        time.sleep(0.1)
    return False


def test_sigterm_stops_the_grid_and_every_worker(tmp_path: Path, capsys) -> None:
    """SIGTERM to `algd bench`: the running group checkpoints and reports "stopped", the group
    not started yet is reported and not started, the command exits 143 and leaves no process
    behind; the same command then finishes both."""
    out = tmp_path / "grid"
    settings = quick(1000, every=200)
    spec = GridSpec(("sac_lag", "sac"), ("ToyRing-v0",), (0,), base="toy", overrides=settings)
    (_, first), (_, second) = expand(spec, out)
    argv = ["bench", "--out", str(out), "--base", "toy", "--algos", "sac_lag,sac"]
    argv += ["--envs", "ToyRing-v0", "--seeds", "0", "--workers", "1"]
    argv += [f"--set={k}={v}" for k, v in settings.items()]
    proc = _spawn(argv)
    _wait_for_rows(first / "metrics.csv", 3, proc, timeout=240)
    workers = _children(proc.pid)
    assert workers
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped  ToyRing-v0 sac_lag seed 0 at step" in err
    assert "not started ToyRing-v0 sac seed 0" in err and "Traceback" not in err
    assert all(_gone(pid) for pid in workers)
    assert not second.exists()
    assert main(argv) == 0
    records = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert records == {"out": str(out), "runs": 2, "resumed": 1, "trained": 1}
    for run in (first, second):
        assert json.loads((run / "summary.json").read_text())["env_steps"] == 1000
    # The stopped run resumed exactly: its logs are an uninterrupted run's.
    (straight, _), _ = expand(spec, tmp_path / "straight")
    train(straight, console=False)
    assert logs(first) == logs(Path(str(straight.run_dir)))


@pytest.mark.slow  # starts a Ray instance, as the other Ray test does
def test_a_stop_reaches_ray_tasks(tmp_path: Path) -> None:
    """Under Ray, a stop interrupts the running task (its run checkpoints and reports
    "stopped") and cancels the one not started."""
    import threading

    from algd.stop import StopFlag

    out = tmp_path / "grid"
    spec = GridSpec(
        ("sac_lag", "sac"), ("ToyRing-v0",), (0,), base="toy", overrides=quick(3000, every=200)
    )
    (_, first), _ = expand(spec, out)
    flag = StopFlag()

    def stop_once_running() -> None:
        while (
            not (first / "metrics.csv").exists()
            or len((first / "metrics.csv").read_text().splitlines()) <= 3
        ):
            time.sleep(0.2)
        flag.signum = signal.SIGTERM

    threading.Thread(target=stop_once_running, daemon=True).start()
    records = run_grid(spec, str(out), backend="ray", workers=1, stop=flag)
    assert [r["status"] for r in records] == ["stopped", "not started"]
    assert 300 <= records[0]["env_steps"] < 3000 and (first / "checkpoint.npz").is_file()


def test_safe_bounded_changes_only_the_diffusion_agents_latent_penalty(tmp_path: Path) -> None:
    """--preset safe-bounded is safe for every algorithm, except that ALGD and LGD add the
    latent penalty; its grid runs those two on the safe suite's tasks and seeds."""
    for env in ("PaperHalfCheetahVelocity-v0", "SafetyPointGoal1-v0"):
        for algo in ("algd", "lgd", "sac_lag", "sac_auglag_quadratic", "hj", "sac", "ppo_lag"):
            bounded, safe = (
                preset("safe-bounded", algo=algo, env=env),
                preset("safe", algo=algo, env=env),
            )
            if algo in ("algd", "lgd"):
                assert bounded.agent.diffusion.latent_penalty == 0.01
                assert safe.agent.diffusion.latent_penalty == 0.0
                diffusion = replace(bounded.agent.diffusion, latent_penalty=0.0)
                bounded = replace(bounded, agent=replace(bounded.agent, diffusion=diffusion))
            assert bounded == safe
    grid = expand(GRID_PRESETS["safe-bounded"], tmp_path)
    assert {(c.algo, c.seed) for c, _ in grid} == {
        (a, s) for a in ("algd", "lgd") for s in range(100, 105)
    }
    assert_runs_follow_preset("safe-bounded", [c for c, _ in grid])
