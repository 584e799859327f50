"""Conversation task: the simulated user's decisions, its metrics, and the lift of listening on real systems."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from talkwalk_bench.data.dataset import load_dataset
from talkwalk_bench.metrics.stats import paired_significant
from talkwalk_bench.registry import SYSTEMS, register_system
from talkwalk_bench.results import episodes_path, read_episodes
from talkwalk_bench.steering import ItemValues, predicate_from_dict
from talkwalk_bench.steering.phrasings import _eval_templates, train_templates
from talkwalk_bench.tasks.base import FAMILIES, TaskContext
from talkwalk_bench.tasks.runner import RunConfig, run
from talkwalk_bench.tasks.spec import load_spec
from talkwalk_bench.types import Ranking, SystemMeta


class _PredicateOracle:
    """Popularity within the conversation's ground-truth predicate (given to oracles only)."""

    meta = SystemMeta(name="test-conversation-oracle", is_oracle=True)

    def fit(self, data, *, seed):
        counts = Counter(data.train.item_ids.tolist())
        self.order = sorted(data.item_ids, key=lambda i: (-counts.get(i, 0), int(i)))
        self.values = ItemValues(data.card, data.items, data.item_ids)

    def recommend(self, requests, *, k):
        out = []
        for r in requests:
            pred = r.context["oracle_predicate"]
            items = [i for i in self.order if i not in r.exclude and self.values.satisfies(pred, i)]
            out.append(Ranking(tuple(items[:k])))
        return out


if "test-conversation-oracle" not in SYSTEMS:
    register_system("test-conversation-oracle", oracle=True)(lambda: _PredicateOracle())
# the project's oracle-filter when it is installed, else the stand-in above
ORACLE = "oracle-filter" if "oracle-filter" in SYSTEMS else "test-conversation-oracle"


def _spec_file(tmp: Path, **episodes) -> Path:
    spec, _ = load_spec("conversation")
    data = spec.model_dump(mode="json")
    data["episodes"] = {**data["episodes"], **episodes}
    data["bootstrap"]["n_resamples"] = 200
    p = tmp / "conversation_small.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("conv")
    spec = _spec_file(tmp, max_users=60, max_turns=8)
    out = {}
    for system in ("popularity", "random", "text-only", ORACLE):
        res = run(RunConfig(system=system, task=str(spec), output=tmp / f"{system}.json", progress=False))
        out[system] = (res, read_episodes(episodes_path(tmp / f"{system}.json")))
    return out


@pytest.fixture(scope="module")
def family():
    spec, path = load_spec("conversation")
    cls = FAMILIES.get(spec.family)
    ctx = TaskContext(spec=spec, params=cls.parse_params(spec, path), dataset=load_dataset(spec.dataset), seed=0)
    return cls(ctx)


def _genres(ds, item):
    return frozenset(ds.items[item].get("class") or ())


def _decade(ds, item):
    try:
        return int(float(ds.items[item]["release_year"])) // 10 * 10
    except ValueError:  # a few ml-100k items have no year
        return None


def test_turns_to_satisfaction_lower_for_the_oracle_than_for_popularity(runs):
    pop, pop_eps = runs["popularity"]
    orc, orc_eps = runs[ORACLE]
    assert pop.status == orc.status == "success"
    assert orc.metrics["turns_to_satisfaction"].value < pop.metrics["turns_to_satisfaction"].value
    assert orc.metrics["success_rate"].value >= pop.metrics["success_rate"].value
    a = {r["episode"]: r["metrics"]["turns_to_satisfaction"] for r in orc_eps}
    b = {r["episode"]: r["metrics"]["turns_to_satisfaction"] for r in pop_eps}
    keys = sorted(a)
    assert keys == sorted(b)  # same users, same targets
    assert paired_significant([b[k] for k in keys], [a[k] for k in keys])


def test_every_critique_predicate_holds_for_the_hidden_target(runs, family):
    sim = family.user
    n = 0
    for _, eps in runs.values():
        for r in eps:
            for t in r["turns"]:
                pred = predicate_from_dict(t["predicate"])
                assert sim.values.satisfies(pred, r["target"]), (t["utterance"], r["target"])
                n += 1
    assert n > 100


