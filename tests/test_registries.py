"""Adding things is local: an environment family is its adapter and one registry entry, a log
sink one class and one registration, an off-policy algorithm its class and one registration;
each then works through the whole loop without touching another module."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from algd.agents import REGISTRY, AlgoInfo, algos, register
from algd.agents.sac_lag import SACLag
from algd.config import AgentConfig, CriticsConfig, TrainConfig
from algd.envs import EnvFamily, env_kind, list_env_ids, make_env, register_family
from algd.envs.registry import FAMILIES
from algd.envs.toy import ToyRing
from algd.training import train
from algd.training.runlogs import SINKS, register_sink
from helpers import quick, toy


class ShortRing(ToyRing):
    """A family's adapter: the built-in ring with 50-step episodes."""

    default_length = 50


class MemorySink:
    """A sink: keeps every record."""

    rows: list[tuple[str, dict[str, Any]]] = []

    def __init__(self, run_dir: Path, cfg: TrainConfig) -> None:
        self.run_dir = run_dir

    def record(self, table: str, row: Mapping[str, Any]) -> None:
        MemorySink.rows.append((table, dict(row)))

    def close(self) -> None:
        pass


@pytest.fixture
def registered() -> Iterator[None]:
    family = EnvFamily(
        "short_ring",
        takes=lambda env_id: env_id == "ShortRing-v0",
        make=lambda env_id, length, limit, _layout, _render: ShortRing(length, limit),
        ids=lambda: ["ShortRing-v0"],
    )
    register_family(family)
    register_sink("memory", MemorySink)
    register(
        AlgoInfo(
            "sac_lag_copy",
            SACLag,
            "SAC-Lag registered again",
            AgentConfig(critics=CriticsConfig(cost_ensemble=1, cost_k=0.0)),
            role="variant",
        )
    )
    MemorySink.rows = []
    try:
        yield
    finally:
        FAMILIES.remove(family)
        del SINKS["memory"]
        del REGISTRY["sac_lag_copy"]


def test_a_registered_family_sink_and_algorithm_work_end_to_end(
    registered: None, tmp_path: Path
) -> None:
    assert env_kind("ShortRing-v0") == "short_ring" and "ShortRing-v0" in list_env_ids()
    assert make_env("ShortRing-v0").spec.max_episode_steps == 50
    assert "sac_lag_copy" not in algos("paper", "reference")  # grids run only what they name
    cfg = toy("sac_lag_copy", tmp_path / "run", env="ShortRing-v0", **quick(400, every=200))
    summary = train(cfg, console=False)
    assert summary["finished"] and summary["algo"] == "sac_lag_copy"
    for table in ("episodes", "eval", "metrics"):
        with open(tmp_path / "run" / f"{table}.csv", newline="") as f:
            on_disk = [float(r["step"]) for r in csv.DictReader(f)]
        kept = [float(row["step"]) for name, row in MemorySink.rows if name == table]
        assert kept == on_disk and kept, table


def test_registering_a_name_twice_is_refused(registered: None) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_sink("memory", MemorySink)
    with pytest.raises(ValueError, match="already registered"):
        register_family(FAMILIES[0])
