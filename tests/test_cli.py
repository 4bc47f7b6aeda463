"""The CLI: help, listing, evaluation, and one-line errors with exit code 2 that change nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from algd.cli import main
from algd.config import to_json
from helpers import ROOT, run_cli

FAST = [
    "--preset",
    "toy",
    "--total-steps",
    "600",
    "--warmup-steps",
    "300",
    "--learning-starts",
    "300",
    "--eval-every",
    "300",
    "--eval-episodes",
    "2",
    "--quiet",
]


def test_help_shows_field_docs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "Gradient steps per environment step" in out  # TrainConfig.utd's docstring
    assert "--agent.lagrangian.rho" in out and "Augmented-Lagrangian penalty rho" in out
    assert "{dual,multipliers,pid}" in out
    # Which navigation protocol an id gets without a preset, in one paragraph, and the paper's.
    paragraphs = [" ".join(p.split()) for p in out.split("\n\n")]
    (line,) = [p for p in paragraphs if p.startswith("Navigation ids without a preset")]
    assert "1000 steps, limit 25" in line and "400 steps, limit 10" in line
    assert "--preset reference" in line


def test_list_one_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "algos"]) == 0
    assert capsys.readouterr().out.split() == [
        "algd",
        "lgd",
        "sac_lag",
        "sac_auglag",
        "cal",
        "sac",
        "sac_auglag_quadratic",
        "hj",
        "ppo_lag",
    ]
    assert main(["list", "envs"]) == 0
    envs = capsys.readouterr().out.splitlines()
    assert "SafetyPointButton1-v0" in envs and "ToyRing-v0" in envs


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--algo", "nope"], "unknown algorithm 'nope'"),
        (["train", "--env", "NoSuchEnv-v0"], "unknown env id 'NoSuchEnv-v0'"),
        (
            ["train", "--agent.rho", "-1"],
            "config field 'agent.lagrangian.rho': must be a positive number",
        ),
        (["train", "--batch-size", "0"], "config field 'batch_size'"),
        (["train", "--utd", "x"], "Error parsing --utd"),
        (["train", "--bogus"], "Unrecognized options: --bogus"),
        (["train", "--agent.diffusion", "sde"], "invalid choice 'sde'"),
        (["eval", "does/not/exist"], "is not a run directory"),
        (["train", "--resume", "does/not/exist"], "is not a run directory"),
        (["train", "--total-steps"], "--total-steps is missing its value"),
        (["train", "--algo"], "--algo is missing its value"),
        (["train", "--quiet=true"], "--quiet takes no value"),
        # A misspelt name gets the closest one that exists.
        (["train", "--total-step", "5"], "--total-step, 5 (did you mean --total-steps?)"),
        (["eval", "x", "--episode", "3"], "--episode, 3 (did you mean --episodes?)"),
        (["train", "--algo", "sac_lagg"], "unknown algorithm 'sac_lagg' (did you mean 'sac_lag'?)"),
        (["train", "--env", "SafetyPointGoal1-v1"], "(did you mean 'SafetyPointGoal1-v0'?)"),
        (["train", "--preset", "quik"], "unknown preset 'quik' (did you mean 'quick'?)"),
        (
            ["bench", "--preset", "safee", "--out", "x", "--dry-run"],
            "unknown grid preset 'safee' (did you mean 'safe'?)",
        ),
        (
            ["bench", "--base", "quik", "--algos", "algd", "--out", "x", "--dry-run"],
            "unknown base preset 'quik' (did you mean 'quick'?)",
        ),
        (
            ["train", "--env", "ToyRing-v1"],
            "unknown env id 'ToyRing-v1': not a built-in, paper-velocity, Safety-Gymnasium or registered Gymnasium id (did you mean 'ToyRing-v0'?)",
        ),
    ],
)
def test_user_errors_are_one_line(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    full = (
        [*args, "--run-dir", str(run_dir)]
        if args[0] == "train" and "--resume" not in args
        else args
    )
    assert main(full) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("algd: error:") and message in err
    assert not run_dir.exists()


def test_bare_algd_prints_its_usage_and_names_what_is_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out.startswith("usage: algd") and err.count("\n") == 1
    assert err.startswith("algd: error: give a command: train, eval")
    assert main(["--help"]) == 0 and capsys.readouterr().err == ""


def test_train_eval_and_refusals_through_the_real_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    done = run_cli("train", "--algo", "sac_lag", *FAST, "--run-dir", str(run))
    assert done.returncode == 0, done.stderr
    line = re.search(
        r"final evaluation \(sac_lag on ToyRing-v0, 600 steps, [^)]+\): return \S+ \+- \S+, "
        r"cost (\S+) \((under|OVER) the limit 5\)",
        done.stdout,
    )
    assert line is not None, done.stdout
    assert (line[2] == "under") == (float(line[1]) <= 5.0)
    assert f"logs: {run}/" in done.stdout
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    again = run_cli("train", "--algo", "sac_lag", *FAST, "--run-dir", str(run))
    assert again.returncode == 2 and "already exists" in again.stderr
    assert again.stderr.count("\n") == 1 and "Traceback" not in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
    assert main(["train", "--resume", str(run), "--seed", "3"]) == 2
    assert "--seed cannot change" in capsys.readouterr().err
    ev1 = run_cli("eval", str(run), "--episodes", "2")
    assert ev1.returncode == 0, ev1.stderr
    r1 = json.loads(ev1.stdout)
    assert main(["eval", str(run), "--episodes", "2"]) == 0
    assert r1 == json.loads(capsys.readouterr().out)  # deterministic evaluation is repeatable
    assert r1["episodes"] == 2 and r1["env_steps"] == 600 and r1["policy"] == "deterministic"
    # --stochastic samples actions as the training rollouts do: repeatable, and not the same
    # episodes as the deterministic policy's
    assert main(["eval", str(run), "--episodes", "2", "--stochastic"]) == 0
    s1 = json.loads(capsys.readouterr().out)
    assert main(["eval", str(run), "--episodes", "2", "--stochastic"]) == 0
    assert s1 == json.loads(capsys.readouterr().out)
    assert s1["policy"] == "stochastic" and s1["return_mean"] != r1["return_mean"]


def test_config_file_sits_between_the_preset_and_the_flags(tmp_path: Path) -> None:
    """Defaults: the algorithm's, then --preset, then --config FILE, then the flags; a file's
    run_dir and overwrite are not taken."""
    from algd.parsing import parse_train

    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(
        "algo: sac_lag\nagent:\n  rho: 2.5\nagent.lambda_lr: 0.02\ntotal_steps: 700\n"
        "run_dir: /elsewhere\noverwrite: true\n"
    )
    cfg = parse_train(["--preset", "toy", "--config", str(yaml_file), "--total-steps", "800"]).run
    assert (cfg.algo, cfg.total_steps, cfg.batch_size) == ("sac_lag", 800, 128)  # toy's batch
    assert (
        cfg.agent.lagrangian.rho,
        cfg.agent.lagrangian.lambda_lr,
        cfg.agent.critics.cost_ensemble,
    ) == (2.5, 0.02, 1)
    assert cfg.run_dir is None and cfg.overwrite is False
    # A run's own config.json gives that run's settings back.
    run_cfg = parse_train(["--preset", "toy", "--algo", "cal", "--seed", "4"]).run
    saved = tmp_path / "config.json"
    saved.write_text(to_json(replace(run_cfg, run_dir=str(tmp_path / "old"))))
    assert parse_train(["--config", str(saved)]).run == run_cfg
    assert parse_train(["--config", str(saved), "--seed", "5"]).run.seed == 5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "--config"),
        ("[1, 2]", "must hold a mapping of config fields"),
        ("algo: [", "not valid JSON or YAML"),
        ("agent:\n  rhoo: 1.0\n", "config field 'agent.rhoo': unknown field"),
        (
            "total_step: 5\n",
            "config field 'total_step': unknown field (did you mean 'total_steps'?)",
        ),
        ("agent:\n  lagrangian:\n    rhoo: 1\n", "unknown field (did you mean 'rho'?)"),
    ],
)
def test_bad_config_file_is_one_line(
    content: str | None, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    if content is not None:
        path.write_text(content)
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(path), "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("algd: error:") and message in err
    assert not run_dir.exists()


def test_train_help_shows_the_chosen_algorithms_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--algo", "sac_lag", "--help"])
    out = capsys.readouterr().out
    line = next(
        i for i, text in enumerate(out.splitlines()) if "--agent.critics.cost-ensemble" in text
    )
    assert "(default: 1)" in " ".join(out.splitlines()[line : line + 4])


def test_train_offers_every_named_preset() -> None:
    import typing

    from algd.commands import Train
    from algd.presets import PRESETS

    literal, none = typing.get_args(typing.get_type_hints(Train)["preset"])
    assert none is type(None) and set(typing.get_args(literal)) == set(PRESETS)


def test_gpu_check_refuses_in_one_line_without_a_gpu(tmp_path: Path) -> None:
    """scripts/gpu_check.sh on a machine whose JAX sees no GPU: exit 2, one line naming the
    backend, nothing written."""
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out")}
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "no GPU visible to JAX (backend: cpu" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.xdist_group("finished_runs")
def test_eval_reproduces_the_runs_final_evaluation(
    finished, capsys: pytest.CaptureFixture[str]
) -> None:
    """`algd eval RUN` runs the episodes of the run's last evaluation: a finished run's final
    evaluation, number for number; --evaluation and --seed pick others, and the JSON says which."""
    run = finished["a"]
    summary = json.loads((run / "summary.json").read_text())
    evaluations = len((run / "eval.csv").read_text().splitlines()) - 1
    assert main(["eval", str(run)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (
        summary["final_eval"]
        and {k: result[k] for k in summary["final_eval"]} == (summary["final_eval"])
    )
    assert result["episodes_of"] == {
        "seed": 0,
        "evaluation": evaluations - 1,
        "run_evaluations": evaluations,
    }
    assert main(["eval", str(run), "--evaluation", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes_of"]["evaluation"] == 0
    assert main(["eval", str(run), "--seed", "7"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes_of"] == {
        "seed": 7,
        "evaluation": 0,
        "run_evaluations": evaluations,
    }


def test_the_toy_preset_on_another_env_says_what_to_use(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from algd.parsing import parse_train

    parse_train(["--preset", "toy", "--env", "PaperHalfCheetahVelocity-v0"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--preset toy is tuned for the built-in ToyRing-v0" in err
    assert "--preset quick" in err
    # On a navigation task the quick preset does not learn: only safe is suggested.
    parse_train(["--preset", "toy", "--env", "SafetyPointGoal1-v0"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "start from --preset safe (" in err and "quick" not in err
    parse_train(["--preset", "toy"])
    assert capsys.readouterr().err == ""


def test_the_quick_preset_on_a_navigation_task_says_it_will_not_learn_there(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from algd.parsing import parse_train

    parse_train(["--preset", "quick", "--env", "SafetyPointCircle1-v0"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no navigation task learned" in err
    parse_train(["--preset", "quick", "--env", "PaperHalfCheetahVelocity-v0"])
    parse_train(["--preset", "quick", "--env", "SafetyHopperVelocity-v1"])
    # A longer budget than the preset's is not what the pilots measured: no note.
    parse_train(["--preset", "quick", "--env", "SafetyPointGoal1-v0", "--total-steps", "200000"])
    assert capsys.readouterr().err == ""


def test_run_lengths_read_as_a_person_says_them() -> None:
    from algd.cli import duration_text

    assert [duration_text(x) for x in (0.4, 48.2, 60, 372, 3599.6, 7500)] == [
        "0 s",
        "48 s",
        "1 min 00 s",
        "6 min 12 s",
        "1 h 00 min",
        "2 h 05 min",
    ]


def test_the_final_line_of_a_resumed_run_says_from_which_step_it_was_timed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from algd.cli import _print_summary

    ev = {"return_mean": 1.0, "return_std": 0.0, "cost_vs_limit": 2.0}
    summary = {"run_dir": "r", "algo": "algd", "env": "E", "env_steps": 1000, "finished": True}
    summary |= {"cost_limit": 5.0, "cost_limit_kind": "episode", "wall_s": 75.0, "final_eval": ev}
    _print_summary({**summary, "timed_from_step": 0})
    _print_summary({**summary, "timed_from_step": 600})
    _print_summary({**summary, "final_eval": {**ev, "cost_vs_limit": 5.5}})
    fresh, resumed, over = (
        line for line in capsys.readouterr().out.splitlines() if "final" in line
    )
    assert "(algd on E, 1000 steps, 1 min 15 s): " in fresh and "(under the limit 5)" in fresh
    assert "(algd on E, 1000 steps, 1 min 15 s since step 600): " in resumed
    assert "cost 5.50 (OVER the limit 5)" in over


def test_the_cli_starts_without_importing_jax() -> None:
    """`algd --help`, `algd list` and every mistake caught while parsing answer at once: the
    CLI's modules leave JAX (and the agents) to the commands that train or evaluate."""
    code = "import sys, algd.cli; print(sorted({'jax', 'algd.agents'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "[]\n", (done.stdout, done.stderr)
