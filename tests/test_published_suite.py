"""`make results` regenerates every committed result: each one is a cell of the published suite."""

from __future__ import annotations

from pathlib import Path

from talkwalk_bench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]


def test_every_committed_result_is_a_cell_of_the_published_suite():
    suite = load_suite("published")
    cells = {(r.task_dir, system, seed) for r in suite.runs for system in r.systems for seed in (r.seeds or suite.seeds)}
    committed = set()
    for path in (ROOT / "results").glob(f"*/*__{suite.dataset}__seed*.json"):
        system, _, seed = path.stem.split("__")
        committed.add((path.parent.name, system, int(seed.removeprefix("seed"))))
    assert committed, "no committed results found"
    missing = sorted(committed - cells)
    assert not missing, f"committed results that `make results` would never rerun (add them to tasks/suites/published.yaml): {missing}"