def test_utterances_use_eval_phrasings_never_train_ones(runs):
    evals, _ = _eval_templates()
    train = {t for ts in train_templates().values() for t in ts}
    for _, eps in runs.values():
        for r in eps:
            for t in r["turns"]:
                assert t["template"] in evals[t["kind"]]
                assert t["template"] not in train


def test_acceptance_matches_hand_check(runs):
    ds = load_dataset("ml-100k")
    for _, eps in runs.values():
        for r in eps:
            tgt = r["target"]
            hits = [[i == tgt or (_genres(ds, i) == _genres(ds, tgt) and _decade(ds, i) == _decade(ds, tgt)) for i in t["shown"]]
                    for t in r["turns"]]
            first_hit = next((j + 1 for j, h in enumerate(hits) if any(h)), None)
            assert r["accepted_turn"] == first_hit
            expected = first_hit if first_hit is not None else 8 + 1
            assert r["metrics"]["turns_to_satisfaction"] == expected
            if first_hit is None:
                assert len(r["turns"]) == 8


def test_velocity_and_first_turn_relevance_match_hand_computation(runs):
    ds = load_dataset("ml-100k")
    for _, eps in runs.values():
        for r in eps[:20]:
            tgt = r["target"]
            played = r["turns"][:5]
            cells = {c for t in played for i in t["shown"] for c in ({(g, _decade(ds, i)) for g in _genres(ds, i)} or {("?", _decade(ds, i))})}
            assert r["metrics"]["exploration_velocity"] == pytest.approx(len(cells) / len(played))
            rel = []
            for i in r["turns"][0]["shown"]:
                a, b = _genres(ds, i), _genres(ds, tgt)
                rel.append(0.5 * len(a & b) / len(a | b or {None}) + 0.5 * (_decade(ds, i) == _decade(ds, tgt)))
            assert r["metrics"]["first_turn_relevance"] == pytest.approx(np.mean(rel))


def test_items_shown_earlier_are_not_shown_again_with_exclude_shown(tmp_path):
    spec = _spec_file(tmp_path, max_users=20, max_turns=4, exclude_shown=True)
    run(RunConfig(system="popularity", task=str(spec), output=tmp_path / "ex.json", progress=False))
    eps = read_episodes(episodes_path(tmp_path / "ex.json"))
    assert any(len(r["turns"]) > 1 for r in eps)
    for r in eps:
        for walk in ([t["shown"] for t in r["turns"]], r["no_critique"]["shown"]):
            shown = [i for lst in walk for i in lst]
            assert len(shown) == len(set(shown))


def test_a_list_that_never_changes_gets_one_chance(runs):
    """Shown items may come back (the default), so a static list cannot browse its way to the target's cell."""
    _, eps = runs["popularity"]
    assert any(r["accepted_turn"] is None for r in eps)
    for r in eps:
        assert all(t["shown"] == r["turns"][0]["shown"] for t in r["turns"])
        assert r["metrics"]["turns_to_satisfaction"] in (1.0, 8 + 1.0)


def _lift(res, name="turns_saved"):
    m = res.metrics[name]
    return m.value, m.ci_low, m.ci_high


def test_a_system_that_ignores_the_words_gains_exactly_nothing_by_listening(runs):
    res, eps = runs["popularity"]
    assert res.task.main_score == "turns_saved"
    for r in eps:  # the same lists turn by turn with and without the critiques
        assert r["no_critique"]["shown"] == [t["shown"] for t in r["turns"]]
        assert r["metrics"]["turns_saved"] == 0.0 and r["metrics"]["success_lift"] == 0.0
    assert _lift(res) == (0.0, 0.0, 0.0) and _lift(res, "success_lift") == (0.0, 0.0, 0.0)


def test_random_lift_is_zero_within_its_ci(runs):
    res, _ = runs["random"]
    for name in ("turns_saved", "success_lift"):
        _, lo, hi = _lift(res, name)
        assert lo <= 0.0 <= hi, name


