from __future__ import annotations

import os
from pathlib import Path

# Share compiled XLA programs between the test process and the CLI subprocesses it starts.
os.environ.setdefault(
    "ALGD_COMPILE_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "xla")
)

import jax  # noqa: E402
import pytest  # noqa: E402

from algd.cli import main  # noqa: E402
from algd.config import agent_from_dict  # noqa: E402
from algd.xla import enable_compilation_cache  # noqa: E402

enable_compilation_cache()
# Every program goes to the cache, however quick its compile: the two test workers and the CLI
# processes the tests start then compile each program once between them.
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)

pytest_plugins = ["compiles"]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep each ``xdist_group`` on one worker, so the runs its tests share are trained once.

    ``--dist loadgroup`` groups tests by an ``@group`` suffix that pytest-xdist appends to their
    node ids; from pytest 9.2 that suffix no longer takes (pytest-dev/pytest-xdist#1386) and
    the groups were spread over both workers. Add it where it is missing.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import coerce_node_id

    for item in items:
        groups = sorted(
            {
                str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                for m in item.iter_markers("xdist_group")
            }
        )
        if groups and "@" not in item.nodeid:
            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(groups)}")


# Runs several test modules compare with, trained once per test worker (session scope: a
# module-scoped fixture is rebuilt whenever a worker returns to its module).


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
