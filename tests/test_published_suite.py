"""`make results` regenerates every committed result: each one is a cell of the published suite, and every
cell of the published suite has a committed, successful result (the leaderboards have no holes)."""

from __future__ import annotations

import json
from pathlib import Path

from talkwalk_bench.matrix import plan
from talkwalk_bench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]


def _cells(results: Path) -> set[Path]:
    """The very cells `make results` plans (as `talkwalk-bench suite published --output-dir results` does)."""
    suite = load_suite("published")
    return {Path(c.output).resolve() for run in suite.runs
            for c in plan(run.systems, [run.task], run.seeds or suite.seeds, results, suite.dataset, run.system_args)}


def test_every_committed_result_is_a_cell_of_the_published_suite():
    results = ROOT / "results"
    cells = _cells(results)
    committed = {p.resolve() for p in results.glob("*/*.json")}
    assert committed, "no committed results found"
    missing = sorted(str(p.relative_to(results.resolve())) for p in committed - cells)
    assert not missing, f"committed results that `make results` would never rerun (add them to tasks/suites/published.yaml): {missing}"


def test_every_cell_of_the_published_suite_has_a_committed_successful_result():
    results = ROOT / "results"
    holes, failed = [], []
    for cell in sorted(_cells(results)):
        name = str(cell.relative_to(results.resolve()))
        if not cell.exists():
            holes.append(name)
        elif json.loads(cell.read_text()).get("status") != "success":
            failed.append(name)
    assert not holes, f"published cells without a committed result (run `make results`): {holes}"
    assert not failed, f"published cells whose committed result did not succeed (rerun them): {failed}"
