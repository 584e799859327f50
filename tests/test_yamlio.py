"""YAML input: a key given twice is an error naming both lines, never a silent last-one-wins."""

from __future__ import annotations

import pytest

from talkwalk_bench.cli import main
from talkwalk_bench.errors import SpecError
from talkwalk_bench.yamlio import read_yaml


def test_duplicate_top_level_key_is_an_error(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("name: a\nfamily: ranking\nname: b\n")
    with pytest.raises(SpecError, match=r"t\.yaml:3:1: .*key 'name' appears twice \(first on line 1\)"):
        read_yaml(p)


def test_duplicate_nested_key_is_an_error(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("gate:\n  tolerance: 0.1\n  tolerance: 0.5\n")
    with pytest.raises(SpecError, match="'tolerance' appears twice"):
        read_yaml(p)


def test_distinct_keys_and_anchors_still_load(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\nlist: [1, 2]\n")
    assert read_yaml(p) == {"base": {"x": 1}, "other": {"x": 1, "y": 2}, "list": [1, 2]}


def test_validate_reports_a_duplicate_key_in_one_line(tmp_path, capsys):
    p = tmp_path / "dup.yaml"
    p.write_text("name: t\nfamily: ranking\nmain_score: nDCG@10\nname: u\n")
    assert main(["validate", str(p)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dup.yaml:4" in err[0] and "appears twice" in err[0]
