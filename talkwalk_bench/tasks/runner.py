"""Run one system on one task: fit, play episodes in checkpointed batches, aggregate."""

from __future__ import annotations

import os
import time
import traceback
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from talkwalk_bench.data.dataset import load_dataset
from talkwalk_bench.errors import BenchError, SystemFailure
from talkwalk_bench.metrics.stats import mean_ci_many
from talkwalk_bench.paths import runs_dir
from talkwalk_bench.registry import SYSTEMS, build_system
from talkwalk_bench.results import (
    DatasetInfo,
    EpisodeWriter,
    MetricEntry,
    Result,
    SystemInfo,
    TaskInfo,
    check_writable,
    environment,
    episodes_path,
    now,
    read_episodes,
    read_result,
    write_result,
)
from talkwalk_bench.tasks.base import FAMILIES, TaskContext
from talkwalk_bench.tasks.spec import load_spec

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass
class RunConfig:
    system: str
    task: str
    dataset: str | None = None
    seed: int = 0
    output: Path | None = None
    system_args: dict[str, Any] | None = None
    resume: bool = False
    force: bool = False
    progress: bool = True
    card: Path | None = None
    steering_file: Path | None = None
    options: dict[str, Any] | None = None


def default_output(system: str, task: str, dataset: str, seed: int) -> Path:
    return runs_dir() / task / f"{system}__{dataset}__seed{seed}.json"


def run(cfg: RunConfig) -> Result:
    """Run and return the result (status success or error); raises BenchError on bad input."""
    t_start = time.perf_counter()
    spec, spec_path = load_spec(cfg.task)
    family_cls = FAMILIES.get(spec.family)
    params = family_cls.parse_params(spec, spec_path)
    dataset = load_dataset(cfg.dataset or spec.dataset)
    SYSTEMS.entry(cfg.system)  # unknown name fails here, before anything is written
    out = Path(cfg.output) if cfg.output else default_output(cfg.system, spec.name, dataset.name, cfg.seed)
    ep_path = episodes_path(out)

    ctx = TaskContext(spec=spec, params=params, dataset=dataset, seed=cfg.seed, card_path=cfg.card,
                      steering_file=cfg.steering_file, options=dict(cfg.options or {}))
    family = family_cls(ctx)
    if family_cls.needs_card:
        ctx.card  # noqa: B018  (fail on a bad card before training)
    episodes = family.episodes()

    system, args = build_system(cfg.system, cfg.system_args or {})
    meta = system.meta
    entry = SYSTEMS.entry(cfg.system)
    sysinfo = SystemInfo(name=cfg.system, version=str(getattr(meta, "version", "0")), args=_jsonable(args),
                         capabilities=sorted(getattr(meta, "capabilities", ())), oracle=bool(entry.tags.get("oracle") or getattr(meta, "is_oracle", False)))
    taskinfo = TaskInfo(name=spec.name, version=spec.version, family=spec.family, spec_hash=spec.spec_hash(),
                        main_score=spec.main_score, spec_path=str(spec_path))
    dsinfo = DatasetInfo(name=dataset.name, fingerprint=dataset.fingerprint, n_users=dataset.n_users,
                         n_items=dataset.n_items, n_interactions=len(dataset.interactions), path=str(dataset.path))

    done: list[dict[str, Any]] = []
    if out.exists() and not cfg.force:
        if not cfg.resume:
            raise BenchError(f"{out}: a result already exists; pass --resume to continue it or --force to overwrite it")
        prev = read_result(out)
        _check_same_run(out, prev, sysinfo, taskinfo, dsinfo, cfg.seed)
        if prev.status == "success":
            return prev
        wanted = {e.id for e in episodes}
        done = [r for r in read_episodes(ep_path) if r.get("status") == "ok" and r.get("episode") in wanted]
    check_writable(out)

    result = Result(status="started", run_id=uuid.uuid4().hex[:12], created_at=now(), system=sysinfo, task=taskinfo,
                    dataset=dsinfo, protocol=family.protocol(), seed=cfg.seed, env=environment(),
                    n_episodes=len(episodes), episodes_file=ep_path.name)
    write_result(out, result)
    writer = EpisodeWriter(ep_path, done)
    ctx.system = system
    timings: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        try:
            system.fit(family.train_data(), seed=cfg.seed)
        except BenchError:
            raise
        except Exception as exc:
            raise SystemFailure(f"system '{cfg.system}' failed in fit: {type(exc).__name__}: {_one_line(exc)}") from exc
        timings["fit_s"] = time.perf_counter() - t0

        finished = {r["episode"] for r in done}
        todo = [e for e in episodes if e.id not in finished]
        records = list(done)
        t_play = time.perf_counter()
        bar = tqdm(total=len(episodes), initial=len(done), desc=f"{cfg.system} / {spec.name}", unit="ep",
                   disable=not cfg.progress, leave=False)
        try:
            for start in range(0, len(todo), spec.batch_size):
                batch = todo[start:start + spec.batch_size]
                try:
                    recs = family.play(batch)
                except BenchError as exc:
                    _fail_batch(writer, batch, exc)
                    raise
                except Exception as exc:
                    _fail_batch(writer, batch, exc)
                    first = batch[0].id
                    raise SystemFailure(
                        f"system '{cfg.system}' raised {type(exc).__name__} on episode {first}: {_one_line(exc)}; "
                        f"{len(records)} finished episodes kept in {ep_path}; fix it and rerun with --resume"
                    ) from exc
                for ep, rec in zip(batch, recs, strict=True):
                    rec = {"episode": ep.id, "user_id": ep.user_id, "status": "ok", **rec}
                    records.append(rec)
                writer.write(records[-len(recs):])
                bar.update(len(batch))
        finally:
            bar.close()
        timings["play_s"] = time.perf_counter() - t_play
        timings["system_s"] = ctx.recommend_seconds
        timings["harness_s"] = timings["play_s"] - ctx.recommend_seconds
        timings["n_requests"] = float(ctx.n_requests)

        result.metrics = aggregate(records, spec, cfg.seed)
        extras = family.extras(records)
        chance = extras.pop("chance", {})
        for name, est in family.summarize(records).items():
            result.metrics[name] = MetricEntry(**est.as_dict())
        for name, c in chance.items():
            if name in result.metrics:
                result.metrics[name].chance = c
        result.extras = _jsonable({"gate_metrics": spec.gate.metrics, "gate_tolerance": spec.gate.tolerance, **extras})
        result.status = "success"
    except (BenchError, KeyboardInterrupt) as exc:
        result.status = "error"
        result.error = str(exc) if isinstance(exc, BenchError) else "interrupted; rerun with --resume to continue"
        result.n_failed = sum(1 for r in read_episodes(ep_path) if r.get("status") == "failed")
        timings["total_s"] = time.perf_counter() - t_start
        result.timings = timings
        result.finished_at = now()
        write_result(out, result)
        writer.close()
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _with_result(exc, out, result) from exc.__cause__
    writer.close()
    timings["total_s"] = time.perf_counter() - t_start
    result.timings = timings
    result.finished_at = now()
    write_result(out, result)
    result.__dict__.setdefault("_path", out)
    return result


