"""Run one system on one task: fit, play episodes in checkpointed batches, aggregate."""

from __future__ import annotations

import json
import os
import sys
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
from talkwalk_bench.paths import inside, result_path, runs_dir
from talkwalk_bench.registry import SYSTEMS, build_system, did_you_mean
from talkwalk_bench.results import (
    DatasetInfo,
    EpisodeWriter,
    MetricEntry,
    OutputLock,
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
from talkwalk_bench.tasks.base import FAMILIES, TaskContext, option_names
from talkwalk_bench.tasks.spec import load_spec

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass
class RunConfig:
    system: str | None  # None only for a system-free task (judge_calibration)
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
    allow_untimed: bool = False  # an interaction file without timestamps: order by file position
    allow_unknown_items: bool = False  # interactions on items the item file does not list
    allow_degraded: bool = False  # a run whose judge answered nothing still counts as success
    limit: int | None = None  # run only the first N episodes (recorded; leaderboards refuse the result)


def default_output(system: str, task: str, dataset: str, seed: int) -> Path:
    return result_path(runs_dir(), task, system, dataset, seed)


MAX_SEED = 2**32 - 1  # numpy's generators take seeds in [0, 2**32)


def check_config(cfg: RunConfig) -> None:
    """Arguments that would only fail after training (in the bootstrap, in a writer) fail here, first."""
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or not 0 <= cfg.seed <= MAX_SEED:
        raise BenchError(f"--seed {cfg.seed!r}: a seed is a whole number from 0 to {MAX_SEED}; pass e.g. --seed 0")
    if cfg.limit is not None and (isinstance(cfg.limit, bool) or not isinstance(cfg.limit, int) or cfg.limit < 1):
        raise BenchError(f"--limit {cfg.limit!r}: the number of episodes to play is a whole number >= 1; pass e.g. --limit 5")


def check_options(family_cls: type, spec_name: str, options: dict[str, Any]) -> None:
    """Every -O key must be one this task's family reads; others would be silently ignored."""
    known = option_names(family_cls)
    unknown = sorted(set(options) - set(known))
    if not unknown:
        return
    key = unknown[0]
    if not known:
        raise BenchError(f"-O {key}: task '{spec_name}' ({family_cls.name}) takes no -O options; "
                         "episode settings such as max_users belong in the spec's episodes: (copy the spec and edit it)")
    raise BenchError(f"-O {key}: task '{spec_name}' ({family_cls.name}) has no option '{key}'."
                     f"{did_you_mean(key, sorted(known))} Its options: {', '.join(sorted(known))}")


QUIET_ENV = ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")


def run(cfg: RunConfig) -> Result:
    """Run and return the result (status success, or degraded when its judge answered nothing);
    raises BenchError on bad input and on a failed run (whose result has status error)."""
    if cfg.progress:
        return _run(cfg)
    # --no-progress silences every bar, the systems' and libraries' included (tqdm reads this when a bar is made)
    before = {k: os.environ.get(k) for k in QUIET_ENV}
    os.environ.update({k: "1" for k in QUIET_ENV})
    try:
        return _run(cfg)
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(cfg: RunConfig) -> Result:
    t_start = time.perf_counter()
    check_config(cfg)
    phase = _phases(cfg.progress)
    spec, spec_path = load_spec(cfg.task)
    family_cls = FAMILIES.get(spec.family)
    params = family_cls.parse_params(spec, spec_path)
    check_options(family_cls, spec.name, dict(cfg.options or {}))
    if cfg.steering_file is not None and not family_cls.reads_steering_file:
        readers = ", ".join(sorted(n for n in FAMILIES.names() if FAMILIES.get(n).reads_steering_file))
        raise BenchError(f"task '{spec.name}' (family {spec.family}) does not read a steering file; drop --steering-file "
                         f"(families that read one: {readers})")
    dataset = load_dataset(cfg.dataset or spec.dataset, allow_untimed=cfg.allow_untimed,
                           allow_unknown_items=cfg.allow_unknown_items)
    if family_cls.system_free:
        if cfg.system or cfg.system_args:
            raise BenchError(f"task '{spec.name}' runs no system (it measures the judge); drop --system and -S")
    elif not cfg.system:
        raise BenchError("--system NAME is required (or $TALKWALK_SYSTEM); `talkwalk-bench list systems` names them")
    else:
        SYSTEMS.entry(cfg.system)  # unknown name fails here, before anything is written

    ctx = TaskContext(spec=spec, params=params, dataset=dataset, seed=cfg.seed, card_path=cfg.card,
                      steering_file=cfg.steering_file, options=dict(cfg.options or {}))
    family = family_cls(ctx)
    if family_cls.system_free:  # the row is the stand-in's (a judge-free task has no system to build)
        system, args = family.stand_in(), {}
        sysname, oracle = system.meta.name, False
    else:
        sysname = str(cfg.system)
        oracle = bool(SYSTEMS.entry(sysname).tags.get("oracle"))
    if cfg.output:
        out = Path(cfg.output)
    else:
        out = default_output(sysname, spec.name, dataset.name, cfg.seed)
        inside(out, runs_dir(), "the default output")
    if family_cls.needs_card:
        ctx.card  # noqa: B018  (fail on a bad card before training)
    episodes = family.episodes()
    if cfg.limit is not None:
        episodes = episodes[: cfg.limit]

    if not family_cls.system_free:
        system, args = build_system(sysname, cfg.system_args or {})
    meta = system.meta
    sysinfo = SystemInfo(name=sysname, version=str(getattr(meta, "version", "0")), args=_jsonable(args),
                         capabilities=sorted(getattr(meta, "capabilities", ())), oracle=oracle or bool(getattr(meta, "is_oracle", False)))
    taskinfo = TaskInfo(name=spec.name, version=spec.version, family=spec.family, spec_hash=spec.spec_hash(),
                        main_score=spec.main_score, spec_path=str(spec_path))
    dsinfo = DatasetInfo(name=dataset.name, fingerprint=dataset.fingerprint, n_users=dataset.n_users,
                         n_items=dataset.n_items, n_interactions=len(dataset.interactions), path=str(dataset.path),
                         unknown_values=unknown_values(ctx))
    prov = provenance_for(cfg, family_cls, spec_path, ctx, dataset.fingerprint)
    check_writable(out)
    # one run at a time per output: taken before looking at what is there, held to the end
    # printed once the inputs are checked, so a bad input stays a one-line error
    phase("loaded", f"dataset {dataset.name} ({dataset.n_users} users, {dataset.n_items} items), task {spec.name}: "
                    f"{len(episodes)} episodes")
    if cfg.limit is not None:
        print(f"--limit {cfg.limit}: playing {len(episodes)} episodes; the result is marked limited and leaderboards "
              "refuse it", file=sys.stderr)
    with OutputLock(out, {"system": sysname, "task": spec.name}):
        return _run_locked(cfg, out, t_start, spec, family, ctx, episodes, system, sysinfo, taskinfo, dsinfo, phase, prov)


def provenance_for(cfg: RunConfig, family_cls: type, spec_path, ctx: TaskContext, dataset_fp: str) -> dict[str, Any]:
    """The content hashes of the code and files that can change this run's numbers (talkwalk_bench/provenance.py)."""
    from talkwalk_bench.data.card import card_path
    from talkwalk_bench.provenance import fingerprint

    factory = None if family_cls.system_free or not cfg.system else SYSTEMS.get(str(cfg.system))
    card = ctx.card_path or card_path(ctx.dataset.name)
    return fingerprint(family_module=family_cls.__module__, system_factory=factory, spec_path=Path(spec_path),
                       card_path=Path(card), steering_file=cfg.steering_file and Path(cfg.steering_file),
                       dataset_fingerprint=dataset_fp)


def unknown_values(ctx: TaskContext) -> dict[str, Any] | None:
    """Item values the card cannot read (missing, "unknown", a year that is not a number), per card
    attribute with a count, examples and how they are treated; None when the dataset has no card."""
    from talkwalk_bench.steering.predicates import ItemValues

    card = ctx.card_or_none()
    if card is None:
        return None
    ds = ctx.dataset
    steerable = [name for name, a in card.item.attributes.items() if a.kind != "text"]
    rep = ItemValues(card, ds.items, ds.item_ids).unknown_report(steerable)
    return _jsonable({attr: r for attr, r in rep.items() if r["count"]})


def _phases(show: bool):
    """A labelled line per phase of a run (loading, fitting, playing, scoring), on stderr; silent with --no-progress."""
    t0 = time.perf_counter()

    def phase(name: str, detail: str = "") -> None:
        if show:
            print(f"[{time.perf_counter() - t0:7.1f} s] {name}" + (f": {detail}" if detail else ""), file=sys.stderr, flush=True)

    return phase


def _good_result(path: Path) -> bool:
    try:
        return read_result(path).status == "success"
    except BenchError:
        return False


def staging_path(out: Path) -> Path:
    """Where a --force run writes while a good result stays in place (hidden: leaderboards skip it)."""
    return out.with_name(f".{out.stem}.replacing{out.suffix}")


def _run_locked(cfg: RunConfig, out: Path, t_start: float, spec, family, ctx: TaskContext, episodes, system,
                sysinfo: SystemInfo, taskinfo: TaskInfo, dsinfo: DatasetInfo, phase=lambda *a: None,
                prov: dict[str, Any] | None = None) -> Result:
    done: list[dict[str, Any]] = []
    if out.exists() and not cfg.force:
        if not cfg.resume:
            raise BenchError(f"{out}: a result already exists; pass --resume to continue it or --force to overwrite it")
        prev = read_result(out)
        _check_same_run(out, prev, sysinfo, taskinfo, dsinfo, cfg.seed, cfg.limit)
        if prev.status == "success":
            return prev
        _check_same_code(out, prev, prov)
        wanted = {e.id for e in episodes}
        done = [r for r in read_episodes(episodes_path(out)) if r.get("status") == "ok" and r.get("episode") in wanted]
    # --force over a good result: write beside it and publish only once the new run has succeeded
    staged = cfg.force and out.exists() and _good_result(out)
    target = staging_path(out) if staged else out
    ep_path = episodes_path(target)

    protocol = family.protocol()
    if ctx.dataset.untimed:
        protocol["order"] = "file order: the interaction file has no timestamp (allowed with --allow-untimed)"
    if ctx.dataset.unknown_items:
        protocol["unknown_items"] = (f"{ctx.dataset.unknown_items} items in the interactions are not in the item file "
                                     "and were added without metadata (allowed with --allow-unknown-items)")
    result = Result(status="started", run_id=uuid.uuid4().hex[:12], created_at=now(), system=sysinfo, task=taskinfo,
                    dataset=dsinfo, protocol=protocol, seed=cfg.seed, env=environment(),
                    n_episodes=len(episodes), episodes_file=episodes_path(out).name, limit=cfg.limit, provenance=prov)
    write_result(target, result)
    writer = EpisodeWriter(ep_path, done)
    ctx.system = system
    timings: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        phase("fitting", f"{sysinfo.name} (a cached model loads in seconds; a first fit trains, see the system's docs)")
        try:
            system.fit(family.train_data(), seed=cfg.seed)
        except BenchError:
            raise
        except Exception as exc:
            raise SystemFailure(f"system '{sysinfo.name}' failed in fit: {type(exc).__name__}: {_one_line(exc)}") from exc
        timings["fit_s"] = time.perf_counter() - t0
        result.fit = fit_record(system)

        finished = {r["episode"] for r in done}
        todo = [e for e in episodes if e.id not in finished]
        records = list(done)
        phase("playing", f"{len(todo)} episodes" + (f" ({len(done)} already done)" if done else ""))
        t_play = time.perf_counter()
        bar = tqdm(total=len(episodes), initial=len(done), desc=f"{sysinfo.name} / {spec.name}", unit="ep",
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
                        f"system '{sysinfo.name}' raised {type(exc).__name__} on episode {first}: {_one_line(exc)}; "
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

        phase("scoring", f"{len(records)} episodes, bootstrap CIs")
        result.metrics = aggregate(records, spec, cfg.seed)
        extras = family.extras(records)
        chance = extras.pop("chance", {})
        for name, est in family.summarize(records).items():
            result.metrics[name] = MetricEntry(**est.as_dict())
        for name, c in chance.items():
            if name in result.metrics:
                result.metrics[name].chance = c
        _check_declared(list(result.metrics), type(family))
        result.extras = _jsonable({"gate_metrics": spec.gate.metrics, "gate_tolerance": spec.gate.tolerance, **extras})
        degraded = judge_failed(result.extras)
        if degraded and not cfg.allow_degraded:
            result.status = "degraded"
            result.error = f"{degraded}; check the judge endpoint (or pass --allow-degraded to accept the run)"
        else:
            if degraded:
                result.extras["allowed_degraded"] = degraded
            result.status = "success"
    except (BenchError, KeyboardInterrupt, Exception) as exc:
        result.status = "error"
        if isinstance(exc, BenchError):
            result.error = str(exc)
        elif isinstance(exc, KeyboardInterrupt):
            result.error = "interrupted; rerun with --resume to continue"
        else:  # a harness fault: still recorded, never a result left "started"
            result.error = f"internal error: {type(exc).__name__}: {_one_line(exc)}"
        result.n_failed = sum(1 for r in read_episodes(ep_path) if r.get("status") == "failed")
        timings["total_s"] = time.perf_counter() - t_start
        result.timings = timings
        result.finished_at = now()
        write_result(target, result)
        writer.close()
        if not isinstance(exc, BenchError):
            raise
        if staged:
            exc.args = (f"{exc}; the earlier result {out} is kept, this run's is {target}",)
        raise _with_result(exc, target, result) from exc.__cause__
    writer.close()
    timings["total_s"] = time.perf_counter() - t_start
    result.timings = timings
    result.finished_at = now()
    write_result(target, result)
    if staged and result.status == "success":
        os.replace(ep_path, episodes_path(out))
        os.replace(target, out)
        target = out
    elif staged:
        result.error = f"{result.error}; the earlier result {out} is kept, this run's is {target}"
        write_result(target, result)
    result.__dict__.setdefault("_path", target)
    return result


def judge_failed(extras: dict[str, Any]) -> str | None:
    """Why a run's judge gave nothing usable (every judgment failed), or None."""
    info = extras.get("judge")
    if not isinstance(info, dict) or not info.get("available"):
        return None
    n, failed = info.get("judgments_in_records") or 0, info.get("failed_in_records") or 0
    if n and failed >= n:
        reasons = (info.get("this_process") or {}).get("failure_reasons") or {}
        why = ", ".join(f"{k}: {v}" for k, v in list(reasons.items())[:3])
        return f"every one of the {n} judgments failed" + (f" ({why})" if why else "")
    return None


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


def _check_declared(names: list[str], family: type) -> None:
    """A family reports only what it declares, so every number has a direction and a definition."""
    from talkwalk_bench.metric_info import lookup

    declared = family.declared_metrics()
    for name in names:
        decl, _ = lookup(name)
        if decl is None or decl not in declared:
            raise BenchError(f"task family '{family.name}' reported '{name}' without declaring it; "
                             "add it to the family's produces (and to talkwalk_bench/metric_info.py if new)")


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


def _check_same_run(path: Path, prev: Result, sysinfo: SystemInfo, taskinfo: TaskInfo, dsinfo: DatasetInfo, seed: int,
                    limit: int | None = None) -> None:
    diffs = []
    if prev.limit != limit:
        diffs.append("--limit")
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


def _check_same_code(path: Path, prev: Result, prov: dict[str, Any] | None) -> None:
    """Finished episodes of an interrupted run are kept only when the code that played them is the code now."""
    before = (prev.provenance or {}).get("files")
    if not prov or not isinstance(before, dict) or before == prov.get("files"):
        return
    now_files = prov.get("files") or {}
    changed = sorted(k for k in set(before) | set(now_files) if before.get(k) != now_files.get(k))
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    raise BenchError(f"{path}: cannot resume: the code changed since the interrupted run ({shown}); "
                     "use --force to start over or another --output")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


FIT_ENTRY_LIMIT = 4000  # characters of JSON: a longer entry of a system's fit_info is left out, by name


def fit_record(system: Any) -> dict[str, Any] | None:
    """The system's ``fit_info`` as recorded in the result: JSON values, a local path shortened to its last
    part (the cache entry's name), an entry longer than ``FIT_ENTRY_LIMIT`` left out and named in ``omitted``."""
    info = getattr(system, "fit_info", None)
    if not isinstance(info, dict) or not info:
        return None

    def short(v: Any) -> Any:
        if isinstance(v, str) and v.startswith("/") and len(v) > 1:
            return Path(v).name
        if isinstance(v, dict):
            return {k: short(x) for k, x in v.items()}
        if isinstance(v, list):
            return [short(x) for x in v]
        return v

    out: dict[str, Any] = {}
    omitted: list[str] = []
    for key, value in _jsonable(info).items():
        value = short(value)
        if len(json.dumps(value)) > FIT_ENTRY_LIMIT:
            omitted.append(key)
        else:
            out[key] = value
    if omitted:
        out["omitted"] = omitted
    return out


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
