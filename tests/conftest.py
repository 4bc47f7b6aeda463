from __future__ import annotations

import os
from pathlib import Path

# Share compiled XLA programs between the test process and the CLI subprocesses it starts.
os.environ.setdefault(
    "ALGD_COMPILE_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "xla")
)

from algd.xla import enable_compilation_cache  # noqa: E402

enable_compilation_cache()


# Runs several test modules compare with, trained once per test worker (session scope: a
# module-scoped fixture is rebuilt whenever a worker returns to its module).

import pytest  # noqa: E402

from algd.cli import main  # noqa: E402
from algd.config import agent_from_dict  # noqa: E402


@pytest.fixture(scope="session")
def straight(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The logs of an uninterrupted CRASH run (tests/test_reliability.py)."""
    from test_reliability import CRASH, LOGS

    run = tmp_path_factory.mktemp("straight") / "run"
    assert main(["train", *CRASH, "--run-dir", str(run)]) == 0
    return {n: (run / n).read_text() for n in LOGS}


@pytest.fixture(scope="session")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two finished SAC-Lag runs of different network widths."""
    from algd.training import train
    from helpers import toy
    from test_reliability import TINY

    root = tmp_path_factory.mktemp("runs")
    train(toy("sac_lag", root / "a", **TINY), console=False)
    train(
        toy("sac_lag", root / "b", **TINY, agent=agent_from_dict({"critic_hidden": (32, 32)})),
        console=False,
    )
    return {"a": root / "a", "b": root / "b"}
