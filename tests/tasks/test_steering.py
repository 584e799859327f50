"""Steerability: predicates, templates, steering files, episodes and the reference points on ml-100k."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from systems.baselines import Popularity, RandomRanker
from systems.oracle_filter import OracleFilter
from talkwalk_bench.data.card import load_card
from talkwalk_bench.data.dataset import load_dataset
from talkwalk_bench.errors import BenchError, DataFormatError
from talkwalk_bench.steering import (
    REQUEST_KINDS,
    AllOf,
    DifferentFrom,
    HasValue,
    InRange,
    ItemValues,
    LacksValue,
    Relative,
    SimilarTo,
    Vocabulary,
    holds_for,
    load_steering_file,
    predicate_from_dict,
    template_slots,
    train_phrasings,
    train_templates,
)
from talkwalk_bench.steering.phrasings import _builtin, utterance_predicate
from talkwalk_bench.tasks.base import TaskContext
from talkwalk_bench.tasks.runner import RunConfig, aggregate, run
from talkwalk_bench.tasks.spec import load_spec_file
from talkwalk_bench.tasks.steering import ORACLE_KEY, SteerabilityFamily
from talkwalk_bench.tasks.steering_eval import builtin_eval
from talkwalk_bench.tasks.steering_eval import eval_templates as _eval_templates
from talkwalk_bench.types import Ranking, SystemMeta

ROOT = Path(__file__).resolve().parents[2]
FIX = Path(__file__).resolve().parents[1] / "fixtures" / "steering"
N_USERS = 40


@pytest.fixture(scope="module")
def card():
    return load_card("ml-100k")


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("ml-100k")


@pytest.fixture
def small_spec(tmp_path) -> Path:
    p = tmp_path / "steer-small.yaml"
    p.write_text(f"include: {ROOT / 'tasks' / 'steerability.yaml'}\nepisodes: {{max_users: {N_USERS}}}\nbootstrap: {{n_resamples: 200}}\n")
    return p


def _run(system: str, spec: Path, tmp_path: Path, name: str, **kw):
    out = tmp_path / f"{name}.json"
    res = run(RunConfig(system=system, task=str(spec), output=out, progress=False, force=True, **kw))
    records = [json.loads(line) for line in out.with_suffix("").with_suffix(".episodes.jsonl").read_text().splitlines()] \
        if out.with_suffix("").with_suffix(".episodes.jsonl").exists() else None
    return res, records


def _family(spec_path: Path, dataset, seed: int = 0, steering_file: Path | None = None) -> SteerabilityFamily:
    spec = load_spec_file(spec_path)
    params = SteerabilityFamily.parse_params(spec)
    ctx = TaskContext(spec=spec, params=params, dataset=dataset, seed=seed, steering_file=steering_file)
    return SteerabilityFamily(ctx)


# -- predicates ------------------------------------------------------------------

def test_predicates_on_parsed_item_values(card, dataset):
    iv = ItemValues(card, dataset.items, dataset.item_ids)
    toy = iv["1"]  # Toy Story: Animation, Children's, Comedy; 1995
    assert HasValue(attribute="genre", value="Comedy").holds(toy)
    assert not LacksValue(attribute="genre", value="Comedy").holds(toy)
    assert LacksValue(attribute="genre", value="Horror").holds(toy)
    assert InRange(attribute="year", low=1990, high=1999).holds(toy)
    assert not InRange(attribute="year", high=1995, high_strict=True).holds(toy)  # "before 1995"
    assert InRange(attribute="year", low=1995).holds(toy)  # "1995 or later"
    assert Relative(attribute="year", anchor="x", anchor_value=1996.0, direction="lower").holds(toy)
    assert not Relative(attribute="year", anchor="x", anchor_value=1995.0, direction="lower").holds(toy)
    sim = SimilarTo(attribute="genre", anchor="1", anchor_values=frozenset({"Animation", "Comedy"}), exclude_items=frozenset({"1"}))
    assert sim.holds(toy) and not holds_for(sim, "1", toy)  # 2/3 >= 0.5, but the anchor itself is not "more like it"
    assert not DifferentFrom(attribute="genre", anchor="x", anchor_values=frozenset({"Comedy"})).holds(toy)
    both = AllOf(parts=(HasValue(attribute="genre", value="Comedy"), InRange(attribute="year", low=1980, high=1989)))
    assert not both.holds(toy)
    assert both.attributes() == {"genre", "year"}
    # an item with an unknown year never satisfies a range
    assert not InRange(attribute="year", low=0).holds({"year": math.nan})


def test_predicates_round_trip_through_json(card):
    v = Vocabulary(card)
    preds = [v.include("Comedy").predicate, v.exclude("Horror").predicate, v.range_bin("1970s").predicate,
             v.before(1980).predicate, v.include_exclude("Drama", "War").predicate]
    for p in preds:
        assert predicate_from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_mask_counts_match_catalog_counts(card, dataset):
    iv = ItemValues(card, dataset.items, dataset.item_ids)
    horror = sum("Horror" in str(r.get("class", "")) for r in dataset.items.values())
    unlabelled = sum(str(r.get("class", "")) in ("('unknown',)", "unknown", "") for r in dataset.items.values())
    assert unlabelled == 2
    assert iv.mask(HasValue(attribute="genre", value="Horror")).sum() == horror
    assert iv.mask(LacksValue(attribute="genre", value="Horror")).sum() == len(dataset.item_ids) - horror - unlabelled


def test_unknown_values_satisfy_no_request_and_are_reported(card, dataset):
    iv = ItemValues(card, dataset.items, dataset.item_ids)
    v = Vocabulary(card)
    for item in ("267", "1373"):  # genre "unknown"; 267 also has release year "unkonwn"
        assert not iv[item].get("genre")
        assert not any(iv.satisfies(v.exclude(g).predicate, item) for g in v.values())
        assert not any(iv.satisfies(v.include(g).predicate, item) for g in v.values())
    assert not any(iv.satisfies(v.after(b).predicate, "1412") or iv.satisfies(v.before(b).predicate, "1412") for b in v.bounds())
    rep = iv.unknown_report(["genre", "year"])
    assert rep["genre"]["count"] == 2 and {e["item"] for e in rep["genre"]["examples"]} == {"267", "1373"}
    assert rep["year"]["count"] == 2 and {e["raw"] for e in rep["year"]["examples"]} == {"unkonwn", "V"}
    assert "no steering predicate" in rep["year"]["treated_as"]


# -- templates and rendering -----------------------------------------------------

def test_builtin_templates_cover_every_kind_with_disjoint_train_and_eval():
    b, e = _builtin(), builtin_eval()
    for kind in REQUEST_KINDS:
        train, ev = b.train[kind], e.eval[kind]
        assert len(train) + len(ev) >= 6, kind
        assert train and ev
        assert not {t.lower() for t in train} & {t.lower() for t in ev}


def test_rendering_uses_card_words(card):
    v = Vocabulary(card)
    assert v.range_bin("1970s").say("something from the {bin}") == "something from the seventies"
    assert v.exclude("Horror").say("no {value} please") == "no horror please"
    assert v.before(1980).say("older than {bound}") == "older than 1980"
    assert v.include("Comedy").say("I'd like {description}").startswith("I'd like a comedy")
    assert template_slots("a {bin} {noun} with {value}") == ["bin", "noun", "value"]


def test_eval_phrasings_never_reach_what_systems_can_learn_from(card, dataset, small_spec):
    train = train_phrasings(card)
    exposed = json.dumps([p.__dict__ for p in train]) + json.dumps(train_templates()) + card.model_dump_json()
    evals, _ = _eval_templates()
    for kind, templates in evals.items():
        for t in templates:
            assert t not in exposed, (kind, t)
    # rendered eval utterances of real episodes are not among the training texts either
    fam = _family(small_spec, dataset)
    train_texts = {p.text for p in train}
    for e in fam.episodes():
        for key in ("steer", "alt"):
            assert e.data[key]["utterance"] not in train_texts
            assert e.data[key]["template"] in evals[e.data[key]["kind"]]
        for key in ("more_variety", "stay_close", "go_back"):
            assert e.data[key] not in train_texts
    # the training data a system is fitted on holds no phrasing at all
    td = fam.train_data()
    assert not any(t in json.dumps(td.items) + json.dumps(td.users) for ts in evals.values() for t in ts if len(t) > 12)


def test_train_phrasings_pair_text_with_predicates(card):
    ph = train_phrasings(card, per_template=5)
    kinds = {p.kind for p in ph}
    assert kinds == set(REQUEST_KINDS)
    inc = [p for p in ph if p.kind == "include"]
    assert all(p.predicate["kind"] == "has" for p in inc)
    assert all("{" not in p.text for p in ph)


# -- steering files ----------------------------------------------------------------

def test_own_steering_file_loads(card):
    ts = load_steering_file(FIX / "own_phrasings.yaml")
    assert "include" in ts.kinds() and "tonight calls for {value}" in ts.eval["include"]


@pytest.mark.parametrize("name,field", [
    ("broken_slot.yaml", "templates.include.eval.1"),
    ("broken_key.yaml", "templates.include.test"),
    ("broken_kind.yaml", "templates.inclde"),
    ("broken_missing.yaml", "templates.range_bin.eval.0"),
])
def test_broken_steering_file_gives_one_line_naming_file_and_field(name, field):
    with pytest.raises(DataFormatError) as ei:
        load_steering_file(FIX / name)
    msg = str(ei.value)
    assert "\n" not in msg
    assert str(FIX / name) in msg and field in msg


def test_broken_steering_file_on_the_command_line(small_spec, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "talkwalk_bench.cli", "run", "--system", "popularity", "--task", str(small_spec),
         "--steering-file", str(FIX / "broken_slot.yaml"), "--output", str(tmp_path / "x.json")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "broken_slot.yaml" in err and "templates.include.eval.1" in err
    assert "Traceback" not in proc.stderr


def test_run_scores_a_steering_file_written_apart_from_the_templates(small_spec, tmp_path):
    own = load_steering_file(FIX / "own_phrasings.yaml")
    res, records = _run("oracle-filter", small_spec, tmp_path, "own", steering_file=FIX / "own_phrasings.yaml")
    assert res.status == "success"
    assert res.metrics["constraint_following@10"].value == 1.0
    assert res.extras["phrasing_source"]["include"].endswith("own_phrasings.yaml")
    for r in records:
        kind = r["requests"]["steer"]["kind"]
        if kind in own.kinds():
            assert r["requests"]["steer"]["template"] in own.eval[kind]
        assert r["requests"]["go_back"] == "scratch my last request"


# -- episodes and play ---------------------------------------------------------------

class Spy:
    """Popularity-like system that records every request it sees."""

    def __init__(self, oracle: bool) -> None:
        self.meta = SystemMeta(name="spy", is_oracle=oracle)
        self.seen = []

    def fit(self, data, *, seed):
        self.items = data.item_ids

    def recommend(self, requests, *, k):
        self.seen.extend(requests)
        return [Ranking(tuple(i for i in self.items if i not in r.exclude)[:k]) for r in requests]


@pytest.mark.parametrize("oracle", [False, True])
def test_oracle_predicate_only_reaches_oracles_and_turns_are_played_in_order(small_spec, dataset, oracle):
    fam = _family(small_spec, dataset)
    eps = fam.episodes()[:5]
    spy = Spy(oracle)
    spy.fit(fam.train_data(), seed=0)
    fam.ctx.system = spy
    records = fam.play(eps)
    assert len(records) == 5
    has_key = [ORACLE_KEY in r.context for r in spy.seen]
    assert all(has_key) if oracle else not any(has_key)
    turns = [r.context["turn"] for r in spy.seen]
    assert turns == sorted(turns)  # all episodes' turn t before any turn t+1
    # turn-1 steering requests carry the neutral turn with the items shown
    steer = [r for r in spy.seen if r.context["turn"] == 1]
    assert all(len(r.conversation) == 2 and len(r.conversation[0].shown) == 10 for r in steer)
    anchored = [r for r in spy.seen if r.context["turn"] == 3]
    assert all(len(r.conversation) == 4 and r.conversation[2].shown for r in anchored)
    assert all(r.history and r.user for r in spy.seen)


def test_same_seed_same_episodes_and_numbers(small_spec, dataset, tmp_path):
    a = [(e.id, e.data) for e in _family(small_spec, dataset, seed=0).episodes()]
    b = [(e.id, e.data) for e in _family(small_spec, dataset, seed=0).episodes()]
    c = [(e.id, e.data) for e in _family(small_spec, dataset, seed=1).episodes()]
    assert a == b and a != c
    r1, rec1 = _run("random", small_spec, tmp_path, "r1")
    r2, rec2 = _run("random", small_spec, tmp_path, "r2")
    assert {k: v.model_dump() for k, v in r1.metrics.items()} == {k: v.model_dump() for k, v in r2.metrics.items()}
    assert [r["lists"] for r in rec1] == [r["lists"] for r in rec2]


def test_consistent_steer_holds_for_the_held_out_item(small_spec, dataset, card):
    fam = _family(small_spec, dataset)
    iv = ItemValues(card, dataset.items, dataset.item_ids)
    eps = fam.episodes()
    assert len(eps) == N_USERS
    for e in eps:
        p = predicate_from_dict(e.data["steer"]["predicate"])
        assert iv.satisfies(p, e.data["target"])
        assert e.data["steer"]["kind"] == e.data["alt"]["kind"]
        assert e.data["steer"]["predicate"] != e.data["alt"]["predicate"]


# -- the properties a reader assumes of each metric, on real systems ---------------------

EFFECTS = ("steering_lift@10", "preference_sensitivity@10", "steering_entropy_reduction", "diversity_gradient")


class Shuffler:
    """A synthetic noise system: a fresh uniform shuffle of the unseen catalog for every request."""

    def __init__(self) -> None:
        self.meta = SystemMeta(name="shuffler")

    def fit(self, data, *, seed):
        self.items = list(data.item_ids)
        self.rng = np.random.default_rng(seed + 17)

    def recommend(self, requests, *, k):
        out = []
        for r in requests:
            order = self.rng.permutation(len(self.items))
            out.append(Ranking(tuple(it for it in (self.items[j] for j in order) if it not in r.exclude)[:k]))
        return out


def _metrics_of(system, spec_path: Path, dataset) -> tuple[dict, list[dict]]:
    """Play and score a system object the way the runner does (per-episode means, then the task's own summaries)."""
    fam = _family(spec_path, dataset)
    system.fit(fam.train_data(), seed=0)
    fam.ctx.system = system
    eps = fam.episodes()
    records = [{"episode": e.id, "status": "ok", **r} for e, r in zip(eps, fam.play(eps), strict=True)]
    metrics = {k: v.model_dump() for k, v in aggregate(records, fam.spec, 0).items()}
    metrics.update({k: v.as_dict() for k, v in fam.summarize(records).items()})
    for name, c in fam.extras(records)["chance"].items():
        metrics[name]["chance"] = c
    return metrics, records


@pytest.fixture(scope="module")
def runs(tmp_path_factory, dataset):
    spec = tmp_path_factory.mktemp("props") / "steer-props.yaml"
    spec.write_text(f"include: {ROOT / 'tasks' / 'steerability.yaml'}\nepisodes: {{max_users: 80}}\nbootstrap: {{n_resamples: 400}}\n")
    systems = {"popularity": Popularity(), "random": RandomRanker(), "oracle-filter": OracleFilter(), "shuffler": Shuffler()}
    return {name: _metrics_of(system, spec, dataset) for name, system in systems.items()}


def _kinds(metrics: dict, prefix: str) -> dict[str, dict]:
    return {n.split("/", 1)[1]: v for n, v in metrics.items() if n.startswith(prefix + "/")}


def test_a_system_that_ignores_the_text_scores_zero_or_na_on_every_steering_effect(runs):
    m, records = runs["popularity"]
    for name in EFFECTS:
        assert m[name]["value"] == 0.0 and m[name]["ci_low"] == m[name]["ci_high"] == 0.0, name
    lifts = _kinds(m, "steering_lift@10")
    assert len(lifts) >= 8 and all(v["value"] == 0.0 for v in lifts.values())
    assert m["steering_precision"]["value"] is None  # nothing moved
    assert m["reversibility"]["value"] is None and "never moved" in m["reversibility"]["reason"]
    assert all(r["lists"]["steer"] == r["lists"]["neutral"] for r in records)


@pytest.mark.parametrize("system", ["random", "shuffler"])
def test_noise_scores_zero_within_its_ci(runs, system):
    m, records = runs[system]
    for name in (*EFFECTS, "reversibility", "steering_precision", "constraint_following_norm@10"):
        e = m[name]
        # 0 within the interval's reach: |value| below 3 standard errors (se from the 95 % CI). One run
        # checks 7 metrics; requiring each 95 % CI to cover 0 would fail a fair noise system one run in three.
        se = (e["ci_high"] - e["ci_low"]) / (2 * 1.96)
        assert e["value"] is not None and se > 0 and abs(e["value"]) < 3 * se, (name, e)
    # the noise floor moves its lists on every turn: reversibility is measured, not trivially 1
    assert m["reversibility"]["n"] == len(records)
    assert m["diversity_gradient/ordered"]["chance"] == pytest.approx(1 / 6)


def test_oracle_scores_best_and_is_positive_on_every_kind(runs):
    m, records = runs["oracle-filter"]
    norm = _kinds(m, "constraint_following_norm@10")
    lifts = _kinds(m, "steering_lift@10")
    assert len(norm) >= 8 and set(norm) == set(lifts)
    assert all(v["value"] == 1.0 for v in norm.values())
    assert all(v["value"] > 0 and v["ci_low"] > 0 for v in lifts.values()), lifts
    assert m["preference_sensitivity@10"]["ci_low"] > 0
    assert m["steering_entropy_reduction"]["ci_low"] > 0
    # entropy reduction is never negative for a list that satisfies its request
    scores = [r["requests"][n]["scores"] for r in records for n in ("steer", "alt", "anchored") if r["requests"].get(n)]
    assert scores and all(sc["entropy_reduction_bits"] >= 0 for sc in scores)
    assert m["reversibility"]["value"] == 1.0 and m["reversibility"]["n"] > 0
    for other in ("popularity", "random", "shuffler"):
        o = runs[other][0]
        for name in ("constraint_following_norm@10", "steering_lift@10", "steering_entropy_reduction", "preference_sensitivity@10"):
            assert m[name]["value"] > o[name]["value"], (other, name)


def test_per_kind_chance_sits_beside_raw_constraint_following(runs):
    m, _ = runs["random"]
    raw = _kinds(m, "constraint_following@10")
    assert raw and all(v["chance"] is not None and 0 < v["chance"] < 1 for v in raw.values())
    # the headline puts every kind's own chance at 0, so trivial kinds (chance ~0.9) add nothing to noise
    easy = [kd for kd, v in raw.items() if v["chance"] > 0.8]
    assert easy and all(abs(_kinds(m, "constraint_following_norm@10")[kd]["value"]) < 0.5 for kd in easy)


def test_popularity_has_no_traceability_and_entropy_from_scores(small_spec, tmp_path):
    res, _ = _run("popularity", small_spec, tmp_path, "pop")
    m = res.metrics
    assert m["constraint_following@10"].chance is not None
    assert res.task.main_score == "constraint_following_norm@10" and m["constraint_following_norm@10"].value is not None
    assert m["steering_traceability"].value is None and "query_trace" in m["steering_traceability"].reason
    assert m["steering_entropy_reduction/scores"].value == 0.0
    assert "score_catalog" in res.extras["entropy_source"]


def test_oracle_filter_follows_every_constraint(small_spec, tmp_path):
    res, records = _run("oracle-filter", small_spec, tmp_path, "oracle")
    assert res.system.oracle
    per_kind = [k for k in res.metrics if k.startswith("constraint_following@")]
    assert per_kind and all(res.metrics[k].value == 1.0 for k in per_kind)
    assert res.metrics["constraint_following@10"].chance < 1.0
    assert res.metrics["constraint_following_norm@10"].value == 1.0
    assert res.extras["unknown_values"]["genre"]["count"] == 2


# -- literal utterances in steering files ------------------------------------------------

def test_literal_utterances_load_with_their_own_predicates(card, dataset):
    own = load_steering_file(FIX / "literal_utterances.yaml", card)
    by_text = {u.text: u for u in own.utterances}
    assert [u.kind for u in own.utterances] == ["include", "include", "exclude", "range_bin", "after", "before",
                                                "include_range", "include_exclude", "combined"]
    iv = ItemValues(card, dataset.items, dataset.item_ids)
    late80s = utterance_predicate(by_text["from the late eighties"], card)
    assert late80s == InRange(attribute="year", low=1985, high=1989)  # not a decade edge
    years = [iv[i].get("year") for i in dataset.item_ids if iv.satisfies(late80s, i)]
    assert years and min(years) == 1985 and max(years) == 1989
    after = utterance_predicate(by_text["after the moon landing"], card)
    assert after.low == 1969 and after.low_strict and not after.holds({"year": 1969.0}) and after.holds({"year": 1970.0})
    before = utterance_predicate(by_text["released before 1977"], card)
    assert before.holds({"year": 1976.0}) and not before.holds({"year": 1977.0})
    combo = utterance_predicate(by_text["a mid-nineties action film that isn't a thriller"], card)
    assert isinstance(combo, AllOf) and len(combo.parts) == 3
    assert by_text["a whodunit"].source == "study 1, participant 3"


@pytest.mark.parametrize("name,field,words", [
    ("unknown_value", "utterances.1.has.genre", "Did you mean 'Mystery'"),
    ("slot", "utterances.1.text", "slot"),
    ("empty_range", "utterances.1.range.year", "empty"),
    ("contradiction", "utterances.1", "both has and lacks"),
    ("ordinal_has", "utterances.1.has.year", "categorical"),
    ("no_predicate", "utterances.1", "no predicate"),
])
def test_broken_literal_utterance_gives_one_line_naming_file_and_field(card, name, field, words):
    path = FIX / f"broken_utterance_{name}.yaml"
    with pytest.raises(DataFormatError) as ei:
        load_steering_file(path, card)
    msg = str(ei.value)
    assert "\n" not in msg and str(path) in msg and field in msg and words in msg, msg


def test_run_scores_literal_utterances_on_the_steer_and_alternative_turns(small_spec, tmp_path, card, dataset):
    path = FIX / "literal_utterances.yaml"
    texts = {u.text for u in load_steering_file(path, card).utterances}
    res, records = _run("oracle-filter", small_spec, tmp_path, "literal", steering_file=path)
    assert res.status == "success" and records
    assert res.metrics["constraint_following@10"].value == 1.0
    lit = res.extras["phrasing_source"]["literal_utterances"]
    assert lit["count"] == len(texts) and lit["file"].endswith("literal_utterances.yaml")
    iv = ItemValues(card, dataset.items, dataset.item_ids)
    for r in records:
        steer, alt = r["requests"]["steer"], r["requests"]["alt"]
        assert steer["literal"] and steer["utterance"] in texts and alt["utterance"] in texts
        assert iv.satisfies(predicate_from_dict(steer["predicate"]), r["target"])  # consistent with the held-out item
        assert steer["predicate"] != alt["predicate"]
        assert r["requests"]["go_back"] == "scratch my last request"


def test_validate_checks_steering_files_against_the_card(capsys):
    from talkwalk_bench.cli import main

    assert main(["validate", str(FIX / "literal_utterances.yaml"), str(FIX / "own_phrasings.yaml")]) == 0
    assert main(["validate", str(FIX / "broken_utterance_unknown_value.yaml")]) == 1
    err = capsys.readouterr().err
    assert "utterances.1.has.genre" in err and "Mystery" in err
    assert main(["validate"]) == 0  # the built-in train and eval templates are checked by default
    assert "steering_eval.yaml" in capsys.readouterr().out


def test_families_that_ignore_a_steering_file_refuse_it(tmp_path):
    with pytest.raises(BenchError) as ei:
        run(RunConfig(system="popularity", task="ranking", output=tmp_path / "r.json", progress=False,
                      steering_file=FIX / "own_phrasings.yaml"))
    msg = str(ei.value)
    assert "does not read a steering file" in msg and "steerability" in msg and "\n" not in msg
    assert not (tmp_path / "r.json").exists()


def test_anchored_effects_leave_the_anchor_out_of_both_lists(runs, card, dataset):
    # "older than X" is never satisfied by X, and X was shown (turn 3 anchors on the go-back list,
    # which restores the neutral one): counting X in the neutral baseline would credit a system
    # that leaves X out with a lift it did not make. Both lists are compared without X, each
    # list's next item taking its place; constraint-following keeps the list as shown.
    iv = ItemValues(card, dataset.items, dataset.item_ids)
    _, records = runs["popularity"]
    checked = 0
    for r in records:
        req = r["requests"]["anchored"]
        if not req or req["predicate"].get("anchor") not in r["lists"]["neutral"]:
            continue
        anchor, p = req["predicate"]["anchor"], predicate_from_dict(req["predicate"])
        base = [i for i in r["lists"]["neutral"] + [r["next_items"]["neutral"]] if i != anchor][:10]
        assert len(base) == 10 and anchor not in base
        sc = req["scores"]
        assert sc["neutral_share@10"] == pytest.approx(sum(iv.satisfies(p, i) for i in base) / 10)
        assert sc["moved_share@10"] == sc["neutral_share@10"] and sc["entropy_reduction_bits"] == 0.0
        assert sc["share@10"] == pytest.approx(sum(iv.satisfies(p, i) for i in r["lists"]["anchored"]) / 10)
        checked += 1
    assert checked > 10
