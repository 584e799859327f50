"""Result files -> leaderboards (Markdown, CSV, JSON, self-contained HTML).

Rows are systems, one table per task. Seeds of the same system are averaged
(the CI shown is then the spread of seed means, reported with the seed
count). Oracle systems are shown apart and never ranked. A row whose main
score is not significantly different from the best (paired bootstrap over
the same episodes) is marked with ``≈``. Judge columns carry their judge's
calibration (``judge_calibration`` task): beside them the calibration
accuracy, and they are greyed out as "uncalibrated" or "no better than
chance" unless the accuracy's CI lies above chance.
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
from talkwalk_bench.metrics.stats import paired_significant
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


def build(results: list[tuple[Path, Result]]) -> list[Board]:
    by_task: dict[tuple[str, str], list[tuple[Path, Result]]] = defaultdict(list)
    for f, r in results:
        by_task[(r.task.name, r.dataset.name)].append((f, r))
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
            row = Row(system=name, oracle=any(r.system.oracle for _, r in runs), seeds=[r.seed for _, r in runs],
                      metrics=_combine(runs, names), results=runs, args=runs[0][1].system.args,
                      judge_calibration=_judge_calibration(runs))
            if row.judge_calibration is not None:
                for m in JUDGED_METRICS:
                    if m in row.metrics:
                        row.metrics[m]["judge_verdict"] = row.judge_calibration.get("verdict", "uncalibrated")
            rows.append(row)
        _rank(rows, main)
        latest = max(items, key=lambda fr: fr[1].created_at)[1]
        boards.append(Board(task=task, main_score=main, metric_names=names, rows=rows, dataset=dataset,
                            protocol=latest.protocol, versions=latest.env.get("packages", {})))
    return boards


def _combine(runs: list[tuple[Path, Result]], names: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
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
        else:
            # across seeds: the mean of seed means, the mean of the per-seed episode CIs,
            # and the seed-to-seed standard deviation beside them
            lows = [e.ci_low for e in entries if e.ci_low is not None]
            highs = [e.ci_high for e in entries if e.ci_high is not None]
            out[m] = {"value": float(np.mean(vals)), "ci_low": float(np.mean(lows)) if lows else None,
                      "ci_high": float(np.mean(highs)) if highs else None, "seed_sd": float(np.std(vals, ddof=1)),
                      "n": int(np.mean([e.n for e in entries])), "seeds": len(vals), "chance": entries[0].chance}
    return out


def _episode_values(path: Path, r: Result, metric: str) -> dict[str, float]:
    out = {}
    for rec in read_episodes(episodes_path(path)):
        v = rec.get("metrics", {}).get(metric)
        if rec.get("status") == "ok" and v is not None:
            out[rec["episode"]] = float(v)
    return out


def _rank(rows: list[Row], main: str) -> None:
    sign = -1.0 if lower_is_better(main) else 1.0
    ranked = [r for r in rows if not r.oracle and r.metrics.get(main, {}).get("value") is not None]
    ranked.sort(key=lambda r: -sign * r.metrics[main]["value"])
    for i, r in enumerate(ranked, start=1):
        r.rank = i
    rows.sort(key=lambda r: (r.oracle, r.rank if r.rank is not None else 10**9, r.system))
    if len(ranked) < 2:
        return
    best = ranked[0]
    bp, br = best.results[0]
    best_vals = _episode_values(bp, br, main)
    if not best_vals:
        # a score computed over the whole run (a macro average over request kinds, a ratio of sums)
        # has no per-episode values to pair; say so rather than mark every row as different
        for r in ranked[1:]:
            r.tied_with_best = None
        return
    for r in ranked[1:]:
        p, res = next(((p, x) for p, x in r.results if x.seed == br.seed), r.results[0])
        vals = _episode_values(p, res, main)
        common = sorted(set(best_vals) & set(vals))
        if len(common) >= 2:
            a = [best_vals[e] for e in common]
            b = [vals[e] for e in common]
            r.tied_with_best = not paired_significant(a, b)


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
        out.append(f"Main score: **{b.main_score}** (mean [95 % CI over episodes] ±sd across seeds); n = episodes per seed. `≈`: not significantly different from the best (paired bootstrap). Oracle rows are ceilings and are not ranked.\n")
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
            out.append(f"| {rank} | {r.system}{mark} | {len(r.seeds)} | {n} | " + " | ".join(cells) + " |")
        chance = _chance_row(b, cols)
        if chance:
            out.append("| | *chance level* | | | " + " | ".join(chance + [""] * len(extra)) + " |")
            out.append("\nChance level: the value for a list drawn without regard to the request (from the top row's run; "
                       "episodes anchored on shown items differ per run, so each result JSON holds its own).")
        if any(r.tied_with_best is None for r in b.rows if r.rank and r.rank > 1):
            out.append(f"\n`≈` not computed: {b.main_score} is not a mean of per-episode values, so there is no paired test; "
                       "compare the CIs.")
        if judged:
            out.append("\nJudge columns in italics are not measurements: their judge is uncalibrated or, on known-answer "
                       "cases (`talkwalk-bench judge-calibrate`), no better than chance; see the judge calibration column.")
        na = {c: r.metrics[c]["reason"] for r in b.rows for c in cols if r.metrics.get(c, {}).get("value") is None and r.metrics.get(c, {}).get("reason")}
        for c, reason in na.items():
            out.append(f"\nn/a in {c}: {reason}")
        out += _kinds_markdown(b)
        out.append("")
    return "\n".join(out)


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
                             "main": m == b.main_score, "tied_with_best": r.tied_with_best if m == b.main_score else None})
    return rows


def to_csv(boards: list[Board]) -> str:
    buf = io.StringIO()
    rows = to_rows(boards)
    fields = ["task", "dataset", "system", "oracle", "rank", "seeds", "metric", "value", "ci_low", "ci_high", "n", "reason", "main", "tied_with_best"]
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def to_json(boards: list[Board]) -> str:
    data = [{"task": b.task, "dataset": b.dataset, "main_score": b.main_score, "protocol": b.protocol, "versions": b.versions,
             "rows": [{"system": r.system, "oracle": r.oracle, "rank": r.rank, "seeds": r.seeds, "tied_with_best": r.tied_with_best,
                       "args": r.args, "metrics": r.metrics} for r in b.rows]} for b in boards]
    return json.dumps(data, indent=2) + "\n"


def to_html(boards: list[Board], title: str = "talkwalk-bench leaderboard") -> str:
    """All tables on one self-contained page; ``leaderboard --format html --output FOLDER`` builds the full site."""
    from talkwalk_bench.site import render_boards

    return render_boards(boards, title)


FORMATS = {"md": to_markdown, "csv": to_csv, "json": to_json, "html": to_html}