def test_listening_pays_for_a_steerable_system_and_most_for_the_oracle(runs):
    text, _ = runs["text-only"]
    orc, _ = runs[ORACLE]
    pop, _ = runs["popularity"]
    rnd, _ = runs["random"]
    assert _lift(text)[1] > 0.0 and _lift(text, "success_lift")[1] > 0.0  # significantly above 0
    # the oracle's lift beats every other system's, with its CI clear of theirs
    for other in (text, pop, rnd):
        assert _lift(orc)[1] > _lift(other)[2]
        assert _lift(orc, "success_lift")[0] > _lift(other, "success_lift")[0]
    # and without critiques a static list is accepted well below a listening system with them
    assert pop.metrics["success_rate_no_critique"].ci_high < text.metrics["success_rate"].ci_low


def test_lifts_are_paired_differences_of_the_two_walks(runs):
    for _, eps in runs.values():
        for r in eps:
            m, nc = r["metrics"], r["no_critique"]
            assert m["turns_to_satisfaction_no_critique"] == (nc["accepted_turn"] or 8 + 1)
            assert m["success_rate_no_critique"] == float(nc["accepted_turn"] is not None)
            assert m["turns_saved"] == m["turns_to_satisfaction_no_critique"] - m["turns_to_satisfaction"]
            assert m["success_lift"] == m["success_rate"] - m["success_rate_no_critique"]


def test_success_by_turn_ends_at_the_success_rates(runs):
    for res, _ in runs.values():
        curves = res.extras["success_by_turn"]
        for walk, metric in (("critiques", "success_rate"), ("no_critique", "success_rate_no_critique")):
            c = curves[walk]
            assert len(c) == 8 and all(a <= b for a, b in zip(c, c[1:], strict=False))
            assert c[-1] == pytest.approx(res.metrics[metric].value)


def test_the_no_critique_walk_sends_no_words_and_no_predicate(tmp_path):
    seen = []

    class OracleSpy:
        meta = SystemMeta(name="test-conversation-oracle-spy", is_oracle=True)

        def fit(self, data, *, seed):
            self.items = data.item_ids

        def recommend(self, requests, *, k):
            seen.extend((r.utterance, r.context["oracle_predicate"], r.session_id) for r in requests)
            return [Ranking(tuple(self.items[:k])) for _ in requests]

    if "test-conversation-oracle-spy" not in SYSTEMS:
        register_system("test-conversation-oracle-spy", oracle=True)(lambda: OracleSpy())
    spec = _spec_file(tmp_path, max_users=5, max_turns=3)
    run(RunConfig(system="test-conversation-oracle-spy", task=str(spec), output=tmp_path / "o.json", progress=False))
    eps = read_episodes(episodes_path(tmp_path / "o.json"))
    silent = [s for s in seen if s[0] == ""]
    heard = [s for s in seen if s[0] != ""]
    assert len(silent) == sum(len(r["no_critique"]["shown"]) for r in eps) > 0
    assert len(heard) == sum(len(r["turns"]) for r in eps)
    assert all(p is None for _, p, _ in silent) and all(p is not None for _, p, _ in heard)
    assert {s for _, _, s in silent} == {s for _, _, s in heard} == {r["episode"] for r in eps}


def test_no_critique_neutral_words_and_off(tmp_path, family):
    evals, _ = _eval_templates()
    vocab = family.user.vocab
    neutral = {vocab.plain("neutral").say(t, noun=vocab.noun) for t in evals["neutral"]}
    spec = _spec_file(tmp_path, max_users=5, max_turns=2, no_critique="neutral")
    run(RunConfig(system="popularity", task=str(spec), output=tmp_path / "n.json", progress=False))
    assert all(r["no_critique"]["utterance"] in neutral for r in read_episodes(episodes_path(tmp_path / "n.json")))
    spec = _spec_file(tmp_path, max_users=5, max_turns=2, no_critique="off")
    res = run(RunConfig(system="popularity", task=str(spec), output=tmp_path / "off.json", progress=False, force=True))
    assert "turns_saved" not in res.metrics and "success_rate" in res.metrics
    assert "no_critique" not in res.extras["success_by_turn"]


