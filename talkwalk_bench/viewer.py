"""The episode viewer: one result and its episodes as a self-contained HTML page.

Every episode shows its request(s) or turns, the parsed predicate, each list
with item titles and attributes from the dataset, per item whether it
satisfies the predicate, the held-out target, the system's explanation
where the record has one, and the episode's metric values; the page filters
by request kind, by pass/fail and by text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from talkwalk_bench.errors import BenchError
from talkwalk_bench.metric_info import info
from talkwalk_bench.results import Result, episodes_path, read_episodes, read_result
from talkwalk_bench.templating import render

# order in which a steering episode's lists are shown, with what each request is
_STEER_ORDER = [("neutral", "turn 0 · no request"), ("steer", "turn 1 · steer"), ("alt", "turn 1 · other steer (branch)"),
                ("more_variety", "turn 1 · more variety (branch)"), ("stay_close", "turn 1 · stay close (branch)"),
                ("go_back", "turn 2 · go back"), ("anchored", "turn 3 · anchored on a shown item")]


@dataclass
class ItemRow:
    rank: int
    item: str
    title: str
    attrs: str
    check: bool | None = None  # satisfies the section's predicate; None: no predicate
    target: bool = False
    note: str = ""


@dataclass
class Section:
    title: str
    utterance: str | None = None
    kind: str = ""
    predicate: str = ""
    explanation: str = ""
    items: list[ItemRow] = field(default_factory=list)

    @property
    def summary(self) -> str:
        checked = [r.check for r in self.items if r.check is not None]
        return f"{sum(checked)} of {len(checked)} satisfy" if checked else ""


@dataclass
class EpisodeView:
    episode: str
    user: str
    status: str
    kinds: list[str]
    outcome: str  # "pass", "fail" or "" (nothing to check)
    note: str
    metrics: list[tuple[str, str, Any]]
    sections: list[Section]
    error: str = ""


class Catalog:
    """Titles, compact attribute text and predicate checks for the items of one dataset."""

    def __init__(self, dataset: str | None) -> None:
        self.values = None
        self.reason = ""
        if dataset is None:
            self.reason = "no dataset"
            return
        try:
            from talkwalk_bench.data.card import load_card
            from talkwalk_bench.data.dataset import load_dataset
            from talkwalk_bench.steering.predicates import ItemValues

            ds = load_dataset(dataset)
            card = load_card(ds.name)
            self.values = ItemValues(card, ds.items, ds.item_ids)
            self.card = card
        except BenchError as exc:  # titles are a convenience; the page still shows ids
            self.reason = str(exc)

    def title(self, item: str) -> str:
        return self.values.titles.get(item, "") if self.values else ""

    def attrs(self, item: str) -> str:
        if not self.values:
            return ""
        out = []
        for name, v in self.values[item].items():
            if isinstance(v, frozenset):
                out.append(", ".join(sorted(v)))
            elif isinstance(v, float):
                if not math.isnan(v):
                    out.append(f"{name} {v:g}")
            elif v:
                out.append(f"{name} {v}")
        return " · ".join(out)

    def check(self, predicate: dict[str, Any] | None, item: str) -> bool | None:
        if not predicate or not self.values:
            return None
        from talkwalk_bench.steering.predicates import predicate_from_dict

        try:
            p = predicate_from_dict(predicate)
        except (KeyError, ValueError, TypeError):
            return None
        return self.values.satisfies(p, item)

    def describe(self, predicate: dict[str, Any] | None) -> str:
        """A predicate in words: ``genre has Drama``, ``year in 1990-1999 (1990s)``, ``genre like <title>``."""
        if not predicate:
            return ""
        k = predicate.get("kind")
        a = predicate.get("attribute", "")
        anchor = predicate.get("anchor")
        named = f"{self.title(anchor) or 'item ' + str(anchor)}" if anchor else ""
        if k == "has":
            return f"{a} has {predicate['value']}"
        if k == "lacks":
            return f"{a} lacks {predicate['value']}"
        if k == "range":
            lo, hi = predicate.get("low"), predicate.get("high")
            span = f"{'' if lo is None else f'{lo:g}'}–{'' if hi is None else f'{hi:g}'}"
            label = f" ({predicate['label']})" if predicate.get("label") else ""
            return f"{a} in {span}{label}"
        if k == "relative":
            word = "before" if predicate.get("direction") == "lower" else "after"
            return f"{a} {word} {named} ({predicate.get('anchor_value', float('nan')):g})"
        if k == "similar":
            vals = ", ".join(predicate.get("anchor_values", []))
            return f"{a} like {named} (Jaccard ≥ {predicate.get('min_jaccard', 0.5):g} with {vals}; not the anchor itself)"
        if k == "different":
            return f"{a} shares nothing with {named} ({', '.join(predicate.get('anchor_values', []))})"
        if k == "all":
            return " and ".join(self.describe(p) for p in predicate.get("parts", []))
        return str(predicate)


@lru_cache(maxsize=4)
def _catalog(dataset: str | None) -> Catalog:
    """One parsed catalog per dataset while a site writes many viewer pages."""
    return Catalog(dataset)


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "n/a" if v is None else str(v)
    if isinstance(v, (int, float)):
        return f"{v:.4g}" if not (isinstance(v, float) and math.isnan(v)) else "NaN"
    return str(v)


def _rows(cat: Catalog, items: list[str], targets: set[str], predicate: dict | None = None,
          notes: dict[str, str] | None = None) -> list[ItemRow]:
    return [ItemRow(rank=i, item=it, title=cat.title(it), attrs=cat.attrs(it), check=cat.check(predicate, it),
                    target=it in targets, note=(notes or {}).get(it, "")) for i, it in enumerate(items, 1)]


def _steering(rec: dict[str, Any], cat: Catalog) -> tuple[list[Section], list[str]]:
    reqs, lists = rec.get("requests", {}), rec.get("lists", {})
    explanations = rec.get("explanations") or {}
    targets = {str(rec["target"])} if rec.get("target") else set()
    neutral = set(lists.get("neutral", []))
    sections, kinds = [], []
    keys = [k for k, _ in _STEER_ORDER if k in lists] + [k for k in lists if k not in dict(_STEER_ORDER)]
    for key in keys:
        req = reqs.get(key)
        label = dict(_STEER_ORDER).get(key, key)
        utterance, kind, pred = (req, "", None) if not isinstance(req, dict) else (req.get("utterance"), req.get("kind", ""), req.get("predicate"))
        if kind:
            kinds.append(kind)
            label += f" ({kind})"
        notes = {it: "also in neutral list" for it in lists[key] if it in neutral} if key != "neutral" else {}
        if pred and pred.get("anchor") in lists[key]:
            notes[pred["anchor"]] = "the anchor item itself"
        sections.append(Section(title=label, utterance=utterance, kind=kind, predicate=cat.describe(pred),
                                explanation=str(explanations.get(key, "")),
                                items=_rows(cat, lists[key], targets, pred, notes)))
    return sections, kinds


def _conversation(rec: dict[str, Any], cat: Catalog) -> tuple[list[Section], list[str]]:
    targets = {str(rec["target"])} if rec.get("target") else set()
    sections, kinds = [], []
    for n, t in enumerate(rec.get("turns", []), 1):
        kind = t.get("kind", "")
        if kind:
            kinds.append(kind)
        notes = {rec["accepted_item"]: "accepted by the user"} if rec.get("accepted_turn") == n and rec.get("accepted_item") else {}
        sections.append(Section(title=f"turn {n}" + (f" ({kind})" if kind else ""), utterance=t.get("utterance"), kind=kind,
                                predicate=cat.describe(t.get("predicate")), explanation=str(t.get("explanation") or ""),
                                items=_rows(cat, t.get("shown", []), targets, t.get("predicate"), notes)))
    return sections, kinds


def _ranked(rec: dict[str, Any], cat: Catalog) -> list[Section]:
    targets = {str(t) for t in rec.get("targets", [])} | ({str(rec["target"])} if rec.get("target") else set())
    notes = {}
    if rec.get("ranked_sids"):
        notes = {it: "sid " + "-".join(map(str, sid)) for it, sid in zip(rec["ranked"], rec["ranked_sids"], strict=False)}
    title = "ranked list" + (f" (target sid {'-'.join(map(str, rec['target_sid']))})" if rec.get("target_sid") else "")
    return [Section(title=title, explanation=str(rec.get("explanation") or ""), items=_rows(cat, rec["ranked"], targets, None, notes))]


def episode_view(rec: dict[str, Any], cat: Catalog) -> EpisodeView:
    kinds: list[str] = []
    note = ""
    outcome = ""
    if "lists" in rec:
        sections, kinds = _steering(rec, cat)
    elif "turns" in rec:
        sections, kinds = _conversation(rec, cat)
        acc = rec.get("accepted_turn")
        note = f"accepted at turn {acc}" if acc else "never accepted"
        outcome = "pass" if acc else "fail"
    elif "ranked" in rec:
        sections = _ranked(rec, cat)
    else:
        sections = []
        if "seconds" in rec:
            note = f"{rec['seconds'] * 1000:.3g} ms for {rec.get('n_items', '?')} items"
    if rec.get("kind") and not kinds:
        kinds = [str(rec["kind"])]
    if not outcome:
        checks = [r.check for s in sections for r in s.items if r.check is not None]
        if checks:
            outcome = "pass" if all(checks) else "fail"
        elif any(r.target for s in sections for r in s.items):
            outcome, note = "pass", note or "target in the list"
        elif sections and sections[0].items and any(k in rec for k in ("targets", "target")):
            outcome, note = "fail", note or "target not in the list"
    metrics = [(name, _fmt(v), info(name)) for name, v in (rec.get("metrics") or {}).items() if v is not None]
    return EpisodeView(episode=str(rec.get("episode", "")), user=str(rec.get("user_id", "")), status=str(rec.get("status", "")),
                       kinds=sorted(set(kinds)), outcome=outcome, note=note, metrics=metrics, sections=sections,
                       error=str(rec.get("error") or ""))


def task_doc(family: str) -> str:
    """The doc (under docs/) that says how a task family is scored."""
    return {"steerability": "steering.md", "conversation": "judge.md", "hierarchy": "semid.md", "judge": "judge.md"}.get(family, "tasks.md")


def doc_links(result_path: Path, rel) -> dict[str, str]:
    """Links to the project's docs folder (when this checkout has one), through ``rel`` (absolute path -> href)."""
    from talkwalk_bench.paths import PROJECT_DIR

    docs = PROJECT_DIR / "docs"
    if not docs.is_dir():
        return {}
    try:
        family = read_result(result_path).task.family
    except BenchError:
        family = ""
    return {"docs_root": rel(docs), "docs": rel(docs / task_doc(family))}


def build_view(result_path: Path, *, limit: int | None = None, links: dict[str, str] | None = None) -> str:
    """The HTML page for one result file (``limit``: the first N episodes only)."""
    result_path = Path(result_path)
    res: Result = read_result(result_path)
    records = read_episodes(episodes_path(result_path))
    total = len(records)
    if limit is not None:
        records = records[:limit]
    cat = _catalog(res.dataset.name if res.dataset else None)
    if cat.values is None and res.dataset and res.dataset.path:
        cat = _catalog(res.dataset.path)
    episodes = [episode_view(r, cat) for r in records]
    kinds = sorted({k for e in episodes for k in e.kinds})
    metrics = [(name, m, info(name)) for name, m in res.metrics.items()]
    main = res.task.main_score
    headline = sorted((x for x in metrics if "/" not in x[0]), key=lambda x: x[0] != main)
    breakdown = [x for x in metrics if "/" in x[0]]
    return render("viewer.html.j2", res=res, episodes=episodes, kinds=kinds, headline=headline, breakdown=breakdown, total=total,
                  shown=len(episodes), titles_reason=cat.reason, links=links or {}, fmt=_fmt,
                  has_outcome=any(e.outcome for e in episodes))