def _with_result(exc: BenchError, out: Path, result: Result) -> BenchError:
    exc.result_path = out  # type: ignore[attr-defined]
    exc.result = result  # type: ignore[attr-defined]
    return exc


def _fail_batch(writer: EpisodeWriter, batch, exc: BaseException) -> None:
    writer.write([
        {"episode": e.id, "user_id": e.user_id, "status": "failed", "error": f"{type(exc).__name__}: {_one_line(exc)}",
         "traceback": traceback.format_exc(limit=5)}
        for e in batch
    ])


def aggregate(records: list[dict[str, Any]], spec, seed: int) -> dict[str, MetricEntry]:
    per_metric: dict[str, list[float]] = defaultdict(list)
    order: list[str] = []
    for r in records:
        if r.get("status") != "ok":
            continue
        for name, v in r.get("metrics", {}).items():
            if name not in per_metric:
                order.append(name)
            per_metric[name].append(float("nan") if v is None else float(v))
    # metrics defined on different episode subsets are bootstrapped apart
    groups: dict[int, dict[str, Any]] = defaultdict(dict)
    for name in order:
        groups[len(per_metric[name])][name] = np.asarray(per_metric[name], dtype=np.float64)
    ests = {}
    for cols in groups.values():
        ests.update(mean_ci_many(cols, seed=seed, n_resamples=spec.bootstrap.n_resamples, confidence=spec.bootstrap.confidence))
    return {name: MetricEntry(**ests[name].as_dict()) for name in order}


def _check_same_run(path: Path, prev: Result, sysinfo: SystemInfo, taskinfo: TaskInfo, dsinfo: DatasetInfo, seed: int) -> None:
    diffs = []
    if prev.system.name != sysinfo.name or prev.system.args != sysinfo.args:
        diffs.append("system or its arguments")
    if prev.task.spec_hash != taskinfo.spec_hash:
        diffs.append("task spec")
    if prev.dataset.fingerprint != dsinfo.fingerprint:
        diffs.append("dataset")
    if prev.seed != seed:
        diffs.append("seed")
    if diffs:
        raise BenchError(f"{path}: cannot resume: the {', '.join(diffs)} differ from the earlier run; use --force to start over or another --output")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "item"):
        try:
            return obj.item()
        except Exception:
            pass
    return str(obj)
