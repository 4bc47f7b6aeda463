"""The agent's settings by family: ranges stated in the annotations, per-algorithm help, and
the flat names of earlier versions (flags, config files, old run configs)."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest

from algd.agents import REGISTRY
from algd.cli import main
from algd.config import (
    FAMILIES,
    AgentConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    parse_sets,
    to_dict,
)
from algd.config.fields import Int, Num, Widths
from algd.config.io import FLAT_NAMES, run_config_from_dict
from algd.parsing import parse_train


def _numeric_fields(cls: type) -> list[tuple[str, object, tuple[object, ...]]]:
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        tp, meta = hints[f.name], ()
        if typing.get_origin(tp) is typing.Annotated:
            tp, *rest = typing.get_args(tp)
            meta = tuple(rest)
        base = {a for a in typing.get_args(tp)} - {type(None)} or {tp}
        if base & {int, float} or typing.get_origin(tp) is tuple or tp == tuple[int, ...]:
            out.append((f.name, tp, meta))
    return out


@pytest.mark.parametrize("cls", [TrainConfig, AgentConfig, *FAMILIES.values()])
def test_every_number_states_its_range_where_it_is_declared(cls: type) -> None:
    fields = _numeric_fields(cls)
    assert fields
    for name, _, meta in fields:
        assert any(isinstance(m, (Num, Int, Widths)) for m in meta), f"{cls.__name__}.{name}"


def test_a_range_is_enforced_with_the_fields_path() -> None:
    with pytest.raises(Exception, match="'agent.lagrangian.cost_margin': must be in \\[0, 0.5\\]"):
        from_dict({"agent": {"lagrangian": {"cost_margin": 0.6}}})
    with pytest.raises(Exception, match="'agent.ppo.rollout': must be an integer in 1..1000000"):
        from_dict({"agent": {"ppo": {"rollout": 0}}})


def test_flat_names_read_as_their_familys_fields() -> None:
    """Every flat name of the agent (the form before the families) maps to one family field,
    and every family field has one flat name."""
    paths = list(FLAT_NAMES.values())
    assert len(paths) == len(set(paths))
    assert sorted(paths) == sorted(
        (family, f.name) for family, cls in FAMILIES.items() for f in dataclasses.fields(cls)
    )
    cfg = apply_overrides(TrainConfig(), {"agent.rho": 2.0, "agent.ppo_rollout": 100})
    assert (cfg.agent.lagrangian.rho, cfg.agent.ppo.rollout) == (2.0, 100)
    flat = from_dict({"agent": {"diffusion": "ddpm", "hj_threshold": 0.5, "mc_samples": 2}})
    nested = from_dict(
        {"agent": {"diffusion": {"process": "ddpm", "mc_samples": 2}, "hj": {"threshold": 0.5}}}
    )
    assert flat == nested


def test_an_old_flat_run_config_reads_as_it_trained(tmp_path: Path) -> None:
    """A config.json written before the families (every agent field flat) gives the same
    config; one written before a field existed gets that field's value of then."""
    cfg = apply_overrides(TrainConfig(algo="cal"), {"agent.lagrangian.cal_c": 3.0})
    flat_agent = {
        old: getattr(getattr(cfg.agent, family), name) for old, (family, name) in FLAT_NAMES.items()
    }
    flat_agent.update({k: v for k, v in to_dict(cfg)["agent"].items() if k not in FAMILIES})
    data = json.loads(json.dumps({**to_dict(cfg), "agent": flat_agent}))
    assert run_config_from_dict(data) == cfg
    del data["agent"]["log_prob"]
    assert run_config_from_dict(data).agent.sac.log_prob == "exact"


def test_help_shows_only_the_algorithms_families(capsys: pytest.CaptureFixture[str]) -> None:
    lengths = {}
    for algo in ("sac_lag", "algd", "ppo_lag"):
        with pytest.raises(SystemExit):
            main(["train", "--algo", algo, "--help"])
        out = capsys.readouterr().out
        lengths[algo] = len(out.splitlines())
        shown = {family for family in FAMILIES if f"--agent.{family}." in out}
        assert shown == set(REGISTRY[algo].families), algo
        assert max(len(line) for line in out.splitlines()) <= 100
    assert lengths["sac_lag"] < lengths["algd"]
    # Before the families, `algd train --algo sac_lag --help` was 412 lines at 80 columns.
    assert lengths["sac_lag"] <= 412 // 2


def test_flat_flags_and_other_families_flags(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--algo", "algd", "--agent.rho", "2", "--agent.diffusion", "ddpm"]
    cfg = parse_train([*args, "--agent.no-score-chain-grad", "--agent.critics.cost-k", "0.5"]).run
    assert (cfg.agent.lagrangian.rho, cfg.agent.diffusion.process) == (2.0, "ddpm")
    assert (cfg.agent.diffusion.score_chain_grad, cfg.agent.critics.cost_k) == (False, 0.5)
    assert type(cfg) is TrainConfig and type(cfg.agent) is AgentConfig
    assert capsys.readouterr().err == ""
    # A flag of a family the algorithm does not read is kept, with a one-line note.
    cfg = parse_train(["--algo", "sac_lag", "--agent.diffusion.mc-samples", "3"]).run
    assert cfg.agent.diffusion.mc_samples == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--agent.diffusion.mc-samples does not apply to sac_lag" in err


def test_set_reads_json_and_the_train_flags_words() -> None:
    """--set KEY=VALUE: JSON values, the spellings `algd train --help` shows (True, False,
    None), and any other text as text."""
    items = ["a=false", "b=False", "c=None", "d=null", "e=0.1", "f=[1, 2]", "g=episodes"]
    assert parse_sets(items) == {
        "a": False,
        "b": False,
        "c": None,
        "d": None,
        "e": 0.1,
        "f": [1, 2],
        "g": "episodes",
    }