def test_stricter_acceptance_options(family):
    from talkwalk_bench.tasks.conversation import SimulatedUser

    sim, ds = family.user, family.ctx.dataset
    target = next(i for i in ds.item_ids if _genres(ds, i) == {"Comedy"} and _decade(ds, i) == 1990)
    exact = next(i for i in ds.item_ids if i != target and _genres(ds, i) == {"Comedy"} and _decade(ds, i) == 1990)
    other = next(i for i in ds.item_ids if _genres(ds, i) == {"Action"})
    only_target = SimulatedUser(family.ctx.card, ds.items, ds.item_ids, templates=sim.templates, accept="target")
    top1 = SimulatedUser(family.ctx.card, ds.items, ds.item_ids, templates=sim.templates, accept_top=1)
    assert sim.accepts([other, exact], target) == exact
    assert only_target.accepts([other, exact], target) is None and only_target.accepts([other, target], target) == target
    assert top1.accepts([other, exact], target) is None and top1.accepts([exact, other], target) == exact


def test_critique_asks_for_older_when_the_list_is_too_recent(family):
    sim, ds = family.user, family.ctx.dataset
    target = next(i for i in ds.item_ids if _genres(ds, i) == {"Drama"} and _decade(ds, i) == 1970)
    newer_dramas = [i for i in ds.item_ids if _genres(ds, i) == {"Drama"} and _decade(ds, i) == 1990][:10]
    c = sim.critique(newer_dramas, target, random.Random(0))
    assert c.kind == "before" and c.detail["bound"] == "1980"
    assert sim.accepts(newer_dramas, target) is None
    text, template = sim.say(c, random.Random(0))
    assert "1980" in text


def test_critique_asks_for_the_missing_genre_and_less_of_the_dominant_one(family):
    sim, ds = family.user, family.ctx.dataset
    target = next(i for i in ds.item_ids if _genres(ds, i) == {"Comedy"} and _decade(ds, i) == 1990)
    action = [i for i in ds.item_ids if _genres(ds, i) == {"Action"} and _decade(ds, i) == 1990][:10]
    c = sim.critique(action, target, random.Random(0))
    assert c.kind == "include_exclude" and c.detail == {"value": "Comedy", "other": "Action"}


def test_a_superset_of_genres_is_not_accepted_but_an_exact_match_is(family):
    sim, ds = family.user, family.ctx.dataset
    target = next(i for i in ds.item_ids if _genres(ds, i) == {"Comedy"} and _decade(ds, i) == 1990)
    superset = next(i for i in ds.item_ids if _genres(ds, i) == {"Comedy", "Romance"} and _decade(ds, i) == 1990)
    exact = next(i for i in ds.item_ids if i != target and _genres(ds, i) == {"Comedy"} and _decade(ds, i) == 1990)
    assert sim.accepts([superset], target) is None
    assert sim.accepts([superset, exact], target) == exact


def test_same_seed_gives_identical_episodes(family):
    a = [e.data for e in family.episodes()]
    b = [e.data for e in family.episodes()]
    assert a == b and len(a) == 200


def test_non_oracle_systems_get_no_predicate(tmp_path):
    seen = []

    class Spy:
        meta = SystemMeta(name="test-conversation-spy")

        def fit(self, data, *, seed):
            self.items = data.item_ids

        def recommend(self, requests, *, k):
            seen.extend(r.context for r in requests)
            return [Ranking(tuple(self.items[:k])) for _ in requests]

    if "test-conversation-spy" not in SYSTEMS:
        register_system("test-conversation-spy")(lambda: Spy())
    spec = _spec_file(tmp_path, max_users=5, max_turns=2)
    res = run(RunConfig(system="test-conversation-spy", task=str(spec), output=tmp_path / "spy.json", progress=False))
    assert res.status == "success" and seen
    assert all("oracle_predicate" not in c for c in seen)


class _WordingEngine:
    """Stands in for an LLM behind the loopback server: words each critique, or answers garbage."""

    name = "scripted-user"

    def __init__(self, garbage: bool = False) -> None:
        self.garbage = garbage
        self.prompts: list[str] = []

    def complete(self, messages, **kw):
        from talkwalk_bench.judge.server import Completion

        self.prompts.append(messages[-1]["content"])
        text = "no idea" if self.garbage else '{"utterance": "hmm, something else along those lines"}'
        return Completion(text, 1, 1, "stop")


