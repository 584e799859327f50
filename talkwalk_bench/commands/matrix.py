"""``talkwalk-bench matrix``: every (system x task x seed) cell, resumable, local or on Ray."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from talkwalk_bench.argtypes import whole


def add_parser(sub) -> None:
    p = sub.add_parser("matrix", help="run systems x tasks x seeds (skipping finished cells) and regenerate the leaderboard")
    p.add_argument("--systems", required=True, help="comma-separated system names")
    p.add_argument("--tasks", required=True, help="comma-separated task names or spec files")
    p.add_argument("--seeds", default=os.environ.get("TALKWALK_SEEDS", "0"), help="comma-separated seeds (env TALKWALK_SEEDS, default 0)")
    p.add_argument("--dataset", default=os.environ.get("TALKWALK_DATASET"), help="override the tasks' dataset (env TALKWALK_DATASET)")
    p.add_argument("--executor", type=_executor, default=os.environ.get("TALKWALK_EXECUTOR", "local"), help="local or ray (env TALKWALK_EXECUTOR, default local)")
    p.add_argument("--jobs", type=whole("--jobs", env="TALKWALK_JOBS", minimum=1), default=os.environ.get("TALKWALK_JOBS", "1"), help="local worker processes (env TALKWALK_JOBS, default 1)")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="Ray cluster address (env RAY_ADDRESS); default: start a local Ray")
    p.add_argument("--output-dir", default=os.environ.get("TALKWALK_OUTPUT_DIR", "runs/matrix"), help="(env TALKWALK_OUTPUT_DIR, default runs/matrix)")
    p.add_argument("--dry-run", action="store_true", help="run nothing: print what each cell would do (skip, rerun: why, run) and the counts")
    p.set_defaults(func=run)


def _executor(raw: str) -> str:
    if raw not in ("local", "ray"):
        raise argparse.ArgumentTypeError(f"--executor {raw!r}: expected local or ray (from --executor or $TALKWALK_EXECUTOR)")
    return raw


def _split(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def run(a: argparse.Namespace) -> int:
    from talkwalk_bench.errors import BenchError
    from talkwalk_bench.matrix import plan

    try:
        seeds = [int(s) for s in _split(a.seeds)]
    except ValueError:
        raise BenchError(f"--seeds {a.seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None
    out_dir = Path(a.output_dir)
    cells = plan(_split(a.systems), _split(a.tasks), seeds, out_dir, a.dataset)
    return drive(cells, out_dir, executor=a.executor, jobs=a.jobs, address=a.address, dry_run=a.dry_run)


def dry_run_report(cells) -> int:
    """What ``drive`` would do with each cell, without running anything: skip (a result made by the current
    code), rerun (stale: why) or run (no successful result). Exit 0; the counts go last."""
    from talkwalk_bench.matrix import cell_state

    verbs = {"done": "skip", "stale": "rerun", "todo": "run"}
    counts = {"skip": 0, "rerun": 0, "run": 0}
    for i, c in enumerate(cells, 1):
        state, why = cell_state(c)
        verb = verbs[state]
        counts[verb] += 1
        print(f"[{i}/{len(cells)}] {verb:<5} {c.task:<14} {c.system:<20} seed {c.seed}: {why}")
    print(f"{len(cells)} cells: {counts['skip']} current (skipped), {counts['rerun']} to rerun, "
          f"{counts['run']} to run; nothing was run (--dry-run)")
    return 0


def drive(cells, out_dir: Path, *, executor: str = "local", jobs: int = 1, address: str | None = None,
          dry_run: bool = False) -> int:
    """Run planned cells (``matrix`` and ``suite`` alike), report each, then write the folder's leaderboard."""
    if dry_run:
        return dry_run_report(cells)
    from talkwalk_bench import leaderboard as lb
    from talkwalk_bench.errors import BenchError
    from talkwalk_bench.matrix import execute
    from talkwalk_bench.results import atomic_write_text

    labels = {"success": "done", "skipped": "skip", "error": "FAIL"}
    seen = [0]

    def report(o):
        c = o.cell
        seen[0] += 1
        print(f"[{seen[0]}/{len(cells)}] {labels.get(o.status, o.status):<5} {c.task:<14} {c.system:<20} seed {c.seed}"
              + (f": {o.message}" if o.message else ""), file=sys.stderr)

    outcomes = execute(cells, executor=executor, jobs=jobs, address=address, on_done=report)
    try:
        results, _ = lb.collect([out_dir]) if out_dir.is_dir() else ([], [])
        boards = lb.build(results) if results else []  # e.g. two results of one seed (an old name beside the new)
    except BenchError as exc:
        results = []
        print(f"leaderboard not regenerated: {exc}", file=sys.stderr)
    if results:
        text = lb.to_markdown(boards)
        atomic_write_text(out_dir / "leaderboard.md", text)
        atomic_write_text(out_dir / "leaderboard.html", lb.to_html(boards))
        print(text)
        print(f"leaderboard written to {out_dir / 'leaderboard.md'} and .html", file=sys.stderr)
    else:
        print("no successful results: no leaderboard written", file=sys.stderr)
    for line in time_per_system(outcomes):
        print(line, file=sys.stderr)
    errors = [o for o in outcomes if o.status == "error"]
    print(f"{len(cells)} cells: {sum(o.status == 'success' for o in outcomes)} run, "
          f"{sum(o.status == 'skipped' for o in outcomes)} skipped, {len(errors)} failed", file=sys.stderr)
    return 1 if errors else 0


def time_per_system(outcomes) -> list[str]:
    """Seconds each system's cells took, from their results' timings (fit, play, total), this call's runs only."""
    from talkwalk_bench.errors import ResultFileError
    from talkwalk_bench.results import read_result

    per: dict[str, dict[str, float]] = {}
    for o in outcomes:
        if o.status != "success":
            continue
        try:
            t = read_result(o.cell.output).timings
        except ResultFileError:
            continue
        acc = per.setdefault(o.cell.system, {"cells": 0, "fit_s": 0.0, "total_s": 0.0})
        acc["cells"] += 1
        acc["fit_s"] += t.get("fit_s", 0.0)
        acc["total_s"] += t.get("total_s", 0.0)
    if not per:
        return []
    lines = ["time per system (cells run now; seconds on this machine):"]
    for name, acc in sorted(per.items(), key=lambda kv: -kv[1]["total_s"]):
        lines.append(f"  {name:<20} {acc['total_s']:9.0f} s over {int(acc['cells'])} cells (fitting {acc['fit_s']:.0f} s)")
    lines.append(f"  {'all':<20} {sum(a['total_s'] for a in per.values()):9.0f} s")
    return lines
