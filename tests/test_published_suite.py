"""`make results` regenerates every committed result: each one is a cell of the published suite."""

from __future__ import annotations

from pathlib import Path

from talkwalk_bench.matrix import plan
from talkwalk_bench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]


def test_every_committed_result_is_a_cell_of_the_published_suite():
    suite = load_suite("published")
    results = ROOT / "results"
    # the very cells `make results` plans (as `talkwalk-bench suite published --output-dir results` does)
    cells = {Path(c.output).resolve() for run in suite.runs
             for c in plan(run.systems, [run.task], run.seeds or suite.seeds, results, suite.dataset, run.system_args)}
    committed = {p.resolve() for p in results.glob("*/*.json")}
    assert committed, "no committed results found"
    missing = sorted(str(p.relative_to(results.resolve())) for p in committed - cells)
    assert not missing, f"committed results that `make results` would never rerun (add them to tasks/suites/published.yaml): {missing}"
