"""Names from specs and suites become file names: they cannot climb out of the output folder."""

from __future__ import annotations

import pytest

from talkwalk_bench.cli import main
from talkwalk_bench.errors import BenchError, SpecError
from talkwalk_bench.paths import inside, safe_name
from talkwalk_bench.suite import load_suite
from talkwalk_bench.tasks.spec import load_spec_file


@pytest.mark.parametrize("name", ["../../../X", "a/b", "..", ".hidden", "", "a\\b", "x\ny"])
def test_unsafe_names_are_refused(name):
    with pytest.raises(ValueError, match="file name"):
        safe_name(name, "task name")


@pytest.mark.parametrize("name", ["ranking", "cold_start", "my-task.v2", "Ünïcode"])
def test_ordinary_names_pass(name):
    assert safe_name(name, "task name") == name


def test_inside_refuses_paths_that_climb_out(tmp_path):
    assert inside(tmp_path / "a" / "b.json", tmp_path) == tmp_path / "a" / "b.json"
    with pytest.raises(BenchError, match="outside"):
        inside(tmp_path / "a" / ".." / ".." / "b.json", tmp_path)


def test_task_spec_name_with_separators_is_a_spec_error(tmp_path):
    spec = tmp_path / "evil.yaml"
    spec.write_text("name: ../../../X\nfamily: ranking\nmain_score: nDCG@10\n")
    with pytest.raises(SpecError, match=r"evil\.yaml: name: .*used as a file name"):
        load_spec_file(spec)


@pytest.mark.parametrize("field, text", [
    ("name", "name: ../../../X\nruns: [{task: ranking, systems: [popularity]}]\n"),
    ("task", "name: s\nruns: [{task: ../../x, systems: [popularity]}]\n"),
    ("systems", "name: s\nruns: [{task: ranking, systems: [../pop]}]\n"),
    ("seeds", "name: s\nseeds: [-1]\nruns: [{task: ranking, systems: [popularity]}]\n"),
    ("runs.0.seeds", "name: s\nruns: [{task: ranking, systems: [popularity], seeds: []}]\n"),
])
def test_suite_names_and_seeds_are_checked(tmp_path, field, text):
    p = tmp_path / "suite.yaml"
    p.write_text(text)
    with pytest.raises(SpecError, match=field):
        load_suite(str(p))


def test_suite_with_escaping_name_writes_nothing_outside(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    p = work / "suite.yaml"
    p.write_text("name: ../../escaped\nruns: [{task: ranking, systems: [popularity]}]\n")
    assert main(["suite", str(p), "--no-progress"]) == 2
    assert "file name" in capsys.readouterr().err
    assert not any(tmp_path.rglob("*.json"))