@pytest.mark.parametrize("garbage", [False, True])
def test_llm_simulator_words_critiques_through_the_openai_client(tmp_path, garbage):
    from talkwalk_bench.judge.server import ServerThread

    eng = _WordingEngine(garbage)
    spec = _spec_file(tmp_path, max_users=6, max_turns=3)
    opts = {"simulator": "llm", "judge_model": "scripted-user", "judge_cache": False, "judge_parse_retries": 0}
    with ServerThread(eng) as url:
        res = run(RunConfig(system="popularity", task=str(spec), output=tmp_path / "llm.json", progress=False,
                            options={**opts, "judge_base_url": url}))
    eps = read_episodes(episodes_path(tmp_path / "llm.json"))
    later = [t for r in eps for t in r["turns"][1:]]
    assert res.status == "success" and later and eng.prompts
    assert res.extras["simulator"] == "llm" and res.protocol["simulator"] == "llm"
    assert "api_key" not in str(res.extras["llm"]).replace("api_key_set", "")
    if garbage:  # every wording failed: the template wording is kept, and counted
        assert all(t["template"] != "llm" for t in later)
        assert res.extras["llm"]["fallbacks_to_templates"] == len(later)
    else:
        assert all(t["utterance"] == "hmm, something else along those lines" and t["template"] == "llm" for t in later)
        assert res.extras["llm"]["fallbacks_to_templates"] == 0
        assert all("never say its title" not in p for p in eng.prompts)  # the system prompt is separate
    # acceptance stays rule-based: the same lists and turn counts as the rule simulator
    rule = run(RunConfig(system="popularity", task=str(spec), output=tmp_path / "rule.json", progress=False))
    assert rule.metrics["turns_to_satisfaction"].value == res.metrics["turns_to_satisfaction"].value


class _LeakyEngine:
    """Answers in turn: the target's title, the prompt's placeholder, a shown item's title, a usable sentence."""

    name = "leaky-user"

    def __init__(self) -> None:
        self.answers: list[str] = []

    def complete(self, messages, **kw):
        import json
        import re

        from talkwalk_bench.judge.server import Completion

        n = len(self.answers)
        title = re.search(r'in mind: "([^"(]+)', messages[-1]["content"]).group(1).strip()
        shown = re.search(r'showed you:\n- "([^"(]+)', messages[-1]["content"]).group(1).strip()
        kind = ("title", "placeholder", "shown", "ok")[n % 4]
        self.answers.append(kind)
        text = {"title": f"I want {title} obviously", "placeholder": "<your sentence>", "shown": f"more like {shown} please",
                "ok": "something with more punch"}[kind]
        return Completion(json.dumps({"utterance": text}), 1, 1, "stop")


def test_llm_utterances_naming_the_target_or_echoing_the_placeholder_fall_back(tmp_path):
    from talkwalk_bench.judge.server import ServerThread

    eng = _LeakyEngine()
    spec = _spec_file(tmp_path, max_users=6, max_turns=3)
    opts = {"simulator": "llm", "judge_model": "leaky", "judge_cache": False, "judge_parse_retries": 0, "judge_concurrency": 1}
    with ServerThread(eng) as url:
        res = run(RunConfig(system="popularity", task=str(spec), output=tmp_path / "leaky.json", progress=False,
                            options={**opts, "judge_base_url": url}))
    eps = read_episodes(episodes_path(tmp_path / "leaky.json"))
    later = [t for r in eps for t in r["turns"][1:]]
    llm = res.extras["llm"]
    assert res.status == "success" and len(eng.answers) >= 4
    assert llm["fallbacks_to_templates"] == len(eng.answers) - eng.answers.count("ok")
    assert llm["fallback_reasons"] == {"named the target's title": eng.answers.count("title"),
                                       "named a shown item's title": eng.answers.count("shown"),
                                       "placeholder echoed": eng.answers.count("placeholder")}
    worded = [t for t in later if t["template"] == "llm"]
    assert len(worded) == llm["llm_utterances"] == eng.answers.count("ok")
    assert all(t["utterance"] == "something with more punch" for t in worded)
    assert not any(x in t["utterance"] for t in later for x in ("<your sentence>", "obviously", "more like"))
