"""Atomic-file reader: typed columns, and one-line errors that name file, line and column."""

from __future__ import annotations

import math

import pytest

from talkwalk_bench.data.atomic import read_atomic, write_atomic
from talkwalk_bench.errors import DataFormatError


def _write(tmp_path, text, name="x.inter"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_reads_every_type(tmp_path):
    p = _write(tmp_path, "id:token\ttags:token_seq\tscore:float\tvec:float_seq\n7\ta b\t1.5\t0.1 0.2\n8\t\t\t\n")
    t = read_atomic(p)
    assert t.types == {"id": "token", "tags": "token_seq", "score": "float", "vec": "float_seq"}
    assert t.columns["id"] == ["7", "8"]
    assert t.columns["tags"] == [("a", "b"), ()]
    assert t.columns["score"][0] == 1.5 and math.isnan(t.columns["score"][1])
    assert t.columns["vec"] == [(0.1, 0.2), ()]


def test_roundtrip(tmp_path):
    types = {"id": "token", "tags": "token_seq", "score": "float"}
    rows = [{"id": "1", "tags": ("x", "y"), "score": 2.0}, {"id": "2", "tags": (), "score": 0.5}]
    write_atomic(tmp_path / "r.item", types, rows)
    assert read_atomic(tmp_path / "r.item").rows() == rows


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("user_id:token\titem_id:token\nu1\ti1\nu2\n", ":3: expected 2 tab-separated columns, found 1"),
        ("user_id:token\trating:number\nu1\t3\n", ":1: column 2 ('rating') has unknown type 'number'"),
        ("user_id\titem_id:token\nu1\ti1\n", ":1: column 1 header 'user_id' is not 'name:type'"),
        ("user_id:token\trating:float\nu1\tfive\n", ":2: column 2 ('rating', float) holds 'five'"),
        ("", ":1: empty file"),
    ],
)
def test_malformed_files_name_file_line_and_column(tmp_path, text, fragment):
    p = _write(tmp_path, text)
    with pytest.raises(DataFormatError) as err:
        read_atomic(p)
    msg = str(err.value)
    assert str(p) in msg and fragment in msg and "\n" not in msg


def test_missing_required_field(tmp_path):
    p = _write(tmp_path, "user:token\titem_id:token\nu\ti\n")
    with pytest.raises(DataFormatError, match="required field 'user_id' is missing"):
        read_atomic(p, required=("user_id", "item_id"))


def test_not_utf8(tmp_path):
    p = tmp_path / "bad.inter"
    p.write_bytes(b"user_id:token\n\xff\xfe\n")
    with pytest.raises(DataFormatError, match="not UTF-8"):
        read_atomic(p)
