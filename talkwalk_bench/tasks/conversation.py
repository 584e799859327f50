"""Conversation: a simulated user with a hidden target critiques lists until satisfied.

The target is a real held-out item of a real test user. The user opens with
one of the target's categorical values ("feeling like comedy tonight"),
then each turn looks at the top-K list and either accepts (the target, or an
item with exactly the target's categorical values and ordinal bin, is in the
top-K; ``accept: target`` and ``accept_top: m`` make this stricter)
or critiques the largest attribute difference between the list and the
target, phrased with a template from the ``eval`` set (never shown to
systems):

- categorical: a target value the list lacks and/or a non-target value that
  dominates it: "comedy but not drama", "give me comedy", "steer clear of drama";
- ordinal: most of the list lies after (before) the target's bin: "prior to
  1980 please" ("from 1970 onwards").

Every critique's predicate holds for the target, so the conjunction of all
critiques so far is the ground truth of what the user asked; systems
registered as oracles receive it in ``Request.context['oracle_predicate']``
(a steering ``AllOf`` predicate, as the steerability task does), others see
only the words. By default items shown earlier may be shown again
(``exclude_shown: false``): with them excluded a list that never changes
walks down the catalogue, and popularity was accepted in 72 % of
conversations without reading a word. With ``simulator: llm`` (or
``-O simulator=llm``) an LLM behind an OpenAI-compatible endpoint (the
judge's options) words each critique instead of the templates; acceptance
stays rule-based so success is verifiable, and a failed LLM call falls back
to the template wording (counted), as does an answer that names the
target's or a shown item's title, or echoes the prompt's placeholder instead
of a sentence (small models do).

Every conversation is played twice: with the critiques, and without them
(the no-critique walk: the same user, history, exclusions and session id,
an empty utterance every turn, no oracle predicate). A system that ignores
the words shows the same lists in both walks, so its lift is exactly 0.

Metrics (per episode, mean with bootstrap CI over episodes; the lifts are
per-episode paired differences, so their CIs are paired):
- ``turns_saved`` (main score): turns_to_satisfaction without the critiques
  minus with them; 0 for a system that ignores the text, noise around 0 for
  random, largest for the oracle;
- ``success_lift``: success_rate with the critiques minus without them;
- ``turns_to_satisfaction``: the turn of acceptance, ``max_turns + 1`` when the
  user never accepts (lower is better); ``success_rate``: accepted within the cap;
- ``turns_to_satisfaction_no_critique``, ``success_rate_no_critique``: the same
  for the no-critique walk (how far a system gets without listening);
- ``exploration_velocity``: distinct (categorical value, ordinal bin) cells
  covered by the items shown in the first N turns, divided by the turns played
  (at most N);
- ``first_turn_relevance``: mean over the first top-K of
  0.5 * Jaccard(item values, target values) + 0.5 * [same ordinal bin].
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from talkwalk_bench.errors import BenchError
from talkwalk_bench.metrics.stats import Estimate, not_available
from talkwalk_bench.registry import SYSTEMS
from talkwalk_bench.tasks.base import Episode, Family, explain, register_family
from talkwalk_bench.tasks.ranking import sample_users
from talkwalk_bench.types import ORACLE_KEY, Request, Turn


def _norm(text: str) -> str:
    """Lower case words only, for comparing utterances."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def _bare_title(title: str) -> str:
    """'Shawshank Redemption, The (1994)' -> 'shawshank redemption' (normalised)."""
    t = re.sub(r"\s*\([^)]*\)", "", title)
    t = re.sub(r",\s*(the|a|an|le|la|les|il|das|der|die|el)$", "", t.strip(), flags=re.I)
    return _norm(t)


class _Blank(dict):
    """format_map filler: every template variable becomes empty, leaving the fixed wording."""

    def __missing__(self, key: str) -> str:
        return ""


class ConversationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_users: int | None = Field(200, ge=1, description="sample this many test users (seeded); all when null")
    max_turns: int = Field(10, ge=1, le=50, description="turn cap; a user not satisfied by then gives up")
    velocity_turns: int = Field(5, ge=1, description="N of exploration velocity (cells reached in the first N turns)")
    exclude_shown: bool = Field(False, description="items shown in earlier turns are excluded from later lists (lets a static list browse)")
    simulator: Literal["rule", "llm"] = Field("rule", description="who words the critiques (-O simulator=... overrides)")
    no_critique: Literal["empty", "neutral", "off"] = Field(
        "empty", description="the baseline walk's words every turn: none, a neutral request, or no baseline walk")
    accept: Literal["cell", "target"] = Field(
        "cell", description="what satisfies the user: an item in the target's cell (same values and bin), or the target only")
    accept_top: int | None = Field(None, ge=1, description="only the first m items of a list are looked at; all K when null")


def _rng(*parts: Any) -> random.Random:
    h = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(h[:8], "little"))


@dataclass
class Critique:
    kind: str
    predicate: Any  # steering Predicate
    steer: Any  # steering Steer (slots for the wording)
    detail: dict[str, Any] = field(default_factory=dict)


class SimulatedUser:
    """Rule-based user over a dataset card's first categorical and first binned ordinal attribute."""

    def __init__(self, card: Any, items: dict[str, dict[str, Any]], item_ids: Sequence[str], *,
                 templates: dict[str, tuple[str, ...]], accept: str = "cell", accept_top: int | None = None) -> None:
        from talkwalk_bench.steering import ItemValues, Vocabulary

        self.vocab = Vocabulary(card)
        if self.vocab.categorical is None or self.vocab.ordinal is None:
            raise BenchError(f"card '{card.dataset}': the conversation task needs a categorical item attribute with values and an ordinal one with bins")
        self.values = ItemValues(card, items, item_ids)
        self.cat, self.ord = self.vocab.categorical, self.vocab.ordinal
        self.templates = templates
        self.accept_rule, self.accept_top = accept, accept_top

    # -- item attributes -------------------------------------------------------
    def cats(self, item: str) -> frozenset[str]:
        v = self.values[item].get(self.cat)
        if isinstance(v, frozenset):
            return v
        return frozenset() if v is None else frozenset([v])

    def year(self, item: str) -> float:
        v = self.values[item].get(self.ord)
        return float(v) if isinstance(v, (int, float)) else float("nan")

    def bin_label(self, item: str) -> str | None:
        b = self.vocab.bin_of(self.year(item))
        return b.label if b else None

    def usable_target(self, item: str) -> bool:
        return bool(self.cats(item)) and self.bin_label(item) is not None

    def matches(self, item: str, target: str) -> bool:
        """The same categorical values as the target and its bin (the target itself always matches)."""
        if item == target:
            return True
        return self.cats(target) == self.cats(item) and self.bin_label(item) == self.bin_label(target)

    def cells(self, item: str) -> set[tuple[str, str]]:
        b = self.bin_label(item) or "?"
        return {(c, b) for c in self.cats(item)} or {("?", b)}

    def relevance(self, item: str, target: str) -> float:
        a, t = self.cats(item), self.cats(target)
        jac = len(a & t) / len(a | t) if (a | t) else 0.0
        return 0.5 * jac + 0.5 * float(self.bin_label(item) is not None and self.bin_label(item) == self.bin_label(target))

    # -- turns -----------------------------------------------------------------
    def opening(self, target: str, rng: random.Random) -> Critique:
        value = rng.choice(sorted(self.cats(target)))
        s = self.vocab.include(value, rng)
        return Critique("include", s.predicate, s, {"value": value})

    def accepts(self, shown: Sequence[str], target: str) -> str | None:
        """The accepted item (the target first, else the first matching one), or None."""
        looked = shown[:self.accept_top] if self.accept_top else shown
        if target in looked:
            return target
        if self.accept_rule == "target":
            return None
        return next((i for i in looked if self.matches(i, target)), None)

    def critique(self, shown: Sequence[str], target: str, rng: random.Random) -> Critique:
        n = max(1, len(shown))
        tcats = self.cats(target)
        freq: dict[str, float] = {}
        for it in shown:
            for c in self.cats(it):
                freq[c] = freq.get(c, 0.0) + 1.0 / n
        missing = sorted((c for c in tcats if freq.get(c, 0.0) < 0.5), key=lambda c: (freq.get(c, 0.0), c))
        extra = sorted((c for c in freq if c not in tcats and freq[c] >= 0.5), key=lambda c: (-freq[c], c))
        genre_gap = 1.0 - freq.get(missing[0], 0.0) if missing else 0.0
        if extra:
            genre_gap = max(genre_gap, freq[extra[0]])

        tbin = self.vocab.bin(self.bin_label(target))
        years = [y for y in (self.year(i) for i in shown) if not np.isnan(y)]
        in_bin = sum(tbin.contains(y) for y in years) / n
        direction = None
        if years and in_bin < 0.5:
            med = float(np.median(years))
            bounds = self.vocab.bounds()
            if med > tbin.high and any(b > tbin.high for b in bounds):
                direction = "before"
            elif med < tbin.low and tbin.low in bounds:
                direction = "after"
        year_gap = 1.0 - in_bin if direction else 0.0

        if direction and year_gap > genre_gap:
            if direction == "before":
                bound = min(b for b in self.vocab.bounds() if b > tbin.high)
                s = self.vocab.before(bound)
            else:
                s = self.vocab.after(tbin.low)
            return Critique(direction, s.predicate, s, {"bound": s.slots["bound"], "in_bin": round(in_bin, 3)})
        if missing and extra:
            s = self.vocab.include_exclude(missing[0], extra[0], rng)
            return Critique("include_exclude", s.predicate, s, {"value": missing[0], "other": extra[0]})
        if missing:
            s = self.vocab.include(missing[0], rng)
            return Critique("include", s.predicate, s, {"value": missing[0]})
        if extra:
            s = self.vocab.exclude(extra[0], rng)
            return Critique("exclude", s.predicate, s, {"value": extra[0]})
        # the attributes are right on average but no single item matches: ask for both at once
        value = min(tcats, key=lambda c: (freq.get(c, 0.0), c))
        s = self.vocab.include_range(value, tbin.label, rng)
        return Critique("include_range", s.predicate, s, {"value": value, "bin": tbin.label})

    def say(self, c: Critique, rng: random.Random) -> tuple[str, str]:
        """(utterance, template) with an eval-set template of the critique's kind."""
        options = self.templates.get(c.kind) or ()
        if not options:
            raise BenchError(f"no eval phrasing for request kind '{c.kind}'; the steering file must cover it")
        t = rng.choice(list(options))
        return c.steer.say(t, noun=self.vocab.noun), t

    def describe(self, item: str) -> str:
        title = self.values.titles.get(item, "") if hasattr(self.values, "titles") else ""
        row_desc = ", ".join(sorted(self.cats(item))) + f"; {self.bin_label(item) or 'unknown year'}"
        return f'"{title}" ({row_desc})' if title else row_desc


