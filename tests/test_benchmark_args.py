"""Benchmark scripts refuse a malformed argument with one line that says what was expected."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_decode_sweep_settings_parse_with_the_systems_beam_as_default():
    sweep = _load("semid_decode_sweep")
    assert sweep.parse_setting("5:12", default_beam=20) == (5.0, 12, 0, 20)
    assert sweep.parse_setting("1:50:0:50", default_beam=20) == (1.0, 50, 0, 50)


@pytest.mark.parametrize("bad", ["5", "5:x", "5:12:1:40:9", "a:12:1"])
def test_decode_sweep_refuses_a_malformed_setting_in_one_line(bad):
    sweep = _load("semid_decode_sweep")
    with pytest.raises(ValueError) as e:
        sweep.parse_setting(bad, default_beam=20)
    msg = str(e.value)
    assert "\n" not in msg and repr(bad) in msg and "mix:history[:lm_levels[:beam]]" in msg


def test_the_parse_check_counts_what_the_head_sets_aside_among_right_and_wrong_readings():
    parse = _load("semid_constraint_parse")
    table = parse.markdown_aside({"after": [(1, 0), (0, 1), (0, 0), (1, 0)], "include": [(1, 1)]})
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    assert rows["after"] == "| after | 2 | 0 (0.000) | 2 | 1 (0.500) |"
    assert rows["include"] == "| include | 1 | 1 (1.000) | 0 | - |"
    assert rows["all"] == "| all | 3 | 1 (0.333) | 2 | 1 (0.500) |"


def test_the_dating_check_scores_every_event_on_a_tiny_llm(tmp_path):
    pytest.importorskip("transformers")
    from systems.semid.tiny import save_tiny

    dating = _load("semid_dating")
    out = tmp_path / "dating.md"
    assert dating.main(["--base-model", str(save_tiny(tmp_path / "base")), "--newest", "1998", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| the ")]
    assert len(rows) == len(dating.EVENTS)
    assert all(1800 <= int(line.split(" | ")[2]) <= 1998 for line in rows)  # a year the systems could take
    counts = out.read_text().splitlines()[-1]
    assert sum(int(n) for n in re.findall(r": (\d+)", counts)) == len(dating.EVENTS)


@pytest.mark.parametrize("bad", ["1", "0", "two"])
def test_tiger_ensemble_refuses_fewer_than_two_members_in_one_line(bad, capsys):
    ens = _load("semid_tiger_ensemble")
    assert ens.parse_members("3") == 3
    with pytest.raises(SystemExit):
        ens.main(["--members", bad])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert repr(bad) in err and "2 or more" in err


def test_tiger_ensemble_mixture_is_the_log_of_the_members_mean_distribution():
    ens = _load("semid_tiger_ensemble")
    a = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])) + 3.0  # unnormalised scores
    b = np.log(np.array([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]]))
    want = np.log((np.exp(a - 3.0) + np.exp(b)) / 2)
    assert np.allclose(ens.mixture([a, b]), want)


@pytest.mark.parametrize("bad", ["1", "0", "three"])
def test_tiger_teachers_refuses_fewer_than_two_draws_in_one_line(bad, capsys):
    bench = _load("semid_tiger_teachers")
    assert bench.parse_teachers("3") == 3
    with pytest.raises(SystemExit):
        bench.main(["--teachers", bad])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert repr(bad) in err and "2 or more" in err


class _Fixed:
    def __init__(self, item_ids, scores):
        self.item_ids, self.scores = tuple(item_ids), np.asarray(scores, dtype=np.float64)

    def score_catalog(self, requests):
        return np.tile(self.scores, (len(requests), 1))


def test_mean_teacher_is_the_mixture_of_its_draws_and_refuses_other_catalogs():
    bench = _load("semid_tiger_teachers")
    a, b = _Fixed("xyz", [2.0, 0.0, -1.0]), _Fixed("xyz", [-3.0, 1.0, 0.5])
    got = np.exp(bench.MeanTeacher([a, b]).score_catalog([object(), object()]))
    soft = [np.exp(s.scores) / np.exp(s.scores).sum() for s in (a, b)]
    assert got.shape == (2, 3) and np.allclose(got, (soft[0] + soft[1]) / 2)
    with pytest.raises(ValueError, match="catalogs differ"):
        bench.MeanTeacher([a, _Fixed("xyw", [0.0, 0.0, 0.0])])
