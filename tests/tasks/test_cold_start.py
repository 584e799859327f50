"""Cold start: what fit sees (withheld users and items really absent) and what requests carry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from talkwalk_bench.data.dataset import load_dataset
from talkwalk_bench.results import episodes_path, read_episodes
from talkwalk_bench.tasks.base import FAMILIES, TaskContext
from talkwalk_bench.tasks.runner import RunConfig, run
from talkwalk_bench.tasks.spec import load_spec


def _family(seed: int = 0, **episodes):
    spec, path = load_spec("cold_start")
    if episodes:
        spec = spec.model_copy(update={"episodes": {**spec.episodes, **episodes}})
    cls = FAMILIES.get(spec.family)
    ctx = TaskContext(spec=spec, params=cls.parse_params(spec, path), dataset=load_dataset(spec.dataset), seed=seed)
    return cls(ctx)


@pytest.fixture(scope="module")
def family():
    return _family()


def test_withheld_items_are_ten_percent_of_the_catalog_and_stay_in_it(family):
    ds = family.ctx.dataset
    new_items = family.cold.new_items
    assert len(new_items) == round(0.1 * ds.n_items)
    data = family.train_data()
    assert set(data.item_ids) == set(ds.item_ids)
    assert all(i in data.items and data.items[i] for i in new_items)  # metadata kept


def test_train_data_holds_no_new_item_and_no_new_user(family):
    data = family.train_data()
    c = family.cold
    for inter in (data.train, data.valid):
        assert not set(inter.item_ids.tolist()) & c.new_items
        assert not set(inter.user_ids.tolist()) & c.new_users
    base = family.ctx.split.train_data()
    # exactly those interactions are gone, nothing else
    removed = sum(1 for u, i in zip(base.train.user_ids.tolist(), base.train.item_ids.tolist(), strict=True)
                  if u in c.new_users or i in c.new_items)
    assert removed > 0 and len(data.train) == len(base.train) - removed
    assert data.key != base.key


def test_new_users_are_a_tenth_of_users_and_disjoint_from_new_item_episodes(family):
    c = family.cold
    assert len(c.new_users) == round(0.1 * family.ctx.dataset.n_users)
    eps = family.episodes()
    by_kind = {k: [e for e in eps if e.data["kind"] == k] for k in ("new_users", "new_items")}
    assert {e.user_id for e in by_kind["new_users"]} == set(c.new_users)
    assert by_kind["new_items"] and all(e.data["targets"][0] in c.new_items for e in by_kind["new_items"])
    assert not {e.user_id for e in by_kind["new_items"]} & c.new_users
    assert all(e.data["targets"][0] not in c.new_items for e in by_kind["new_users"])


def test_requests_carry_metadata_only_for_new_users_and_no_new_item_history(family):
    for ep in family.episodes():
        req = family.request(ep)
        assert req.user == family.ctx.dataset.users[ep.user_id]
        if ep.data["kind"] == "new_users":
            assert req.history == () and req.exclude == frozenset() and req.conversation == ()
        else:
            assert req.history and not set(req.history) & family.cold.new_items
            assert ep.data["targets"][0] not in req.exclude


def test_same_seed_same_sets_other_seed_other_sets(family):
    again = _family(0)
    assert again.cold == family.cold
    assert [e.id for e in again.episodes()] == [e.id for e in family.episodes()]
    assert _family(1).cold.new_items != family.cold.new_items


def test_kinds_select_what_is_withheld():
    users_only = _family(kinds=["new_users"])
    assert users_only.cold.new_items == frozenset() and users_only.cold.new_users
    assert {e.data["kind"] for e in users_only.episodes()} == {"new_users"}


def test_runner_fits_on_the_cold_split_and_scores_both_kinds(tmp_path: Path, monkeypatch):
    from systems.baselines import Popularity

    seen = {}
    original = Popularity.fit

    def spy(self, data, *, seed):
        seen["data"] = data
        return original(self, data, seed=seed)

    monkeypatch.setattr(Popularity, "fit", spy)
    out = tmp_path / "cold.json"
    result = run(RunConfig(system="popularity", task="cold_start", output=out, progress=False))
    assert result.status == "success"
    extras = json.loads(out.read_text())["extras"]
    new_items, new_users = set(extras["new_items"]), set(extras["new_users"])
    data = seen["data"]
    assert not set(data.train.item_ids.tolist()) & new_items
    assert not set(data.train.user_ids.tolist()) & new_users
    assert not set(data.valid.item_ids.tolist()) & new_items
    for name in ("new_users/Hit@10", "new_users/nDCG@10", "new_items/Hit@10", "new_items/nDCG@10"):
        assert result.metrics[name].n > 0
    # popularity never saw the new items, so they rank below every trained item
    records = read_episodes(episodes_path(out))
    assert all(not set(r["ranked"]) & new_items for r in records if r["kind"] == "new_items")
    assert result.metrics["new_items/Hit@10"].value == 0.0


def test_a_new_users_targets_are_all_their_items_or_the_held_out_one(family):
    split, c = family.ctx.split, family.cold
    assert family.params.new_user_targets == "all"  # the shipped spec
    held_only = _family(new_user_targets="held_out")
    one = {e.user_id: e.data["targets"] for e in held_only.episodes() if e.data["kind"] == "new_users"}
    for ep in (e for e in family.episodes() if e.data["kind"] == "new_users"):
        t = ep.data["targets"]
        want = [i for i in split.history(ep.user_id, "test") if i not in c.new_items] + [family.held[ep.user_id]]
        assert t == list(dict.fromkeys(want)) and len(t) > 1
        assert t[-1] == family.held[ep.user_id] and one[ep.user_id] == [t[-1]]
        assert not set(t) & c.new_items
    # new-item episodes keep their one held-out item either way
    assert all(len(e.data["targets"]) == 1 for e in family.episodes() if e.data["kind"] == "new_items")


def test_chance_of_a_hit_counts_every_target():
    from talkwalk_bench.tasks.cold_start import _chance_hit

    assert _chance_hit(10, 1000, 1) == pytest.approx(0.01)
    assert _chance_hit(10, 1000, 0) == 0.0 and _chance_hit(10, 12, 3) == 1.0
    # P(no target among 2 draws from 4 with 2 targets) = (2/4) * (1/3)
    assert _chance_hit(2, 4, 2) == pytest.approx(1 - 1 / 6)


def test_a_bad_new_user_targets_value_is_one_line_naming_the_field(tmp_path, capsys):
    from talkwalk_bench.cli import main

    text = (Path(__file__).resolve().parents[2] / "tasks" / "cold_start.yaml").read_text()
    assert "new_user_targets: all" in text
    (tmp_path / "cs.yaml").write_text(text.replace("new_user_targets: all", "new_user_targets: everything"))
    assert main(["validate", str(tmp_path / "cs.yaml")]) == 1
    err = capsys.readouterr().err.strip()
    assert "new_user_targets" in err and "held_out" in err and "all" in err


def test_a_random_list_finds_new_users_items_at_the_chance_rate(tmp_path: Path):
    # noise scores chance: Precision@10 of random lists sits at the share of the catalog that is a target
    out = tmp_path / "cold.json"
    result = run(RunConfig(system="random", task="cold_start", output=out, progress=False))
    m = result.metrics["new_users/Precision@10"]
    chance = m.chance
    assert m.ci_low <= chance <= m.ci_high and abs(m.value - chance) < 0.02
