"""Result files -> leaderboards (Markdown, CSV, JSON, self-contained HTML).

Rows are systems, one table per task. Seeds of the same system are averaged:
the CI shown is then a hierarchical bootstrap (resample seeds, then episodes
within each seed, from the episode files), so it includes the seed-to-seed
variance; without episode files it falls back to a stated approximation.
Two results of one system, task, dataset and seed are refused. A system
whose seeds gave identical per-episode values (deterministic) is shown once,
with a note. Oracle systems are shown apart and never ranked. A row whose
main score is not significantly different from the best (paired bootstrap
over the same episodes, each episode's value averaged over the seeds) is
marked with ``≈``. Judge columns carry their judge's calibration
(``judge_calibration`` task): beside them the calibration accuracy, and they
are greyed out as "uncalibrated" or "no better than chance" unless the
accuracy's CI lies above chance.

Every row is checked against the current code (``provenance``): a row whose
results' fingerprinted files changed since, or that has no fingerprint, is
*stale*; one whose seeds were made by different code is *mixed*; one made
from a tree with uncommitted changes to those files is *dirty*.
``leaderboard --check`` fails on any of them.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from talkwalk_bench.errors import ResultFileError
from talkwalk_bench.metric_info import lower_is_better
from talkwalk_bench.metrics.stats import CONFIDENCE, paired_significant
from talkwalk_bench.results import (
    Result,
    episodes_path,
    looks_like_result,
    read_episodes,
    read_result,
)


@dataclass
class Row:
    system: str
    oracle: bool
    seeds: list[int]
    metrics: dict[str, dict[str, Any]]
    results: list[tuple[Path, Result]] = field(default_factory=list)
    rank: int | None = None
    tied_with_best: bool | None = False  # None: no paired test (the main score is not a mean of per-episode values)
    args: dict[str, Any] = field(default_factory=dict)
    judge_calibration: dict[str, Any] | None = None  # the calibration backing this row's judge columns
    stale: str | None = None  # why the numbers may not be what the current code gives ("no code fingerprint", files changed)
    stale_files: list[str] = field(default_factory=list)
    mixed: str | None = None  # the seeds were made by different code
    dirty: list[str] = field(default_factory=list)  # fingerprinted files uncommitted when the results were made
    note: str | None = None  # e.g. a deterministic system shown once
    problems: list[tuple[str, str]] = field(default_factory=list)  # (result file, what) for --check

    @property
    def seeds_text(self) -> str:
        return f"1 ({len(self.seeds)} identical)" if self.deterministic else str(len(self.seeds))

    @property
    def deterministic(self) -> bool:
        return bool(self.note) and self.note.startswith("deterministic")

    @property
    def marks(self) -> list[str]:
        return [m for m, on in (("stale", self.stale), ("mixed", self.mixed), ("dirty", self.dirty)) if on]


# columns scored by an LLM judge: only as good as the judge's calibration
JUDGED_METRICS = ("judge_instruction_following", "judge_explanation_coherence", "judge_pairwise_win_rate",
                  "judge_agreement", "judge_machine_spearman")


def _judge_calibration(runs: list[tuple[Path, Result]]) -> dict[str, Any] | None:
    """The calibration recorded by a judged run (``extras.judge.calibration``); None when no judge ran."""
    for _, r in runs:
        j = (r.extras or {}).get("judge")
        if isinstance(j, dict) and j.get("available") and j.get("rubrics") is not None:
            cal = j.get("calibration")
            return cal if isinstance(cal, dict) else {"verdict": "uncalibrated", "reason": "the result records no judge calibration"}
    return None


@dataclass
class Board:
    task: str
    main_score: str
    metric_names: list[str]
    rows: list[Row]
    dataset: str
    protocol: dict[str, Any]
    versions: dict[str, Any]


def _other_json(path: Path) -> bool:
    """A well-formed JSON file that is no result (a leaderboard's own JSON, a tolerance file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False  # unreadable or corrupt: read_result says why
    return not looks_like_result(data)


def collect(paths: list[Path], *, allow_limited: bool = False) -> tuple[list[tuple[Path, Result]], list[str]]:
    """Expand folders, read and validate every result; errors stop with the file named.

    Inside a folder, JSON files that are not results at all are skipped with a
    note; a file named on the command line must be a result. A result of a
    ``--limit`` run (a few episodes) is refused unless ``allow_limited``.
    """
    files: list[Path] = []
    skipped: list[str] = []
    for p in paths:
        if p.is_dir():
            for f in sorted(f for f in p.rglob("*.json") if not f.name.startswith(".")):
                if _other_json(f):
                    skipped.append(f"{f}: not a result file")
                else:
                    files.append(f)
        elif p.exists():
            files.append(p)
        else:
            raise ResultFileError(f"{p}: no such result file or folder")
    results = []
    for f in files:
        r = read_result(f)
        if r.status != "success":
            skipped.append(f"{f}: status {r.status}" + (f" ({r.error})" if r.error else ""))
            continue
        if r.limit is not None and not allow_limited:
            raise ResultFileError(f"{f}: a --limit {r.limit} run ({r.n_episodes} episodes) is not comparable with full runs; "
                                  "rerun it without --limit, move it out of the folder, or pass --allow-limited")
        results.append((f, r))
    return results, skipped


def _variant_name(r: Result) -> str:
    # a --limit run (allowed with --allow-limited) never shares a row with full runs
    return r.system.name if r.limit is None else f"{r.system.name} (limited: {r.n_episodes} episodes)"


def build(results: list[tuple[Path, Result]], *, root: Path | None = None) -> list[Board]:
    """Boards from results; ``root`` is the tree whose code the fingerprints are checked against (default: this project)."""
    by_task: dict[tuple[str, str], list[tuple[Path, Result]]] = defaultdict(list)
    for f, r in results:
        by_task[(r.task.name, r.dataset.name)].append((f, r))
    episodes = _EpisodeCache()
    hashes: dict[str, Any] = {}
    boards = []
    for (task, dataset), items in sorted(by_task.items()):
        main = items[0][1].task.main_score
        names: list[str] = []
        by_sys: dict[str, list[tuple[Path, Result]]] = defaultdict(list)
        for f, r in items:
            by_sys[_variant_name(r)].append((f, r))
            for m in r.metrics:
                if m not in names:
                    names.append(m)
        rows = []
        for name, runs in by_sys.items():
            runs.sort(key=lambda fr: fr[1].seed)
            _refuse_duplicate_seeds(runs)
            note = _deterministic(runs, episodes)
            row = Row(system=name, oracle=any(r.system.oracle for _, r in runs), seeds=[r.seed for _, r in runs],
                      metrics=_combine(runs[:1] if note else runs, names, episodes), results=runs,
                      args=runs[0][1].system.args, judge_calibration=_judge_calibration(runs), note=note)
            _check_code(row, root, hashes)
            if row.judge_calibration is not None:
                for m in JUDGED_METRICS:
                    if m in row.metrics:
                        row.metrics[m]["judge_verdict"] = row.judge_calibration.get("verdict", "uncalibrated")
            rows.append(row)
        _rank(rows, main, episodes)
        latest = max(items, key=lambda fr: fr[1].created_at)[1]
        boards.append(Board(task=task, main_score=main, metric_names=names, rows=rows, dataset=dataset,
                            protocol=latest.protocol, versions=latest.env.get("packages", {})))
    return boards


class _EpisodeCache:
    """Each result's per-episode metric values, read once per build: {episode: {metric: value}} of ok episodes."""

    def __init__(self) -> None:
        self._data: dict[Path, dict[str, dict[str, Any]]] = {}

    def get(self, path: Path) -> dict[str, dict[str, Any]]:
        if path not in self._data:
            self._data[path] = {rec["episode"]: rec.get("metrics") or {} for rec in read_episodes(episodes_path(path))
                                if rec.get("status") == "ok" and "episode" in rec}
        return self._data[path]

    def values(self, path: Path, metric: str) -> dict[str, float]:
        return {e: float(m[metric]) for e, m in self.get(path).items() if m.get(metric) is not None}


def _refuse_duplicate_seeds(runs: list[tuple[Path, Result]]) -> None:
    seen: dict[int, Path] = {}
    for f, r in runs:
        if r.seed in seen:
            raise ResultFileError(f"{seen[r.seed]} and {f}: both are {r.system.name} on {r.task.name} ({r.dataset.name}) "
                                  f"with seed {r.seed}; keep one of them (move the other out of the results folder)")
        seen[r.seed] = f


def _deterministic(runs: list[tuple[Path, Result]], episodes: _EpisodeCache) -> str | None:
    """A note when every seed gave the same per-episode values (or, without episode files, the same metrics)."""
    if len(runs) < 2:
        return None
    per_run = [episodes.get(p) for p, _ in runs]
    if all(per_run):
        same = all(e == per_run[0] for e in per_run[1:])
    elif not any(per_run):
        first = {k: v.value for k, v in runs[0][1].metrics.items()}
        same = all({k: v.value for k, v in r.metrics.items()} == first for _, r in runs[1:])
    else:
        return None
    if not same:
        return None
    seeds = ", ".join(str(r.seed) for _, r in runs)
    return f"deterministic: its {len(runs)} seeds ({seeds}) gave identical per-episode values; shown once"


BOOT_RESAMPLES = 2000
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def _t975(df: int) -> float:
    if df in _T975:
        return _T975[df]
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


def hierarchical_bootstrap(per_seed: list[np.ndarray], *, n_resamples: int = BOOT_RESAMPLES, seed: int = 0,
                           confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Percentile CI of the mean of seed means, resampling seeds and then episodes within each drawn seed.

    ``per_seed``: one (episodes x metrics) array per seed, NaN where an episode has no value for a metric.
    Each resample draws k seeds with replacement and, for each, a fresh resample of that seed's episodes
    (multinomial weights, as ``metrics.stats.mean_ci_many``); its value is the mean of the k episode means.
    """
    k = len(per_seed)
    m = per_seed[0].shape[1]
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, k, size=(n_resamples, k))
    total = np.zeros((n_resamples, m))
    for j in range(k):
        slot = np.full((n_resamples, m), np.nan)
        for s in range(k):
            idx = np.flatnonzero(pick[:, j] == s)
            if not idx.size:
                continue
            X = per_seed[s]
            n = X.shape[0]
            mask = ~np.isnan(X)
            Xz, Mf = np.where(mask, X, 0.0), mask.astype(np.float64)
            block = max(1, 20_000_000 // max(n, 1))  # memory ~ block x episodes
            for b0 in range(0, idx.size, block):
                part = idx[b0:b0 + block]
                draws = rng.integers(0, n, size=(part.size, n)) + (np.arange(part.size) * n)[:, None]
                W = np.bincount(draws.ravel(), minlength=part.size * n).reshape(part.size, n).astype(np.float64)
                with np.errstate(invalid="ignore", divide="ignore"):
                    slot[part] = (W @ Xz) / (W @ Mf)
        total += slot
    boot = total / k
    alpha = (1.0 - confidence) / 2.0
    with np.errstate(invalid="ignore"):
        lo, hi = np.nanquantile(boot, [alpha, 1.0 - alpha], axis=0)
    return lo, hi


def _seed_matrices(runs: list[tuple[Path, Result]], names: list[str], episodes: _EpisodeCache) -> list[np.ndarray] | None:
    per = [episodes.get(p) for p, _ in runs]
    if not all(per):
        return None
    mats = []
    for eps in per:
        order = sorted(eps)
        mats.append(np.array([[np.nan if eps[e].get(m) is None else float(eps[e][m]) for m in names] for e in order],
                             dtype=np.float64).reshape(len(order), len(names)))
    return mats


def _combine(runs: list[tuple[Path, Result]], names: list[str], episodes: _EpisodeCache | None = None) -> dict[str, dict[str, Any]]:
    episodes = episodes or _EpisodeCache()
    out: dict[str, dict[str, Any]] = {}
    multi: list[str] = []
    for m in names:
        entries = [r.metrics[m] for _, r in runs if m in r.metrics]
        vals = [e.value for e in entries if e.value is not None]
        invalid = [e for e in entries if e.invalid]
        if invalid:  # one seed's NaN must not vanish into the mean of the others
            out[m] = {"value": None, "reason": f"{invalid[0].reason} in {len(invalid)} of {len(entries)} seed(s)"}
            continue
        if not vals:
            reason = next((e.reason for e in entries if e.reason), "not reported")
            out[m] = {"value": None, "reason": reason}
            continue
        if len(vals) == 1:
            e = next(e for e in entries if e.value is not None)
            out[m] = {"value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n, "seeds": 1, "chance": e.chance}
            continue
        out[m] = {"value": float(np.mean(vals)), "seed_sd": float(np.std(vals, ddof=1)),
                  "n": int(np.mean([e.n for e in entries])), "seeds": len(vals), "chance": entries[0].chance}
        multi.append(m)
    if not multi:
        return out
    # across seeds: a hierarchical bootstrap from the episode files where each seed's episodes give its reported value
    mats = _seed_matrices(runs, multi, episodes) if all(all(m in r.metrics for m in multi) for _, r in runs) else None
    usable: list[int] = []
    why: dict[str, str] = {}
    for i, m in enumerate(multi):
        if mats is None:
            why[m] = "a seed's episode file is missing"
            continue
        ok = True
        for X, (_, r) in zip(mats, runs, strict=True):
            col = X[:, i]
            col = col[~np.isnan(col)]
            rv = r.metrics[m].value
            if rv is None or not col.size or not np.isclose(col.mean(), rv, rtol=1e-6, atol=1e-9):
                ok = False
                break
        if ok:
            usable.append(i)
        else:
            why[m] = "the score is not the mean of its per-episode values"
    if usable:
        lo, hi = hierarchical_bootstrap([X[:, usable] for X in mats])
        for j, i in enumerate(usable):
            m = multi[i]
            if np.isfinite(lo[j]) and np.isfinite(hi[j]):
                out[m].update(ci_low=float(lo[j]), ci_high=float(hi[j]), ci_method="hierarchical bootstrap (seeds, then episodes)")
            else:
                why[m] = "too few episodes to resample"
    for m, reason in why.items():
        entries = [r.metrics[m] for _, r in runs if m in r.metrics and r.metrics[m].value is not None]
        k = len(entries)
        halves = [(e.ci_high - e.ci_low) / 2 for e in entries if e.ci_low is not None and e.ci_high is not None]
        within = float(np.mean([(h / 1.96) ** 2 for h in halves])) if len(halves) == k else 0.0
        half = _t975(k - 1) * float(np.sqrt(out[m]["seed_sd"] ** 2 / k + within / k))
        out[m].update(ci_low=out[m]["value"] - half, ci_high=out[m]["value"] + half,
                      ci_method=f"t interval over the {k} seed means" + (" widened by the per-seed episode CIs" if within else "")
                      + f" ({reason})")
    return out


def _paired_values(row: Row, metric: str, episodes: _EpisodeCache) -> dict[Any, float]:
    """Per-episode values to pair with another row's. When every seed draws the same episodes (ranking: every
    user), an episode's value averaged over the row's seeds, keyed by episode; when the seeds draw different
    episodes (steering, conversation, cold start), each seed's own values, keyed by (seed, episode), so the
    pairing covers every seed's episodes rather than the few that all seeds share. A deterministic row counts
    once when its seeds share their episodes."""
    runs = row.results
    per = [(r.seed, episodes.values(p, metric)) for p, r in runs]
    if not per or not all(v for _, v in per):
        return {}
    common = set(per[0][1]).intersection(*(v for _, v in per[1:]))
    if len(common) >= 0.9 * max(len(v) for _, v in per):
        vals = per[:1] if row.deterministic else per
        return {e: float(np.mean([v[e] for _, v in vals])) for e in common}
    return {(seed, e): x for seed, v in per for e, x in v.items()}


def _rank(rows: list[Row], main: str, episodes: _EpisodeCache | None = None) -> None:
    episodes = episodes or _EpisodeCache()
    sign = -1.0 if lower_is_better(main) else 1.0
    ranked = [r for r in rows if not r.oracle and r.metrics.get(main, {}).get("value") is not None]
    ranked.sort(key=lambda r: -sign * r.metrics[main]["value"])
    for i, r in enumerate(ranked, start=1):
        r.rank = i
    rows.sort(key=lambda r: (r.oracle, r.rank if r.rank is not None else 10**9, r.system))
    if len(ranked) < 2:
        return
    best = ranked[0]
    best_vals = _paired_values(best, main, episodes)
    if not best_vals:
        # a score computed over the whole run (a macro average over request kinds, a ratio of sums)
        # has no per-episode values to pair; say so rather than mark every row as different
        for r in ranked[1:]:
            r.tied_with_best = None
        return
    for r in ranked[1:]:
        vals = _paired_values(r, main, episodes)
        common = sorted(set(best_vals) & set(vals), key=str)
        if len(common) >= 2:
            a = [best_vals[e] for e in common]
            b = [vals[e] for e in common]
            r.tied_with_best = not paired_significant(a, b)
        else:  # nothing to pair (no common seed or episode): no test, never "different"
            r.tied_with_best = None


def _short(files: list[str], n: int = 3) -> str:
    return ", ".join(files[:n]) + (f" and {len(files) - n} more" if len(files) > n else "")


def _check_code(row: Row, root: Path | None, cache: dict[str, Any]) -> None:
    """Mark the row stale / mixed / dirty against the current tree, and list each problem per result file."""
    from talkwalk_bench.provenance import changed_files, effective_code_hash

    changed: set[str] = set()
    missing = []
    codes: dict[str, list[Path]] = defaultdict(list)
    for p, r in row.results:
        prov = r.provenance
        if not prov or not isinstance(prov.get("files"), dict):
            missing.append(p)
            row.problems.append((str(p), "stale: no code fingerprint (written before results recorded one); rerun it"))
            continue
        codes[str(prov.get("code_hash"))].append(p)
        diff = changed_files(prov["files"], root, cache=cache, prov=prov, system=r.system.name)
        if diff:
            changed.update(diff)
            row.problems.append((str(p), f"stale: changed since the run: {_short(diff, 5)}"))
        dirty = prov.get("dirty_files") or []
        if dirty:
            row.dirty = sorted(set(row.dirty) | set(dirty))
            row.problems.append((str(p), f"dirty: made with uncommitted or untracked {_short(dirty, 5)}"))
    if len(codes) > 1:  # a module that registers several systems counts only as far as it concerns this one
        codes = defaultdict(list)
        for p, r in row.results:
            if r.provenance and isinstance(r.provenance.get("files"), dict):
                codes[effective_code_hash(r.provenance, r.system.name, root, cache)].append(p)
    row.stale_files = sorted(changed)
    reasons = []
    if missing:
        some = 1 < len(row.results) != len(missing)
        reasons.append("no code fingerprint" + (f" ({len(missing)} of {len(row.results)} results)" if some else ""))
    if changed:
        reasons.append(f"changed: {_short(row.stale_files)}")
    row.stale = "; ".join(reasons) or None
    if len(codes) > 1 or (codes and missing):
        groups = sorted(codes.items())
        row.mixed = f"its {len(row.results)} results were made by {len(codes) + bool(missing)} different code versions"
        for p, _ in row.results:
            row.problems.append((str(p), f"mixed: {row.system}'s seeds in this row were made by different code ("
                                 + ", ".join(f"{h}: {len(ps)}" for h, ps in groups) + (f", none: {len(missing)}" if missing else "") + ")"))


def problems(boards: list[Board]) -> list[str]:
    """One line per problem (file: what) over every row: stale, mixed, dirty; empty when all is current."""
    out: list[str] = []
    for b in boards:
        for r in b.rows:
            out += [f"{f}: {what}" for f, what in r.problems]
    return sorted(dict.fromkeys(out))


def _fmt(m: dict[str, Any] | None, ci: bool = True) -> str:
    if not m or m.get("value") is None:
        return "n/a"
    v = f"{m['value']:.4f}"
    if ci and m.get("ci_low") is not None and m.get("ci_high") is not None and m["ci_low"] != m["ci_high"]:
        v += f" [{m['ci_low']:.4f}, {m['ci_high']:.4f}]"
    if ci and m.get("seed_sd"):
        v += f" ±{m['seed_sd']:.4f}"
    return v


def _columns(board: Board, max_cols: int = 8) -> list[str]:
    """Main score first, then cutoff-10 and cutoff-free metrics, then the rest."""
    rest = [m for m in board.metric_names if m != board.main_score]
    first = [m for m in rest if m.endswith("@10") or "@" not in m]
    cols = [board.main_score] + first + [m for m in rest if m not in first]
    return cols[:max_cols]


def _greyed(m: dict[str, Any] | None) -> str | None:
    """Why a judge cell is not to be read as a measurement ("uncalibrated", "no better than chance"), or None."""
    v = (m or {}).get("judge_verdict")
    return v if v and v != "calibrated" and (m or {}).get("value") is not None else None


def calibration_text(cal: dict[str, Any] | None) -> str:
    """A judge calibration in one cell: accuracy [CI] vs chance and the verdict."""
    if not cal:
        return ""
    acc = cal.get("judge_accuracy") or {}
    if acc.get("value") is None:
        return cal.get("verdict", "uncalibrated")
    ci = f" [{acc['ci_low']:.2f}, {acc['ci_high']:.2f}]" if acc.get("ci_low") is not None else ""
    return f"{acc['value']:.2f}{ci} vs chance {cal.get('chance', 0.5):.2f}: {cal.get('verdict')}"


def _has_judge(board: Board, cols: list[str]) -> bool:
    return any(c in JUDGED_METRICS for c in cols) and any(r.judge_calibration is not None for r in board.rows)


def to_markdown(boards: list[Board], *, all_metrics: bool = False) -> str:
    out = []
    for b in boards:
        cols = _columns(b, 10**6 if all_metrics else 8)
        judged = _has_judge(b, cols)
        out.append(f"## {b.task} ({b.dataset})\n")
        out.append(f"Main score: **{b.main_score}** (mean [95 % CI] ±sd across seeds; one seed: a bootstrap CI over episodes, "
                   "several: a hierarchical bootstrap over seeds, then episodes); n = episodes per seed. `≈`: not significantly "
                   "different from the best (paired bootstrap over episodes: each averaged over the seeds where every seed has the same episodes, else every seed's episodes paired seed by seed). Oracle rows are ceilings "
                   "and are not ranked. **stale**: the code that made the row has changed since (or was not recorded); "
                   "**mixed**: its seeds come from different code; **dirty**: made with uncommitted files.\n")
        extra = ["judge calibration"] if judged else []
        out.append("| rank | system | seeds | n | " + " | ".join(cols + extra) + " |")
        out.append("|---|---|---|---|" + "---|" * len(cols + extra))
        for r in b.rows:
            rank = "oracle" if r.oracle else (str(r.rank) if r.rank else "-")
            mark = " ≈" if r.tied_with_best else ""
            n = r.metrics.get(b.main_score, {}).get("n", "")
            cells = [f"*{_fmt(r.metrics.get(c))}* ({_greyed(r.metrics.get(c))} judge)" if _greyed(r.metrics.get(c))
                     else _fmt(r.metrics.get(c)) for c in cols]
            if judged:
                cells.append(calibration_text(r.judge_calibration) or "no judge")
            flags = "".join(f" **{m}**" for m in r.marks)
            out.append(f"| {rank} | {r.system}{mark}{flags} | {r.seeds_text} | {n} | " + " | ".join(cells) + " |")
        chance = _chance_row(b, cols)
        if chance:
            out.append("| | *chance level* | | | " + " | ".join(chance + [""] * len(extra)) + " |")
            out.append("\nChance level: the value for a list drawn without regard to the request (from the top row's run; "
                       "episodes anchored on shown items differ per run, so each result JSON holds its own).")
        if any(r.tied_with_best is None for r in b.rows if r.rank and r.rank > 1):
            out.append(f"\n`≈` not computed: {b.main_score} is not a mean of per-episode values, so there is no paired test; "
                       "compare the CIs.")
        out += _marks_markdown(b)
        methods = sorted({r.metrics[c]["ci_method"] for r in b.rows for c in cols[:1] if r.metrics.get(c, {}).get("ci_method")
                          and not r.metrics[c]["ci_method"].startswith("hierarchical")})
        for mth in methods:
            out.append(f"\nCI of {b.main_score} for some rows: {mth}.")
        if judged:
            out.append("\nJudge columns in italics are not measurements: their judge is uncalibrated or, on known-answer "
                       "cases (`talkwalk-bench judge-calibrate`), no better than chance; see the judge calibration column.")
        na = {c: r.metrics[c]["reason"] for r in b.rows for c in cols if r.metrics.get(c, {}).get("value") is None and r.metrics.get(c, {}).get("reason")}
        for c, reason in na.items():
            out.append(f"\nn/a in {c}: {reason}")
        out += _kinds_markdown(b)
        out.append("")
    return "\n".join(out)


def _marks_markdown(board: Board) -> list[str]:
    """Below a table: what each stale / mixed / dirty row is about (rows with one reason together), and each row's note."""
    groups: dict[str, list[str]] = defaultdict(list)
    for r in board.rows:
        if r.stale:
            groups[f"**stale** ({r.stale})"].append(r.system)
        if r.mixed:
            groups[f"**mixed** ({r.mixed})"].append(r.system)
        if r.dirty:
            groups[f"**dirty** (made with uncommitted or untracked {_short(r.dirty)})"].append(r.system)
    out = [f"\n{what}: {', '.join(systems)}." for what, systems in groups.items()]
    out += [f"\n{r.system}: {r.note}." for r in board.rows if r.note]
    return out


def _kinds_markdown(board: Board) -> list[str]:
    """Per request kind (metrics ``<name>@<cut>/<kind>`` with a chance level): each system's value beside its own chance."""
    pre = "constraint_following@10/"
    kinds = sorted({m[len(pre):] for m in board.metric_names if m.startswith(pre)})
    if not kinds:
        return []
    out = ["\nPer request kind: constraint_following@10 (chance level of that system's requests of the kind) "
           "and, below, constraint_following_norm@10 (0 = chance, 1 = all satisfy, negative = below chance, floor −1).\n",
           "| kind | " + " | ".join(r.system for r in board.rows) + " |", "|---|" + "---|" * len(board.rows)]
    for kind in kinds:
        cells = []
        for r in board.rows:
            m = r.metrics.get(pre + kind, {})
            nv = r.metrics.get(f"constraint_following_norm@10/{kind}", {}).get("value")
            if m.get("value") is None:
                cells.append("n/a")
                continue
            ch = "" if m.get("chance") is None else f" ({m['chance']:.3f})"
            cells.append(f"{m['value']:.3f}{ch}" + ("" if nv is None else f"<br>{nv:+.3f}"))
        out.append(f"| {kind} | " + " | ".join(cells) + " |")
    return out


def _chance_row(board: Board, cols: list[str]) -> list[str]:
    """Each column's chance level (a system that ignores the request), where the task defines one."""
    cells = []
    for c in cols:
        v = next((r.metrics.get(c, {}).get("chance") for r in board.rows if r.metrics.get(c, {}).get("chance") is not None), None)
        cells.append("" if v is None else f"{v:.4f}")
    return cells if any(cells) else []


def to_rows(boards: list[Board]) -> list[dict[str, Any]]:
    rows = []
    for b in boards:
        for r in b.rows:
            for m in b.metric_names:
                e = r.metrics.get(m, {})
                rows.append({"task": b.task, "dataset": b.dataset, "system": r.system, "oracle": r.oracle, "rank": r.rank,
                             "seeds": len(r.seeds), "metric": m, "value": e.get("value"), "ci_low": e.get("ci_low"),
                             "ci_high": e.get("ci_high"), "n": e.get("n"), "reason": e.get("reason"),
                             "main": m == b.main_score, "tied_with_best": r.tied_with_best if m == b.main_score else None,
                             "ci_method": e.get("ci_method"), "stale": r.stale, "mixed": r.mixed, "dirty": ", ".join(r.dirty) or None,
                             "note": r.note})
    return rows


def to_csv(boards: list[Board]) -> str:
    buf = io.StringIO()
    rows = to_rows(boards)
    fields = ["task", "dataset", "system", "oracle", "rank", "seeds", "metric", "value", "ci_low", "ci_high", "n", "reason", "main",
              "tied_with_best", "ci_method", "stale", "mixed", "dirty", "note"]
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def to_json(boards: list[Board]) -> str:
    data = [{"task": b.task, "dataset": b.dataset, "main_score": b.main_score, "protocol": b.protocol, "versions": b.versions,
             "rows": [{"system": r.system, "oracle": r.oracle, "rank": r.rank, "seeds": r.seeds, "tied_with_best": r.tied_with_best,
                       "args": r.args, "metrics": r.metrics, "stale": r.stale, "stale_files": r.stale_files, "mixed": r.mixed,
                       "dirty": r.dirty, "note": r.note} for r in b.rows]} for b in boards]
    return json.dumps(data, indent=2) + "\n"


def to_html(boards: list[Board], title: str = "talkwalk-bench leaderboard") -> str:
    """All tables on one self-contained page; ``leaderboard --format html --output FOLDER`` builds the full site."""
    from talkwalk_bench.site import render_boards

    return render_boards(boards, title)


FORMATS = {"md": to_markdown, "csv": to_csv, "json": to_json, "html": to_html}
