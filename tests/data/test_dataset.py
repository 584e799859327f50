"""Datasets, the bundled ml-100k, its card, and the time-ordered leave-one-out split."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from talkwalk_bench.data import leave_one_out, load_card, load_dataset
from talkwalk_bench.data.card import DatasetCard
from talkwalk_bench.errors import DataFormatError, UnknownNameError
from talkwalk_bench.yamlio import validate


def test_tiny_split_semantics(tiny_dataset):
    ds = load_dataset(str(tiny_dataset))
    assert ds.name == "tiny" and ds.n_users == 4
    assert ds.item_ids[-1] == "g"  # items with metadata but no interaction stay in the catalog
    split = leave_one_out(ds)
    assert split.sequences["u1"] == ("a", "b", "c", "d")
    assert split.train_sequences["u1"] == ("a", "b") and split.valid_item["u1"] == "c" and split.test_item["u1"] == "d"
    # equal timestamps keep file order: b before a
    assert split.sequences["u3"] == ("b", "a", "f")
    # two interactions: no validation item, one test item (RecBole's rule)
    assert "u4" not in split.valid_item and split.test_item["u4"] == "b" and split.train_sequences["u4"] == ("a",)
    assert split.history("u1", "test") == ("a", "b", "c")
    assert split.history("u1", "valid") == ("a", "b")
    assert len(split.train) + len(split.valid) + len(split.test) == len(ds.interactions)


def test_ml100k_bundled_copy():
    ds = load_dataset("ml-100k")
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (943, 1682, 100000)
    assert len(ds.fingerprint) == 16
    split = leave_one_out(ds)
    assert len(split.test) == 943 and len(split.valid) == 943


def test_fingerprint_changes_with_content(tiny_dataset, tmp_path):
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_dataset, copy)
    before = load_dataset(str(copy)).fingerprint
    with (copy / "tiny.inter").open("a") as fh:
        fh.write("u4\tc\t1\t9\n")
    from talkwalk_bench.data.dataset import _load

    _load.cache_clear()
    assert load_dataset(str(copy)).fingerprint != before


def test_bundled_dataset_found_without_importing_recbole():
    code = "import sys; from talkwalk_bench.data import load_dataset; load_dataset('ml-100k'); print('recbole' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_dataset_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean 'ml-100k'"):
        load_dataset("ml-100")


def test_ml100k_card_covers_every_value():
    ds = load_dataset("ml-100k")
    card = load_card("ml-100k")
    card.check_against(ds.item_types, ds.user_types, "card")
    genre = card.item.attributes["genre"]
    seen = set().union(*(genre.value_of(row) for row in ds.items.values()))
    assert seen <= set(genre.values), seen - set(genre.values)
    occ = card.user.attributes["occupation"]
    assert {row["occupation"] for row in ds.users.values()} <= set(occ.values)
    year = card.item.attributes["year"]
    years = [year.value_of(r) for r in ds.items.values()]
    binned = [y for y in years if year.bin_of(y) is not None]
    assert len(binned) >= len(ds.items) - 3  # only the "unknown" years lack a bin
    text = card.item.describe(ds.items["1"])
    assert "comedy" in text.lower() and "1990s" in text


def test_card_unknown_key_is_one_line_error(tmp_path):
    with pytest.raises(DataFormatError, match=r"card.yaml: item.attributes.genre.colour: unknown key"):
        validate(DatasetCard, {"dataset": "x", "item": {"id_field": "item_id", "attributes": {"genre": {"field": "class", "kind": "categorical", "description": "g", "colour": 1}}}}, tmp_path / "card.yaml", DataFormatError)


def test_card_field_must_exist(tiny_dataset):
    card = load_card("ml-100k")
    with pytest.raises(DataFormatError, match="is not a column"):
        card.check_against({"title": "token_seq"}, {}, "ml-100k.yaml")