@register_family
class ConversationFamily(Family):
    """Multi-turn conversations with a simulated user: turns-to-satisfaction, exploration velocity."""

    name = "conversation"
    produces = ("turns_to_satisfaction", "turns_to_satisfaction_when_satisfied", "turns_to_satisfaction_no_critique",
                "turns_saved", "success_rate", "success_rate_no_critique", "success_lift", "exploration_velocity",
                "first_turn_relevance")
    reads_steering_file = True
    Params = ConversationParams
    needs_card = True

    @cached_property
    def user(self) -> SimulatedUser:
        from talkwalk_bench.steering.phrasings import _eval_templates

        templates, self._template_source = _eval_templates(self.ctx.steering_file)
        ds = self.ctx.dataset
        return SimulatedUser(self.ctx.card, ds.items, ds.item_ids, templates=templates,
                             accept=self.params.accept, accept_top=self.params.accept_top)

    @property
    def k(self) -> int:
        return self.spec.k_max

    @cached_property
    def simulator(self) -> str:
        s = self.ctx.options.get("simulator", self.params.simulator)
        if s not in ("rule", "llm"):
            raise BenchError(f"-O simulator={s!r}: expected rule or llm")
        return s

    @cached_property
    def llm(self) -> Any:
        """The LLM wording critiques (simulator: llm), through the judge's client and options."""
        from talkwalk_bench.judge.client import Judge, JudgeConfig
        from talkwalk_bench.judge.rubrics import load_rubric

        cfg = JudgeConfig.from_options(self.ctx.options)
        why = cfg.missing()
        if why:
            raise BenchError(f"simulator llm: {why}")
        return Judge(cfg), load_rubric("simulated_user")

    def _is_oracle(self) -> bool:
        meta = getattr(self.ctx.system, "meta", None)
        if getattr(meta, "is_oracle", False):
            return True
        name = getattr(meta, "name", None)
        try:
            return bool(name and SYSTEMS.entry(name).tags.get("oracle"))
        except Exception:
            return False

    def protocol(self) -> dict[str, Any]:
        p = self.params
        return {**super().protocol(), "target": f"held-out {self.ctx.stage} item", "max_turns": p.max_turns,
                "velocity_turns": p.velocity_turns, "exclude_shown": p.exclude_shown, "simulator": self.simulator,
                "accept": (("the target" if p.accept == "target" else
                            "the target, or an item with the same categorical values as the target and in its ordinal bin")
                           + f" in the top-{p.accept_top or self.k}"),
                "no_critique": {"empty": "the same walk with an empty utterance every turn",
                                "neutral": "the same walk with a neutral request every turn",
                                "off": "not played"}[p.no_critique],
                "phrasings": "eval set" if self.ctx.steering_file is None else f"steering file {self.ctx.steering_file}"}

    def episodes(self) -> list[Episode]:
        split = self.ctx.split
        held = split.test_item if self.ctx.stage == "test" else split.valid_item
        users = [u for u in held if self.user.usable_target(held[u])]
        users = sample_users(users, self.params.max_users, self.ctx.seed)
        return [Episode(id=f"u{u}", user_id=u, data={"target": held[u]}) for u in users]

    def play(self, episodes: Sequence[Episode]) -> list[dict[str, Any]]:
        heard = self._walk(episodes, listen=True)
        if self.params.no_critique == "off":
            return [self._record(s, None) for s in heard]
        silent = self._walk(episodes, listen=False)
        return [self._record(s, q) for s, q in zip(heard, silent, strict=True)]

    def _walk(self, episodes: Sequence[Episode], *, listen: bool) -> list[dict[str, Any]]:
        """Play every episode to acceptance or the cap, with the critiques (``listen``) or without them.

        Without them each turn carries the same empty (or neutral) utterance and
        an oracle gets no predicate: everything else (user, history, exclusions,
        session id, acceptance) is the same, so a system that ignores the words
        shows the same lists in both walks.
        """
        from talkwalk_bench.steering import AllOf

        p, sim, k = self.params, self.user, self.k
        oracle = self._is_oracle()
        ds, split, stage = self.ctx.dataset, self.ctx.split, self.ctx.stage
        states = []
        for ep in episodes:
            target = ep.data["target"]
            rng = _rng(self.ctx.seed, ep.id)
            if listen:
                c = sim.opening(target, rng)
                pending = (*sim.say(c, rng), c)
            else:
                pending = (self._neutral(ep), "", None)
            hist = split.history(ep.user_id, stage)
            states.append({"ep": ep, "target": target, "rng": rng, "hist": hist, "turns": [],
                           "preds": [pending[2].predicate] if listen else [],
                           "pending": pending, "accepted": None, "done": False})
        for t in range(1, p.max_turns + 1):
            active = [s for s in states if not s["done"]]
            if not active:
                break
            requests = []
            for s in active:
                text = s["pending"][0]
                conv = tuple(Turn(x["utterance"], tuple(x["shown"])) for x in s["turns"]) + (Turn(text),)
                shown = {i for x in s["turns"] for i in x["shown"]}
                exclude = frozenset(s["hist"]) | (frozenset(shown) if p.exclude_shown else frozenset())
                context = {ORACLE_KEY: AllOf(parts=tuple(s["preds"])) if s["preds"] else None} if oracle else {}
                requests.append(Request(user_id=s["ep"].user_id, history=s["hist"], user=ds.users.get(s["ep"].user_id, {}),
                                        context=context, conversation=conv, exclude=exclude, session_id=s["ep"].id))
            rankings = self.ctx.recommend(requests, k)
            to_word = []
            for s, r in zip(active, rankings, strict=True):
                shown = list(r.items[:k])
                text, tmpl, c = s["pending"]
                if c is None:
                    s["turns"].append({"utterance": text, "shown": shown})
                else:
                    s["turns"].append({"utterance": text, "kind": c.kind, "template": tmpl, "detail": c.detail,
                                       "predicate": c.predicate.to_dict(), "shown": shown})
                if why := explain(r):  # what the system said about this list (shown by `talkwalk-bench view`)
                    s["turns"][-1]["explanation"] = why
                acc = sim.accepts(shown, s["target"])
                if acc is not None:
                    s["accepted"], s["accepted_item"], s["done"] = t, acc, True
                    continue
                if t == p.max_turns:
                    s["done"] = True
                    continue
                if not listen:
                    continue  # the same words again next turn
                c = sim.critique(shown, s["target"], s["rng"])
                text, tmpl = sim.say(c, s["rng"])
                s["preds"].append(c.predicate)
                s["pending"] = (text, tmpl, c)
                to_word.append(s)
            if listen and self.simulator == "llm" and to_word:
                self._llm_word(to_word)
        return states

    def _neutral(self, ep: Episode) -> str:
        if self.params.no_critique != "neutral":
            return ""
        rng = _rng(self.ctx.seed, ep.id, "neutral")
        steer = self.user.vocab.plain("neutral")
        return steer.say(rng.choice(list(self.user.templates["neutral"])), noun=self.user.vocab.noun)

    def _llm_word(self, states: list[dict[str, Any]]) -> None:
        judge, rubric = self.llm
        sim = self.user
        jobs = []
        for s in states:
            _, tmpl, c = s["pending"]
            shown = s["turns"][-1]["shown"]
            jobs.append((rubric, {"target": sim.describe(s["target"]), "noun": sim.vocab.noun,
                                  "shown": "\n".join(f"- {sim.describe(i)}" for i in shown[:5]),
                                  "hint": s["pending"][0]}))
        for s, j in zip(states, judge.judge_many(jobs), strict=True):
            text, tmpl, c = s["pending"]
            utt = (j.value or {}).get("utterance") if j.ok else None
            why = self._unusable(utt, s["target"], s["turns"][-1]["shown"][:5], rubric) if utt else (j.error or "empty utterance")
            if why is None:
                s["pending"] = (utt, "llm", c)
                if _norm(utt) == _norm(text):
                    s["llm_verbatim"] = s.get("llm_verbatim", 0) + 1
            else:
                s.setdefault("llm_failures", []).append(why)

    def _unusable(self, utt: str, target: str, shown: Sequence[str], rubric: Any) -> str | None:
        """Why an LLM utterance cannot be sent (names a title it was shown, or echoes the placeholder), else None."""
        n = _norm(utt)
        if not n:
            return f"no words in utterance {utt[:60]!r}"
        fixed = _norm(rubric.template.format_map(_Blank()))
        if f" {n} " in f" {fixed} ":
            return f"placeholder echoed: {utt[:60]!r}"
        titles = getattr(self.user.values, "titles", {})
        for item, who in [(target, "the target's title")] + [(i, "a shown item's title") for i in shown]:
            title = _bare_title(titles.get(item, ""))
            if len(title) >= 4 and f" {title} " in f" {n} ":
                return f"named {who}"
        return None

    def _record(self, s: dict[str, Any], q: dict[str, Any] | None) -> dict[str, Any]:
        p, sim = self.params, self.user
        target, turns = s["target"], s["turns"]
        played = min(p.velocity_turns, len(turns))
        cells: set[tuple[str, str]] = set()
        for x in turns[:played]:
            for i in x["shown"]:
                cells |= sim.cells(i)
        first = turns[0]["shown"] if turns else []
        rel = float(np.mean([sim.relevance(i, target) for i in first])) if first else 0.0
        tts = self._tts(s)
        metrics: dict[str, float | None] = {}
        if q is not None:
            base = self._tts(q)
            metrics |= {"turns_saved": base - tts,
                        "success_lift": float(s["accepted"] is not None) - float(q["accepted"] is not None)}
        metrics |= {"turns_to_satisfaction": tts, "success_rate": float(s["accepted"] is not None)}
        if q is not None:
            metrics |= {"turns_to_satisfaction_no_critique": self._tts(q),
                        "success_rate_no_critique": float(q["accepted"] is not None)}
        metrics |= {"exploration_velocity": len(cells) / played if played else None, "first_turn_relevance": rel}
        rec = {
            "target": target, "target_values": sorted(sim.cats(target)), "target_bin": sim.bin_label(target),
            "accepted_turn": s["accepted"], "accepted_item": s.get("accepted_item"), "turns": turns,
            "metrics": metrics,
        }
        if q is not None:
            rec["no_critique"] = {"accepted_turn": q["accepted"], "accepted_item": q.get("accepted_item"),
                                  "utterance": q["turns"][0]["utterance"] if q["turns"] else "",
                                  "shown": [x["shown"] for x in q["turns"]]}
        if s.get("llm_failures"):
            rec["llm_failures"] = s["llm_failures"]
        if s.get("llm_verbatim"):
            rec["llm_verbatim"] = s["llm_verbatim"]
        return rec

    def _tts(self, s: dict[str, Any]) -> float:
        return float(s["accepted"] if s["accepted"] is not None else self.params.max_turns + 1)

    def summarize(self, records: list[dict[str, Any]]) -> dict[str, Estimate]:
        ok = [r for r in records if r.get("status") == "ok"]
        out: dict[str, Estimate] = {}
        solved = [r["accepted_turn"] for r in ok if r.get("accepted_turn") is not None]
        from talkwalk_bench.metrics.stats import mean_ci

        if solved:
            out["turns_to_satisfaction_when_satisfied"] = mean_ci(solved, seed=self.ctx.seed,
                                                                  n_resamples=self.spec.bootstrap.n_resamples)
        else:
            out["turns_to_satisfaction_when_satisfied"] = not_available("no simulated user was satisfied within the turn cap")
        return out

    def _success_by_turn(self, ok: list[dict[str, Any]]) -> dict[str, list[float]]:
        """Share of episodes accepted by turn t = 1..max_turns, with the critiques and without them."""
        n, cap = len(ok), self.params.max_turns
        walks = {"critiques": [r.get("accepted_turn") for r in ok]}
        if ok and all("no_critique" in r for r in ok):
            walks["no_critique"] = [r["no_critique"]["accepted_turn"] for r in ok]
        return {w: [sum(1 for a in acc if a is not None and a <= t) / n if n else 0.0 for t in range(1, cap + 1)]
                for w, acc in walks.items()}

    def extras(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        ok = [r for r in records if r.get("status") == "ok"]
        kinds: dict[str, int] = {}
        for r in ok:
            for x in r.get("turns", [])[1:]:
                kinds[x["kind"]] = kinds.get(x["kind"], 0) + 1
        out: dict[str, Any] = {
            "simulator": self.simulator, "max_turns": self.params.max_turns, "k": self.k,
            "velocity_turns": self.params.velocity_turns, "critique_kinds": dict(sorted(kinds.items())),
            "phrasing_source": getattr(self, "_template_source", None),
            "success_by_turn": self._success_by_turn(ok),
        }
        if self.simulator == "llm":
            judge, rubric = self.llm
            reasons: dict[str, int] = {}
            for r in ok:
                for f in r.get("llm_failures", []):
                    reasons[f.split(":")[0]] = reasons.get(f.split(":")[0], 0) + 1
            out["llm"] = {**judge.describe(), "rubric": rubric.id,
                          "fallbacks_to_templates": sum(len(r.get("llm_failures", [])) for r in ok),
                          "fallback_reasons": dict(sorted(reasons.items())),
                          "llm_utterances": sum(1 for r in ok for x in r.get("turns", []) if x.get("template") == "llm"),
                          "llm_verbatim_rule_wording": sum(r.get("llm_verbatim", 0) for r in ok)}
        return out
