"""Steerability: multi-turn steering episodes over real test users, scored against item-metadata predicates.

One episode per sampled test user, deterministic from the seed. Turns
(each a ``Request`` whose ``conversation`` holds the earlier turns and the
items shown in answer):

  0  neutral request (no text by default)                       -> L0
  1  branches from turn 0, all with the same history:
       S      an attribute steer consistent with the user's held-out item -> LS
       S'     the same kind, another value                               -> LA
       "more variety"                                                    -> LV
       "stay close"                                                      -> LC
  2  after S: "go back"                                          -> LB
  3  after "go back": an anchored steer on the top shown item
     (older / newer / similar / contrast)                        -> LR

Turns are played over the whole batch, one turn at a time. The
predicates, formulas and chance levels are described in docs/steering.md.

Judge metrics (optional): when judge options are given (``-O judge_model=...
-O judge_base_url=...`` or ``--judge-model/--judge-base-url``), the steer
turn's list is also rated by an LLM judge with
``talkwalk_bench.judge.scoring.SteeringJudge`` (instruction following,
explanation coherence, pairwise against the system's own neutral list,
agreement with the predicate check). Without judge options nothing changes;
with options but no usable endpoint the judge metrics are "n/a" with the
reason (docs/judge.md).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from functools import cached_property
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from talkwalk_bench.metrics import steering as M
from talkwalk_bench.metrics.stats import Estimate, not_available
from talkwalk_bench.steering.phrasings import Utterance, load_steering_file, utterance_predicate
from talkwalk_bench.steering.predicates import (
    AllOf,
    HasValue,
    InRange,
    ItemValues,
    LacksValue,
    Predicate,
    predicate_from_dict,
)
from talkwalk_bench.steering.render import Steer, Vocabulary
from talkwalk_bench.tasks.base import Episode, Family, explain, register_family
from talkwalk_bench.tasks.ranking import sample_users
from talkwalk_bench.tasks.steering_eval import eval_templates
from talkwalk_bench.types import ORACLE_KEY, Ranking, Request, Turn

ATTRIBUTE_KINDS = ("include", "exclude", "range_bin", "before", "after", "include_range", "include_exclude")
ANCHORED_KINDS = ("older", "newer", "similar", "contrast")


class SteerabilityParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_users: int | None = Field(200, ge=1, description="test users sampled (seeded); all when null")
    neutral: Literal["empty", "text"] = Field("empty", description="turn 0 has no text, or a neutral phrasing")
    attribute_kinds: list[str] = Field(default_factory=lambda: list(ATTRIBUTE_KINDS))
    anchored_kinds: list[str] = Field(default_factory=lambda: list(ANCHORED_KINDS))
    min_support: int | None = Field(None, ge=1, description="a request needs this many satisfying unseen items; default max(k)")
    rbo_p: float = Field(0.9, gt=0.0, lt=1.0)

    @field_validator("attribute_kinds")
    @classmethod
    def _attr_kinds(cls, v: list[str]) -> list[str]:
        bad = [k for k in v if k not in ATTRIBUTE_KINDS]
        if bad or not v:
            raise ValueError(f"unknown or empty attribute kinds {bad}; choose from {', '.join(ATTRIBUTE_KINDS)}")
        return v

    @field_validator("anchored_kinds")
    @classmethod
    def _anch_kinds(cls, v: list[str]) -> list[str]:
        bad = [k for k in v if k not in ANCHORED_KINDS]
        if bad or not v:
            raise ValueError(f"unknown or empty anchored kinds {bad}; choose from {', '.join(ANCHORED_KINDS)}")
        return v


def _key(p: Predicate) -> str:
    return json.dumps(p.to_dict(), sort_keys=True)


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on") if isinstance(value, str) else bool(value)


@register_family
class SteerabilityFamily(Family):
    """Multi-turn steering episodes with machine-checkable predicates (constraint following, sensitivity, reversibility...)."""

    name = "steerability"
    produces = ("constraint_following@K", "constraint_following_norm@K", "steering_lift@K", "attribute_control@K",
                "preference_sensitivity@K", "steering_entropy_reduction", "steering_precision", "reversibility",
                "steering_traceability", "diversity_gradient", "ild", "relevance_under_steering@K",
                "relevance_under_steering/RR@K", "relevance_neutral@K", "judge_instruction_following",
                "judge_explanation_coherence", "judge_pairwise_win_rate", "judge_agreement", "judge_machine_spearman")
    reads_steering_file = True
    Params = SteerabilityParams
    needs_card = True

    # -- shared state ----------------------------------------------------------
    def _setup(self) -> None:
        if getattr(self, "_ready", False):
            return
        ctx = self.ctx
        self.vocab = Vocabulary(ctx.card)
        ds = ctx.dataset
        self.iv = ItemValues(ctx.card, ds.items, ds.item_ids)
        self.templates, self.template_source = eval_templates(ctx.steering_file)
        # literal utterances of a steering file, each with its own predicate checked against the card
        self.literals: list[tuple[Utterance, Predicate]] = []
        if ctx.steering_file is not None:
            own = load_steering_file(ctx.steering_file, ctx.card)
            self.literals = [(u, utterance_predicate(u, ctx.card)) for u in own.utterances]
        self.skipped_users = 0
        self._masks: dict[str, np.ndarray] = {}
        self._features = self._item_features()
        self._probe_cache: dict[str, np.ndarray | None] = {}
        self._ready = True

    def _mask(self, p: Predicate) -> np.ndarray:
        k = _key(p)
        if k not in self._masks:
            self._masks[k] = self.iv.mask(p)
        return self._masks[k]

    def _support(self, p: Predicate, hist_idx: np.ndarray) -> int:
        m = self._mask(p)
        return int(m.sum() - m[hist_idx].sum())

    @property
    def min_support(self) -> int:
        return self.params.min_support or self.spec.k_max

    def _hist_idx(self, hist: Sequence[str]) -> np.ndarray:
        return np.array([self.iv.index[i] for i in hist if i in self.iv.index], dtype=int)

    # -- episodes --------------------------------------------------------------
    def episodes(self) -> list[Episode]:
        self._setup()
        split, stage = self.ctx.split, self.ctx.stage
        held = split.test_item if stage == "test" else split.valid_item
        users = sample_users(list(held), self.params.max_users, self.ctx.seed)
        kinds = self.params.attribute_kinds
        anchored = self.params.anchored_kinds
        offset = random.Random(f"steer-offset:{self.ctx.seed}").randrange(len(kinds))
        self.skipped_users = 0
        out = []
        for i, u in enumerate(users):
            rng = random.Random(f"steer:{self.ctx.seed}:{u}")
            hist = split.history(u, stage)
            hidx = self._hist_idx(hist)
            target = held[u]
            if self.literals:
                pair_json = self._draw_literal(target, hidx, rng)
            else:
                pair_json = None
                for j in range(len(kinds)):
                    kind = kinds[(i + offset + j) % len(kinds)]
                    pair = self._draw(kind, target, hidx, rng)
                    if pair is not None:
                        pair_json = (self._steer_json(pair[0], rng), self._steer_json(pair[1], rng))
                        break
            if pair_json is None:
                self.skipped_users += 1
                continue  # no consistent request with enough support for this user
            data = {
                "target": target,
                "neutral": self._utter(self.vocab.plain("neutral"), rng) if self.params.neutral == "text" else "",
                "steer": pair_json[0],
                "alt": pair_json[1],
                "more_variety": self._utter(self.vocab.plain("more_variety"), rng),
                "stay_close": self._utter(self.vocab.plain("stay_close"), rng),
                "go_back": self._utter(self.vocab.plain("go_back"), rng),
                "anchored_kind": anchored[(i + offset) % len(anchored)],
            }
            data["anchored_template"] = rng.choice(self.templates[data["anchored_kind"]])
            out.append(Episode(id=f"u{u}", user_id=u, data=data))
        return out

    def _draw_literal(self, target: str, hidx: np.ndarray, rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """A literal utterance whose predicate holds for the held-out item, and another one (same kind first)."""
        ok = [(u, p) for u, p in self.literals if self._support(p, hidx) >= self.min_support]
        mains = [(u, p) for u, p in ok if self.iv.satisfies(p, target)]
        if not mains:
            return None
        u, p = rng.choice(mains)
        others = [(v, q) for v, q in ok if _key(q) != _key(p)]
        if not others:
            return None
        same = [(v, q) for v, q in others if v.kind == u.kind]
        v, q = rng.choice(same or others)

        def js(x: Utterance, pred: Predicate) -> dict[str, Any]:
            return {"kind": x.kind, "predicate": pred.to_dict(), "template": None, "utterance": x.text, "literal": True,
                    **({"source": x.source} if x.source else {})}

        return js(u, p), js(v, q)

    def _utter(self, steer: Steer, rng: random.Random) -> str:
        return steer.say(rng.choice(self.templates[steer.kind]), noun=self.vocab.noun)

    def _steer_json(self, s: Steer, rng: random.Random) -> dict[str, Any]:
        template = rng.choice(self.templates[s.kind])
        return {"kind": s.kind, "predicate": s.predicate.to_dict(), "template": template,
                "utterance": s.say(template, noun=self.vocab.noun)}

    def _draw(self, kind: str, target: str, hidx: np.ndarray, rng: random.Random) -> tuple[Steer, Steer] | None:
        """A request of ``kind`` consistent with the held-out item, and another of the same kind."""
        v = self.vocab
        tv = self.iv[target]
        genres = sorted(tv.get(v.categorical) or ()) if v.categorical else []
        genres = [g for g in genres if g in v.values()]
        others = [g for g in v.values() if g not in genres]
        tbin = v.bin_of(tv.get(v.ordinal)) if v.ordinal else None
        year = tv.get(v.ordinal) if v.ordinal else math.nan

        def ok(s: Steer) -> bool:
            return self._support(s.predicate, hidx) >= self.min_support

        def first(cands: list, make) -> Steer | None:
            cands = list(cands)
            rng.shuffle(cands)
            for c in cands:
                s = make(c)
                if ok(s):
                    return s
            return None

        if kind == "include":
            main = first(genres, lambda g: v.include(g, rng))
            alt = main and first([g for g in v.values() if g != main.predicate.value], lambda g: v.include(g, rng))
        elif kind == "exclude":
            main = first(others, lambda g: v.exclude(g, rng))
            alt = main and first([g for g in v.values() if g != main.predicate.value], lambda g: v.exclude(g, rng))
        elif kind == "range_bin":
            main = first([tbin.label] if tbin else [], lambda b: v.range_bin(b, rng))
            alt = main and first([b.label for b in v.bins() if b.label != tbin.label], lambda b: v.range_bin(b, rng))
        elif kind in ("before", "after"):
            valid = [b for b in v.bounds() if not math.isnan(year) and (year < b if kind == "before" else year >= b)]
            make = v.before if kind == "before" else v.after
            main = first(valid, make)
            alt = main and first([b for b in v.bounds() if b != main.slots["bound"] and v.bound_word(b) != main.slots["bound"]], make)
        elif kind == "include_range":
            main = first([(g, tbin.label) for g in genres] if tbin else [], lambda c: v.include_range(c[0], c[1], rng))
            alt = main and first([(g, b.label) for g in v.values() for b in v.bins()
                                  if _key(v.include_range(g, b.label).predicate) != _key(main.predicate)],
                                 lambda c: v.include_range(c[0], c[1], rng))
        elif kind == "include_exclude":
            main = first([(g, o) for g in genres for o in others], lambda c: v.include_exclude(c[0], c[1], rng))
            alt = main and first([(g, o) for g in v.values() for o in v.values() if g != o
                                  and _key(v.include_exclude(g, o).predicate) != _key(main.predicate)],
                                 lambda c: v.include_exclude(c[0], c[1], rng))
        else:
            raise ValueError(kind)
        if not main or not alt:
            return None
        return main, alt

    # -- play ------------------------------------------------------------------
    def _is_oracle(self) -> bool:
        meta = getattr(self.ctx.system, "meta", None)
        return bool(getattr(meta, "is_oracle", False))

    @cached_property
    def judge(self) -> Any:
        """A ``SteeringJudge`` when any ``judge_*`` option is given, else None (no judge metrics at all)."""
        opts = self.ctx.options or {}
        if not any(k.startswith("judge_") and v not in (None, "") for k, v in opts.items()):
            return None
        from talkwalk_bench.judge.scoring import SteeringJudge

        meta = getattr(self.ctx.system, "meta", None)
        explanations = bool(meta is not None and meta.has("explanations"))
        pairwise = _flag(opts.get("judge_pairwise", True))
        return SteeringJudge.from_options(opts, seed=self.ctx.seed, explanations=explanations,
                                          reference="the system's own turn-0 (neutral) list" if pairwise else None)

    @property
    def judge_k(self) -> int:
        return 10 if 10 in self.spec.k else self.spec.k_max

    def _request(self, ep: Episode, turns: tuple[Turn, ...], turn_no: int, predicate: Predicate | None, suffix: str = "") -> Request:
        split, ds = self.ctx.split, self.ctx.dataset
        hist = split.history(ep.user_id, self.ctx.stage)
        context: dict[str, Any] = {"task": "steerability", "turn": turn_no}
        if self._oracle:
            # ground truth for oracle systems only (see docs/steering.md)
            context[ORACLE_KEY] = predicate
        return Request(user_id=ep.user_id, history=hist, user=ds.users.get(ep.user_id, {}), context=context,
                       conversation=turns, exclude=frozenset(hist), session_id=ep.id + suffix)

    def play(self, episodes: Sequence[Episode]) -> list[dict[str, Any]]:
        self._setup()
        self._oracle = self._is_oracle()
        k = self.spec.k_max
        meta = getattr(self.ctx.system, "meta", None)
        has_scores = bool(meta is not None and meta.has("scores"))
        has_trace = bool(meta is not None and meta.has("query_trace"))
        eps = list(episodes)
        n = len(eps)
        steer_p = [predicate_from_dict(e.data["steer"]["predicate"]) for e in eps]
        alt_p = [predicate_from_dict(e.data["alt"]["predicate"]) for e in eps]

        # turn 0: neutral
        t0 = [(Turn(e.data["neutral"]),) for e in eps]
        # one item more than is shown: the effect of a request anchored on a shown item is measured on
        # the lists without the anchor, the next item taking its place (see _score)
        r0 = self.ctx.recommend([self._request(e, t0[i], 0, None) for i, e in enumerate(eps)], k + 1)
        L0 = [list(r.items[:k]) for r in r0]
        L0x = [list(r.items[:k + 1]) for r in r0]
        done0 = [(Turn(e.data["neutral"], tuple(L0[i])),) for i, e in enumerate(eps)]

        # turn 1: four branches from the same state
        branches = [("steer", lambda e: e.data["steer"]["utterance"], steer_p),
                    ("alt", lambda e: e.data["alt"]["utterance"], alt_p),
                    ("more_variety", lambda e: e.data["more_variety"], None),
                    ("stay_close", lambda e: e.data["stay_close"], None)]
        reqs1: list[Request] = []
        for i, e in enumerate(eps):
            for name, utt, preds in branches:
                reqs1.append(self._request(e, done0[i] + (Turn(utt(e)),), 1, preds[i] if preds else None,
                                           "" if name == "steer" else f"#{name}"))
        r1 = self.ctx.recommend(reqs1, k + 1)
        LS = [list(r1[4 * i].items[:k]) for i in range(n)]
        LA = [list(r1[4 * i + 1].items[:k]) for i in range(n)]
        LV = [list(r1[4 * i + 2].items[:k]) for i in range(n)]
        LC = [list(r1[4 * i + 3].items[:k]) for i in range(n)]

        # entropy: the system's full-catalog scores when it declares them
        ent_scores = None
        if has_scores:
            req0 = [self._request(e, t0[i], 0, None) for i, e in enumerate(eps)]
            s0 = np.asarray(self.ctx.score_catalog(req0), dtype=np.float64)
            sS = np.asarray(self.ctx.score_catalog([reqs1[4 * i] for i in range(n)]), dtype=np.float64)
            ent_scores = (s0, sS)

        # turn 2: go back after the steer
        done1 = [done0[i] + (Turn(e.data["steer"]["utterance"], tuple(LS[i])),) for i, e in enumerate(eps)]
        r2 = self.ctx.recommend([self._request(e, done1[i] + (Turn(e.data["go_back"]),), 2, None) for i, e in enumerate(eps)], k)
        LB = [list(r.items[:k]) for r in r2]

        # turn 3: anchored steer on the top shown item of turn 2
        anchored: list[tuple[Steer, str] | None] = []
        for i, e in enumerate(eps):
            anchored.append(self._anchor(e, LB[i]))
        idx3 = [i for i in range(n) if anchored[i] is not None]
        reqs3 = []
        for i in idx3:
            s, utt = anchored[i]
            turns = done1[i] + (Turn(eps[i].data["go_back"], tuple(LB[i])), Turn(utt))
            reqs3.append(self._request(eps[i], turns, 3, s.predicate))
        r3 = self.ctx.recommend(reqs3, k + 1)
        LR: list[list[str] | None] = [None] * n
        for j, i in enumerate(idx3):
            LR[i] = list(r3[j].items[:k])

        traces = None
        if has_trace:
            traces = [(r0[i].trace.get("query") if r0[i].trace else None, r1[4 * i].trace.get("query") if r1[4 * i].trace else None)
                      for i in range(n)]

        records = []
        for i, e in enumerate(eps):
            rec = self._score(e, i, L0[i], LS[i], LA[i], LV[i], LC[i], LB[i], LR[i], anchored[i], steer_p[i], alt_p[i],
                              ent_scores, traces, {"neutral": L0x[i], "steer": list(r1[4 * i].items[:k + 1]),
                                                   "alt": list(r1[4 * i + 1].items[:k + 1]),
                                                   "anchored": list(r3[idx3.index(i)].items[:k + 1]) if i in idx3 else None})
            said = {"neutral": r0[i], "steer": r1[4 * i], "alt": r1[4 * i + 1], "more_variety": r1[4 * i + 2],
                    "stay_close": r1[4 * i + 3], "go_back": r2[i]}
            if i in idx3:
                said["anchored"] = r3[idx3.index(i)]
            why = {key: text for key, r in said.items() if (text := explain(r))}
            if why:  # what the system said about each list (shown by `talkwalk-bench view`)
                rec["explanations"] = why
            records.append(rec)
        if self.judge is not None:
            self._judge_steer(eps, records, L0, LS, [r1[4 * i].explanation for i in range(n)], steer_p)
        return records

    def _judge_steer(self, eps, records, L0, LS, explanations, preds) -> None:
        """The judge rates the steer turn's list (the pairwise reference is the neutral turn's list)."""
        from talkwalk_bench.judge.scoring import JudgeItem, describe_list

        k, ds, card = self.judge_k, self.ctx.dataset, self.ctx.card
        pairwise = self.judge.reference is not None
        items = []
        for i, e in enumerate(eps):
            share = M.satisfied_share(LS[i], lambda it, p=preds[i]: self.iv.satisfies(p, it), k)
            records[i]["machine_share"] = share
            items.append(JudgeItem(episode=e.id, request=e.data["steer"]["utterance"], items=describe_list(LS[i], ds.items, card, k),
                                   machine_share=share, explanation=explanations[i],
                                   reference_items=describe_list(L0[i], ds.items, card, k) if pairwise else None))
        for rec, js in zip(records, self.judge.score(items), strict=True):
            rec["metrics"].update(js["metrics"])
            rec["judge"] = js["judge"]

    def _anchor(self, e: Episode, shown: list[str]) -> tuple[Steer, str] | None:
        kind = e.data["anchored_kind"]
        hist = self.ctx.split.history(e.user_id, self.ctx.stage)
        hidx = self._hist_idx(hist)
        for item in list(shown) + list(reversed(hist)):
            if item not in self.iv.index:
                continue
            s = self.vocab.relative(kind, item, self.iv[item], self.iv.titles.get(item, ""))
            if self._support(s.predicate, hidx) >= self.min_support:
                return s, s.say(e.data["anchored_template"], noun=self.vocab.noun)
        return None

    # -- scoring ---------------------------------------------------------------
    def _item_features(self) -> np.ndarray:
        """Per item: the categorical values (multi-hot) and the ordinal bin (one-hot), each block unit length."""
        v = self.vocab
        vals, bins = v.values(), [b.label for b in v.bins()]
        X = np.zeros((len(self.iv.item_ids), len(vals) + len(bins)))
        vi = {x: j for j, x in enumerate(vals)}
        bi = {x: len(vals) + j for j, x in enumerate(bins)}
        for r, it in enumerate(self.iv.item_ids):
            iv = self.iv[it]
            g = [vi[x] for x in (iv.get(v.categorical) or ()) if x in vi] if v.categorical else []
            if g:
                X[r, g] = 1.0 / math.sqrt(len(g))
            b = v.bin_of(iv.get(v.ordinal)) if v.ordinal else None
            if b is not None:
                X[r, bi[b.label]] = 1.0
        return X

    def _ild(self, items: list[str]) -> float:
        rows = [self.iv.index[i] for i in items if i in self.iv.index]
        return M.intra_list_diversity(self._features[rows]) if len(rows) >= 2 else float("nan")

    def _attr_values(self, attr: str, items: list[str]) -> list[list[Any]]:
        v = self.vocab
        out = []
        for it in items:
            x = self.iv[it].get(attr)
            if attr == v.ordinal:
                b = v.bin_of(x)
                out.append([b.label] if b else [])
            else:
                out.append(sorted(x) if isinstance(x, frozenset) else ([x] if x is not None else []))
        return out

    def _support_of(self, attr: str) -> list[str]:
        v = self.vocab
        return [b.label for b in v.bins()] if attr == v.ordinal else v.values()

    def _control(self, p: Predicate, items: list[str]) -> float | None:
        """Share of the requested value in a list (see docs/steering.md)."""
        if isinstance(p, HasValue):
            return M.value_mass(self._attr_values(p.attribute, items), p.value)
        if isinstance(p, LacksValue):
            return 1.0 - M.value_mass(self._attr_values(p.attribute, items), p.value)
        if isinstance(p, InRange):
            return float(np.mean([self.iv.satisfies(p, i) for i in items])) if items else 0.0
        if isinstance(p, AllOf):
            return M.mean_or_none(self._control(q, items) for q in p.parts)
        return None

    def _candidates(self, hist: Sequence[str]) -> list[str]:
        hs = set(hist)
        return [i for i in self.iv.item_ids if i not in hs]

    def _score(self, e: Episode, i: int, L0, LS, LA, LV, LC, LB, LR, anchored, sp: Predicate, ap: Predicate,
               ent_scores, traces, ext: dict[str, list[str] | None] | None = None) -> dict[str, Any]:
        ks = self.spec.k
        kmax = self.spec.k_max
        hist = self.ctx.split.history(e.user_id, self.ctx.stage)
        hidx = self._hist_idx(hist)
        n_cand = len(self.iv.item_ids) - len(set(hidx.tolist()))
        m: dict[str, float | None] = {}
        chance: dict[str, float | None] = {}
        requests = [("steer", e.data["steer"]["kind"], sp, LS), ("alt", e.data["alt"]["kind"], ap, LA)]
        if anchored is not None:
            requests.append(("anchored", anchored[0].kind, anchored[0].predicate, LR))

        def share(p: Predicate, lst: list[str], k: int) -> float:
            return M.satisfied_share(lst, lambda it: self.iv.satisfies(p, it), k)

        ext = ext or {}

        def without_anchor(p: Predicate, name: str, lst: list[str]) -> list[str]:
            # A request anchored on a shown item ("older than X") is never satisfied by X itself, and X
            # was taken from a list the system showed, so X sits in the neutral list: comparing shares
            # with X counted would credit any system, random included, with a lift it did not make.
            # The effect metrics (lift, entropy) compare both lists without X, each list's next
            # item taking its place; constraint-following keeps the list as shown.
            anchor = getattr(p, "anchor", "")
            full = ext.get(name) or lst
            return [it for it in full if it != anchor][:kmax] if anchor else lst

        # per request: its share, the share of the system's own neutral list on the same predicate, chance
        per_request: dict[str, dict[str, Any]] = {}
        for name, kind, p, lst in requests:
            c = self._support(p, hidx) / max(1, n_cand)
            sc: dict[str, Any] = {"kind": kind, "chance": c}
            for k in ks:
                sc[f"share@{k}"] = share(p, lst, k)
                sc[f"neutral_share@{k}"] = share(p, without_anchor(p, "neutral", L0), k)
                sc[f"moved_share@{k}"] = share(p, without_anchor(p, name, lst), k)
            n_after = round(sc[f"moved_share@{kmax}"] * kmax)
            n_before = round(sc[f"neutral_share@{kmax}"] * kmax)
            sc["entropy_reduction_bits"] = M.region_entropy_reduction(n_before, n_after, kmax)
            per_request[name] = sc

        for k in ks:
            per_kind: dict[str, list[tuple[float, float, float]]] = {}
            for name, kind, _, _ in requests:
                sc = per_request[name]
                per_kind.setdefault(kind, []).append((sc[f"share@{k}"], sc["chance"], sc[f"moved_share@{k}"] - sc[f"neutral_share@{k}"]))
            allr = [x for vals in per_kind.values() for x in vals]
            m[f"constraint_following@{k}"] = float(np.mean([s for s, _, _ in allr]))
            chance[f"constraint_following@{k}"] = float(np.mean([c for _, c, _ in allr]))
            m[f"steering_lift@{k}"] = float(np.mean([d for _, _, d in allr]))
            for kind, vals in per_kind.items():
                m[f"constraint_following@{k}/{kind}"] = float(np.mean([s for s, _, _ in vals]))
                chance[f"constraint_following@{k}/{kind}"] = float(np.mean([c for _, c, _ in vals]))
                m[f"steering_lift@{k}/{kind}"] = float(np.mean([d for _, _, d in vals]))
            cand = self._candidates(hist)
            m[f"attribute_control@{k}"] = M.mean_or_none(self._control(p, lst[:k]) for p, lst in ((sp, LS), (ap, LA)))
            chance[f"attribute_control@{k}"] = M.mean_or_none(self._control(p, cand) for p in (sp, ap))
            m[f"preference_sensitivity@{k}"] = M.preference_sensitivity(
                per_request["steer"][f"share@{k}"], share(sp, LA, k), per_request["alt"][f"share@{k}"], share(ap, LS, k))
            hit, rr = M.hit_and_rr(LS, e.data["target"], k)
            m[f"relevance_under_steering@{k}"] = hit
            m[f"relevance_under_steering/RR@{k}"] = rr
            m[f"relevance_neutral@{k}"] = M.hit_and_rr(L0, e.data["target"], k)[0]
            chance[f"relevance_under_steering@{k}"] = min(1.0, k / max(1, n_cand))
            chance[f"relevance_neutral@{k}"] = min(1.0, k / max(1, n_cand))

        # steering precision: JS of each attribute's distribution, neutral list vs steered list
        v = self.vocab
        steerable = [a for a in (v.categorical, v.ordinal) if a]
        targets = sorted(sp.attributes())
        others = [a for a in steerable if a not in targets]
        js = {a: M.js_divergence(M.distribution(self._attr_values(a, L0), self._support_of(a)),
                                 M.distribution(self._attr_values(a, LS), self._support_of(a))) for a in steerable}
        t_js = M.mean_or_none(js[a] for a in targets)
        o_js = M.mean_or_none(js[a] for a in others)
        m["steering_precision/target_js"] = t_js
        m["steering_precision/off_target_js"] = o_js
        m["steering_precision"] = (M.steering_precision(t_js, o_js) if t_js is not None and o_js is not None else None)

        # entropy reduction: bits of uncertainty about the request's own region, neutral list -> steered list
        m["steering_entropy_reduction"] = float(np.mean([sc["entropy_reduction_bits"] for sc in per_request.values()]))
        if ent_scores is not None:
            mask = np.ones(len(self.iv.item_ids), dtype=bool)
            mask[hidx] = False
            region = self._mask(sp) & mask
            mb = float(M.softmax(ent_scores[0][i], mask)[region].sum())
            ma = float(M.softmax(ent_scores[1][i], mask)[region].sum())
            m["steering_entropy_reduction/scores"] = M.mass_entropy_reduction(mb, ma)

        # reversibility: how much of the steer's move "go back" undoes (summarised as a ratio of sums)
        rbo_s = M.rbo(L0, LS, p=self.params.rbo_p, depth=kmax)
        rbo_b = M.rbo(L0, LB, p=self.params.rbo_p, depth=kmax)
        undo = M.undo_share(rbo_s, rbo_b)
        m["reversibility/moved"] = None if undo is None else undo[0]
        m["reversibility/undone"] = None if undo is None else undo[1]
        m["reversibility/rbo_back"] = rbo_b

        ild_v, ild_n, ild_c = self._ild(LV), self._ild(L0), self._ild(LC)
        m["diversity_gradient"] = M.diversity_slope(ild_v, ild_n, ild_c)
        m["diversity_gradient/ordered"] = M.diversity_ordering(ild_v, ild_n, ild_c)
        m["ild/more_variety"] = None if math.isnan(ild_v) else ild_v
        m["ild/neutral"] = None if math.isnan(ild_n) else ild_n
        m["ild/stay_close"] = None if math.isnan(ild_c) else ild_c
        chance["diversity_gradient/ordered"] = 1.0 / 6.0

        if traces is not None:
            m["steering_traceability"] = self._traceability(traces[i], sp)

        def clean(x: float | None) -> float | None:
            return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)

        return {
            "target": e.data["target"],
            "requests": {
                "neutral": e.data["neutral"],
                "steer": {**e.data["steer"], "support": self._support(sp, hidx), "consistent": self.iv.satisfies(sp, e.data["target"]),
                          "scores": per_request["steer"]},
                "alt": {**e.data["alt"], "support": self._support(ap, hidx), "scores": per_request["alt"]},
                "more_variety": e.data["more_variety"], "stay_close": e.data["stay_close"], "go_back": e.data["go_back"],
                "anchored": None if anchored is None else {"kind": anchored[0].kind, "utterance": anchored[1],
                                                           "predicate": anchored[0].predicate.to_dict(),
                                                           "support": self._support(anchored[0].predicate, hidx),
                                                           "scores": per_request["anchored"]},
            },
            "lists": {"neutral": L0, "steer": LS, "alt": LA, "more_variety": LV, "stay_close": LC, "go_back": LB, "anchored": LR},
            # the neutral ranking's next item: the baseline of an anchored request takes it in place of the anchor
            # each list's next item, which takes the anchor's place when an anchored request's effect is measured
            "next_items": {name: lst[kmax] for name, lst in ext.items() if lst and len(lst) > kmax},
            "chance": chance,
            "metrics": {name: clean(m[name]) for name in self._ordered(m)},
        }

    def _ordered(self, m: dict[str, Any]) -> list[str]:
        """Headline metrics first (leaderboards show the first columns), then per-kind and component values."""
        k = max(self.spec.k) if 10 not in self.spec.k else 10
        head = [f"constraint_following@{k}", f"steering_lift@{k}", f"preference_sensitivity@{k}", "steering_entropy_reduction",
                "diversity_gradient", f"attribute_control@{k}", "steering_precision", "steering_traceability",
                f"relevance_under_steering@{k}"]
        return [n for n in head if n in m] + [n for n in m if n not in head]

    # -- traceability ----------------------------------------------------------
    def _probe(self, text: str) -> np.ndarray | None:
        """The system's query vector for a bare utterance (no history): a point in its own space."""
        if text not in self._probe_cache:
            req = Request(user_id="__probe__", context={"task": "steerability", "probe": True},
                          conversation=(Turn(text),), session_id=f"probe:{text}")
            r: Ranking = self.ctx.recommend([req], 1)[0]
            q = r.trace.get("query") if r.trace else None
            self._probe_cache[text] = None if q is None else np.asarray(q, dtype=np.float64).ravel()
        return self._probe_cache[text]

    def _direction(self, p: Predicate) -> np.ndarray | None:
        """The requested attribute's direction in the system's space: probe(description) - probe("")."""
        v = self.vocab
        null = self._probe("")
        if null is None:
            return None
        if isinstance(p, (HasValue, LacksValue)):
            q = self._probe(v.cat_attr.values[p.value].description)
            if q is None:
                return None
            return (q - null) * (1.0 if isinstance(p, HasValue) else -1.0)
        if isinstance(p, InRange) and p.label:
            q = self._probe(v.bin(p.label).description)
            return None if q is None else q - null
        if isinstance(p, AllOf):
            parts = [self._direction(q) for q in p.parts]
            return None if any(d is None for d in parts) else np.sum(parts, axis=0)
        return None

    def _traceability(self, tr, p: Predicate) -> float | None:
        q0, q1 = tr
        if q0 is None or q1 is None:
            return None
        d = self._direction(p)
        if d is None:
            return None
        return M.traceability(q0, q1, d)

    # -- run level -------------------------------------------------------------
    def protocol(self) -> dict[str, Any]:
        self._setup()
        return {
            **super().protocol(),
            "turns": "0 neutral; 1 branches {steer (consistent with the held-out item), alt steer, more variety, stay close}; "
                     "2 go back; 3 anchored steer on the top shown item",
            "phrasings": sorted(set(self.template_source.values()))
                         + ([f"{self.ctx.steering_file} (literal utterances: steer and alt turns)"] if self.literals else []),
            "min_support": self.min_support,
            "docs": "docs/steering.md",
        }

    def _request_scores(self, records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Per ok episode, the scored requests (steer, alt, anchored when played)."""
        out = []
        for r in records:
            if r.get("status", "ok") != "ok":
                continue
            reqs = r.get("requests", {})
            out.append([reqs[n]["scores"] for n in ("steer", "alt", "anchored") if reqs.get(n) and "scores" in reqs[n]])
        return out

    def _normalised(self, records: list[dict[str, Any]]) -> dict[str, Estimate]:
        """constraint_following_norm@K: per kind, chance_normalised(mean share, mean chance); macro average over kinds."""
        eps = self._request_scores(records)
        kinds = sorted({sc["kind"] for ep in eps for sc in ep})
        if not eps or not kinds:
            return {}
        col = {kd: j for j, kd in enumerate(kinds)}
        out: dict[str, Estimate] = {}
        boot = self.spec.bootstrap
        for k in self.spec.k:
            S, C, N = (np.zeros((len(eps), len(kinds))) for _ in range(3))
            for i, ep in enumerate(eps):
                for sc in ep:
                    j = col[sc["kind"]]
                    S[i, j] += sc[f"share@{k}"]
                    C[i, j] += sc["chance"]
                    N[i, j] += 1
            res = M.macro_chance_normalised(S, C, N, seed=self.ctx.seed, n_resamples=boot.n_resamples, confidence=boot.confidence)
            name = f"constraint_following_norm@{k}"
            if res is None:
                out[name] = not_available("no request kind with a chance level below 1")
                continue
            value, lo, hi, per_kind = res
            out[name] = Estimate(value, lo, hi, len(eps))
            for kind, j in col.items():
                has = N[:, j] > 0
                sub = M.macro_chance_normalised(S[has][:, [j]], C[has][:, [j]], N[has][:, [j]], seed=self.ctx.seed,
                                                n_resamples=boot.n_resamples, confidence=boot.confidence)
                out[f"{name}/{kind}"] = (Estimate(sub[0], sub[1], sub[2], int(has.sum())) if sub is not None else
                                         not_available(f"no {kind} request with a chance level below 1",
                                                       int(has.sum())))
        return out

    def _reversibility(self, records: list[dict[str, Any]]) -> Estimate:
        ok = [r for r in records if r.get("status", "ok") == "ok"]
        pairs = [(r["metrics"].get("reversibility/undone"), r["metrics"].get("reversibility/moved")) for r in ok]
        pairs = [(u, mv) for u, mv in pairs if u is not None and mv is not None]
        if not pairs:
            return not_available("the steer never moved the list (L0 = LS in every episode), so there is nothing to undo")
        boot = self.spec.bootstrap
        res = M.ratio_of_sums(np.array([u for u, _ in pairs]), np.array([mv for _, mv in pairs]), seed=self.ctx.seed,
                              n_resamples=boot.n_resamples, confidence=boot.confidence)
        if res is None:
            return not_available("the steer never moved the list, so there is nothing to undo")
        return Estimate(res[0], res[1], res[2], len(pairs))

    def summarize(self, records: list[dict[str, Any]]) -> dict[str, Estimate]:
        meta = getattr(self.ctx.system, "meta", None)
        out: dict[str, Estimate] = self._normalised(records)
        out["reversibility"] = self._reversibility(records)
        if meta is None or not meta.has("query_trace"):
            name = getattr(meta, "name", "the system")
            out["steering_traceability"] = not_available(
                f"system '{name}' does not declare the query_trace capability (Ranking.trace['query'])")
        if self.judge is not None:
            out.update(self.judge.summarize(records, system_name=getattr(meta, "name", "system"),
                                            n_resamples=min(1000, self.spec.bootstrap.n_resamples)))
        return out

    def extras(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        self._setup()
        ok = [r for r in records if r.get("status", "ok") == "ok"]
        names = sorted({n for r in ok for n in r.get("chance", {})})
        chance = {n: M.chance_mean((r.get("chance", {}) for r in ok), n) for n in names}
        meta = getattr(self.ctx.system, "meta", None)
        has_scores = bool(meta is not None and meta.has("scores"))
        kinds: dict[str, int] = {}
        for r in ok:
            kinds[r["requests"]["steer"]["kind"]] = kinds.get(r["requests"]["steer"]["kind"], 0) + 1
        return {
            "chance": {n: c for n, c in chance.items() if c is not None},
            "entropy_source": "steering_entropy_reduction: -log2 of the request's smoothed share in the top-K list, neutral minus steered "
                              "(bits), for every system"
                              + ("; /scores: log2 of the softmaxed score_catalog mass on the request's region, steered over neutral"
                                 if has_scores else ""),
            "chance_definition": "share of the user's unseen catalog satisfying the request (constraint_following, attribute_control), "
                                 "K / unseen items (relevance), 1/6 for three exchangeable lists (diversity_gradient/ordered); "
                                 "constraint_following_norm puts each kind's chance at 0",
            "diversity_features": "cosine over [categorical multi-hot, ordinal bin one-hot], each block unit length",
            "phrasing_source": {**self.template_source,
                                **({"steer_and_alt": f"{self.ctx.steering_file} (literal utterances)",
                                    "literal_utterances": {"file": str(self.ctx.steering_file), "count": len(self.literals),
                                                           "users_without_a_consistent_utterance": self.skipped_users}}
                                   if self.literals else {})},
            "steer_kinds": kinds,
            "unknown_values": self.iv.unknown_report([a for a in (self.vocab.categorical, self.vocab.ordinal) if a]),
            "oracle_context": ORACLE_KEY if self._is_oracle() else None,
            **({"judge": {**self.judge.extras(records), "judged_turn": f"turn 1 steer list (top {self.judge_k})"}}
               if self.judge is not None else {}),
        }
