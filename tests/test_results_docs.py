"""The committed real-task results and docs/results.md agree: `algd report`'s table, computed
afresh from each committed results folder's logs, appears in the docs row for row."""

from __future__ import annotations

from pathlib import Path

import pytest

from algd.bench.report import find_runs, load_run, markdown, summarise

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = sorted(
    p.name
    for pattern in ("cpu-real*", "safe*", "quick")
    for p in (ROOT / "results").glob(pattern)
    if p.is_dir()
)


def test_every_real_task_folder_is_checked() -> None:
    assert {"cpu-real", "cpu-real-100k", "safe", "quick"} <= set(FOLDERS)


@pytest.mark.parametrize("folder", FOLDERS)
def test_report_tables_match_the_docs(folder: str) -> None:
    runs = [load_run(r) for r in find_runs(ROOT / "results" / folder)]
    assert runs, folder
    docs = (ROOT / "docs" / "results.md").read_text().splitlines()
    header, rule, *rows = markdown(summarise(runs)).splitlines()
    assert rule.startswith("|---") and len(rows) >= 1, folder
    missing = [row for row in rows if row not in docs]
    assert not missing, f"{folder}: rows of `algd report` not in docs/results.md: {missing}"
