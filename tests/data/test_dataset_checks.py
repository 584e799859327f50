"""Data that would give a quietly different experiment is refused unless allowed:
no timestamp, no interactions, interactions on unlisted items, other separators than tabs."""

from __future__ import annotations

import shutil

import pytest

from talkwalk_bench.data.atomic import read_atomic
from talkwalk_bench.data.dataset import load_dataset
from talkwalk_bench.errors import DataFormatError


@pytest.fixture
def copy(tmp_path, tiny_dataset):
    d = tmp_path / "tiny"
    shutil.copytree(tiny_dataset, d)
    return d


def _drop_column(path, name):
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    idx = next(i for i, h in enumerate(header) if h.startswith(name + ":"))
    path.write_text("\n".join("\t".join(c for i, c in enumerate(line.split("\t")) if i != idx) for line in lines) + "\n")


def test_missing_timestamp_is_an_error_unless_allowed(copy):
    _drop_column(copy / "tiny.inter", "timestamp")
    with pytest.raises(DataFormatError, match=r"tiny\.inter:1: no 'timestamp' field.*--allow-untimed"):
        load_dataset(str(copy))
    ds = load_dataset(str(copy), allow_untimed=True)
    assert ds.untimed and len(ds.interactions) > 0


def test_timed_data_is_not_marked_untimed(tiny_dataset):
    ds = load_dataset(str(tiny_dataset))
    assert not ds.untimed and ds.unknown_items == 0


def test_header_only_interaction_file_is_an_error(copy):
    inter = copy / "tiny.inter"
    inter.write_text(inter.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataFormatError, match="no interactions"):
        load_dataset(str(copy))


def test_items_missing_from_the_item_file_are_an_error_unless_allowed(copy):
    with (copy / "tiny.inter").open("a") as fh:
        fh.write("u1\tzz-unlisted\t3\t99\n")
    with pytest.raises(DataFormatError, match=r"1 item\(s\) in the interactions are not in tiny\.item \(e\.g\. 'zz-unlisted'\).*--allow-unknown-items"):
        load_dataset(str(copy))
    ds = load_dataset(str(copy), allow_unknown_items=True)
    assert ds.unknown_items == 1 and "zz-unlisted" in ds.item_ids


def test_without_an_item_file_the_catalog_is_the_interactions(copy):
    (copy / "tiny.item").unlink()
    ds = load_dataset(str(copy))
    assert ds.unknown_items == 0 and set(ds.item_ids) == set(ds.interactions.item_ids.tolist())


@pytest.mark.parametrize("text, fragment", [
    ("user_id:token,item_id:token,rating:float,timestamp:float\nu1,a,5,1\n", "header's fields are separated by ','"),
    ("user_id:token;item_id:token\nu1;a\n", "header's fields are separated by ';'"),
    ("user_id:token item_id:token\nu1 a\n", "header's fields are separated by spaces"),
    ("user_id:token\titem_id:token\tts:float\nu1,a,5\n", "found values separated by ','"),
])
def test_other_separators_get_the_tab_fix(tmp_path, text, fragment):
    p = tmp_path / "x.inter"
    p.write_text(text)
    with pytest.raises(DataFormatError) as info:
        read_atomic(p)
    msg = str(info.value)
    assert fragment in msg and "tab" in msg and "declare the column as token" not in msg


def test_a_token_seq_with_spaces_is_still_one_field(tmp_path):
    p = tmp_path / "x.item"
    p.write_text("item_id:token\ttitle:token_seq\na\tThe Big Film\n")
    assert read_atomic(p).columns["title"] == [("The", "Big", "Film")]
