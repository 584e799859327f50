"""Run a (system x task x seed) matrix on worker processes or on Ray, resuming finished cells.

The one orchestrator: ``matrix`` and ``suite`` both plan cells here and run
them through ``execute``. Each cell is one ``run`` writing its result where
``run`` would (``paths.result_path``); a cell whose result already exists
with status ``success`` is skipped, unless it is forced. Scheduling is left
to existing engines: ``concurrent.futures`` process pools locally, Ray tasks
(with CPU/GPU requests per system) on a cluster.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from talkwalk_bench.errors import BenchError
from talkwalk_bench.results import ResultFileError, read_result


@dataclass(frozen=True)
class Cell:
    system: str
    task: str
    seed: int
    output: str
    dataset: str | None = None
    system_args: tuple[tuple[str, Any], ...] = ()
    force: bool = False  # rerun even when a result exists
    progress: bool = False
    legacy: tuple[str, ...] = ()  # older names of the same result, read as done


@dataclass(frozen=True)
class CellOutcome:
    cell: Cell
    status: str  # success | error | skipped
    message: str = ""


def plan(systems: Iterable[str], tasks: Iterable[str], seeds: Iterable[int], out_dir: Path, dataset: str | None = None,
         system_args: dict[str, dict[str, Any]] | None = None, *, force: bool = False,
         progress: bool = False) -> list[Cell]:
    from talkwalk_bench.data.dataset import resolve_dataset
    from talkwalk_bench.paths import inside, legacy_result_paths, result_path
    from talkwalk_bench.registry import SYSTEMS, resolve_system_args
    from talkwalk_bench.tasks.spec import load_spec

    cells = []
    for task in tasks:
        spec, _ = load_spec(task)  # unknown or broken tasks fail before anything runs
        ds_name = resolve_dataset(dataset or spec.dataset)[0]
        for system in systems:
            SYSTEMS.entry(system)
            resolve_system_args(system, (system_args or {}).get(system, {}))  # a wrong -S type fails before any cell runs
            for seed in seeds:
                if seed < 0 or seed >= 2**32:
                    raise BenchError(f"--seeds: seed {seed} is out of range; seeds are whole numbers from 0 to 2**32 - 1")
                out = inside(result_path(out_dir, spec.name, system, ds_name, seed), Path(out_dir))
                old = tuple(str(p) for p in legacy_result_paths(out_dir, spec.name, system, seed))
                args = tuple(sorted((system_args or {}).get(system, {}).items()))
                cells.append(Cell(system, task, int(seed), str(out), dataset, args, force, progress, old))
    return cells


def is_done(cell: Cell) -> bool:
    return _state(cell) == "done"


def _state(cell: Cell) -> str:
    """done (a successful result made by the current code), stale (successful, but the code that made it has
    changed, was not recorded, or was uncommitted: rerun over it), or todo."""
    return cell_state(cell)[0]


def cell_state(cell: Cell) -> tuple[str, str]:
    """``(state, why)``: what ``execute`` will do with a cell (``_state``) and the reason, in words, e.g.
    ``("stale", "changed since the run: systems/baselines.py")`` (what ``--dry-run`` prints)."""
    from talkwalk_bench.provenance import why_not_current

    if cell.force:
        return "todo", "forced"
    for path in (cell.output, *cell.legacy):
        p = Path(path)
        if not p.exists():
            continue
        try:
            res = read_result(p)
        except ResultFileError as exc:
            if path == cell.output:
                return "todo", f"unreadable result ({str(exc).splitlines()[0][:120]})"
            continue
        if res.status == "success":
            why = why_not_current(res.provenance, system=res.system.name)
            if why:
                return "stale", why
            return "done", "made by the current code" + ("" if path == cell.output else f" (as {p.name})")
        if path == cell.output:
            return "todo", f"last run ended with status {res.status}"  # what is at the cell's own name decides
    return "todo", "no result yet"


def run_cell(cell: Cell) -> CellOutcome:
    """Run one cell in this process (what a worker or a Ray task executes)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from talkwalk_bench.tasks.runner import RunConfig, run

    try:
        res = run(RunConfig(system=cell.system, task=cell.task, dataset=cell.dataset, seed=cell.seed,
                            output=Path(cell.output), system_args=dict(cell.system_args), resume=not cell.force,
                            force=cell.force, progress=cell.progress))
        if res.status != "success":  # degraded: it ran, but is not a result to publish
            return CellOutcome(cell, "error", f"status {res.status}: {res.error}")
        return CellOutcome(cell, res.status, f"{res.task.main_score} = {res.main_value()}")
    except BenchError as exc:
        return CellOutcome(cell, "error", str(exc))
    except Exception as exc:  # a worker must report, not die silently
        return CellOutcome(cell, "error", f"{type(exc).__name__}: {exc}")


def execute(cells: list[Cell], *, executor: str = "local", jobs: int = 1, address: str | None = None,
            on_done: Callable[[CellOutcome], None] | None = None) -> list[CellOutcome]:
    states = {c: _state(c) for c in cells}
    # a stale result is replaced (the new one is published only once it has succeeded)
    todo = [replace(c, force=True) if states[c] == "stale" else c for c in cells if states[c] != "done"]
    outcomes = [CellOutcome(c, "skipped", "result exists, made by the current code") for c in cells if states[c] == "done"]
    for o in outcomes:
        if on_done:
            on_done(o)
    if executor == "local":
        new = _local(todo, jobs, on_done)
    elif executor == "ray":
        new = _ray(todo, address, on_done)
    else:
        raise BenchError(f"unknown executor '{executor}'; use local or ray")
    return outcomes + new


def _local(cells: list[Cell], jobs: int, on_done) -> list[CellOutcome]:
    out = []
    if jobs <= 1:
        for c in cells:
            o = run_cell(c)
            out.append(o)
            if on_done:
                on_done(o)
        return out
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_cell, c) for c in cells]
        for f in as_completed(futures):
            o = f.result()
            out.append(o)
            if on_done:
                on_done(o)
    return out


def resources_for(system: str) -> dict[str, float]:
    """CPU/GPU request of a system's cell: the registry tags ``num_cpus``/``num_gpus`` (default 1 CPU)."""
    from talkwalk_bench.registry import SYSTEMS

    tags = SYSTEMS.entry(system).tags
    return {"num_cpus": float(tags.get("num_cpus", 1)), "num_gpus": float(tags.get("num_gpus", 0))}


def _ray(cells: list[Cell], address: str | None, on_done) -> list[CellOutcome]:
    try:
        import ray
    except ImportError:
        raise BenchError("the ray executor needs Ray: pip install 'talkwalk-bench[ray]'") from None
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            raise BenchError(f"cannot reach the Ray cluster at {address}: {exc}; check --address") from None
        started = True
    try:
        remote = ray.remote(run_cell)
        refs = {remote.options(**resources_for(c.system)).remote(c): c for c in cells}
        out = []
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            o = ray.get(ready[0])
            out.append(o)
            if on_done:
                on_done(o)
        return out
    finally:
        if started:
            ray.shutdown()


def outcome_dict(o: CellOutcome) -> dict[str, Any]:
    return {**asdict(o.cell), "status": o.status, "message": o.message}
