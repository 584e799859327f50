"""Generated malformed inputs (atomic files, task specs, suites, steering files, result files)
get a one-line BenchError: never a traceback of another kind, never a silent success."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from talkwalk_bench.data.atomic import read_atomic
from talkwalk_bench.data.dataset import load_dataset
from talkwalk_bench.errors import BenchError
from talkwalk_bench.results import read_result
from talkwalk_bench.steering.phrasings import load_steering_file
from talkwalk_bench.suite import load_suite
from talkwalk_bench.tasks.spec import load_spec_file

FIXTURES = Path(__file__).parent / "fixtures"
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# text that stresses parsers: separators, quotes, YAML and JSON syntax, non-ASCII, control characters
_chars = st.sampled_from(list("ab1 _-.:/\\\t,;|\"'{}[]#&*!%@`\n\r\x00é😀") + ["..", "NaN", "inf", "null", "~"])
junk = st.lists(_chars, max_size=30).map("".join)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                    junk, st.sampled_from(["ranking", "nDCG@10", "../../x", "", "a/b", "ml-100k"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.one_of(junk, st.sampled_from(["k", "name", "eval"])), inner, max_size=4)),
                      max_leaves=12)


def one_line_error(exc: BaseException) -> None:
    assert isinstance(exc, BenchError), f"{type(exc).__name__}: {exc}"
    msg = str(exc)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg


def _tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="tw-fuzz-"))


# ---------------------------------------------------------------- atomic files

FIELD = st.tuples(st.sampled_from(["user_id", "item_id", "rating", "timestamp", "x", "", "a b"]),
                  st.sampled_from(["token", "token_seq", "float", "float_seq", "int", ""]))


@SETTINGS
@given(fields=st.lists(FIELD, min_size=0, max_size=5), sep=st.sampled_from(["\t", ",", " ", ";", "|"]),
       rows=st.lists(st.lists(junk, max_size=6), max_size=6), row_sep=st.sampled_from(["\t", ",", " "]))
def test_generated_atomic_files_load_or_fail_in_one_line(fields, sep, rows, row_sep):
    d = _tmp()
    try:
        header = sep.join(f"{n}:{t}" if t else n for n, t in fields)
        body = "".join(row_sep.join(r) + "\n" for r in rows)
        p = d / "x.inter"
        p.write_text(header + "\n" + body, encoding="utf-8", newline="")
        try:
            table = read_atomic(p)
        except Exception as exc:  # noqa: BLE001 (the property is about every exception)
            one_line_error(exc)
            return
        # loaded: every row has every column, and the header was tab-separated typed fields
        assert all(len(col) == len(table) for col in table.columns.values())
        assert set(table.types.values()) <= {"token", "token_seq", "float", "float_seq"}
    finally:
        shutil.rmtree(d)


@SETTINGS
@given(data=st.data())
def test_generated_damage_to_a_dataset_folder_is_one_line(data):
    d = _tmp() / "tiny"
    shutil.copytree(FIXTURES / "tiny", d)
    try:
        name = data.draw(st.sampled_from(["tiny.inter", "tiny.item", "tiny.user"]))
        lines = (d / name).read_text().splitlines()
        op = data.draw(st.sampled_from(["drop_line", "replace_line", "truncate", "header_only", "bytes"]))
        i = data.draw(st.integers(0, len(lines) - 1))
        if op == "drop_line":
            del lines[i]
        elif op == "replace_line":
            lines[i] = data.draw(junk)
        elif op == "truncate":
            lines[i] = lines[i][: data.draw(st.integers(0, max(0, len(lines[i]) - 1)))]
        elif op == "header_only":
            lines = lines[:1]
        text = "\n".join(lines) + "\n"
        if op == "bytes":
            (d / name).write_bytes(text.encode() + data.draw(st.binary(min_size=1, max_size=8)))
        else:
            (d / name).write_text(text)
        try:
            ds = load_dataset(str(d))
        except Exception as exc:  # noqa: BLE001
            one_line_error(exc)
            return
        # a load that succeeds is a usable dataset, never an empty or silently re-ordered one
        assert len(ds.interactions) > 0 and ds.n_users > 0 and ds.n_items > 0 and not ds.untimed
        assert set(ds.interactions.item_ids.tolist()) <= set(ds.item_ids)
    finally:
        shutil.rmtree(d.parent)


# ---------------------------------------------------------------- specs and suites

SPEC_KEYS = ["name", "version", "description", "family", "dataset", "split", "k", "metrics", "main_score", "episodes",
             "batch_size", "bootstrap", "gate", "include", "colour"]


VALID_SPEC = {"name": "t", "family": "ranking", "main_score": "nDCG@10", "k": [10], "metrics": ["nDCG"]}
VALID_SUITE = {"name": "s", "seeds": [0], "runs": [{"task": "ranking", "systems": ["popularity"]}]}


def _mutated(base: dict, keys: list[str]):
    """A valid document with a few keys replaced by generated values or removed."""
    return st.dictionaries(st.sampled_from(keys), st.one_of(values, st.just("<drop>")), max_size=3).map(
        lambda over: {k: v for k, v in {**base, **over}.items() if v != "<drop>"})


@SETTINGS
@given(spec=st.one_of(_mutated(VALID_SPEC, SPEC_KEYS), st.dictionaries(st.sampled_from(SPEC_KEYS), values, max_size=8)),
       raw=st.one_of(st.none(), st.none(), junk))
def test_generated_task_specs_validate_or_fail_in_one_line(spec, raw):
    d = _tmp()
    try:
        p = d / "spec.yaml"
        p.write_text(raw if raw is not None else yaml.safe_dump(spec, allow_unicode=True))
        try:
            s = load_spec_file(p)
        except Exception as exc:  # noqa: BLE001
            one_line_error(exc)
            return
        # a spec that loads names a safe file name and positive cutoffs
        assert "/" not in s.name and "\\" not in s.name and not s.name.startswith(".") and all(k >= 1 for k in s.k)
    finally:
        shutil.rmtree(d)


SUITE_KEYS = ["name", "description", "dataset", "seeds", "runs", "extra"]
RUN_KEYS = ["task", "systems", "system_args", "extra"]


@SETTINGS
@given(suite=st.one_of(_mutated(VALID_SUITE, SUITE_KEYS),
                       _mutated(VALID_SUITE["runs"][0], RUN_KEYS).map(lambda r: {**VALID_SUITE, "runs": [r]}),
                       st.dictionaries(st.sampled_from(SUITE_KEYS), values, max_size=5)))
def test_generated_suites_validate_or_fail_in_one_line(suite):
    d = _tmp()
    try:
        p = d / "suite.yaml"
        p.write_text(yaml.safe_dump(suite, allow_unicode=True))
        try:
            s = load_suite(str(p))
        except Exception as exc:  # noqa: BLE001
            one_line_error(exc)
            return
        assert "/" not in s.name and not s.name.startswith(".") and all(0 <= x < 2**32 for x in s.seeds)
        for r in s.runs:
            assert "/" not in r.task_dir and not r.task_dir.startswith(".")
            assert all("/" not in x and not x.startswith(".") for x in r.systems)
    finally:
        shutil.rmtree(d)


def test_a_duplicate_key_in_a_spec_is_no_success(tmp_path):
    p = tmp_path / "spec.yaml"
    p.write_text("name: a\nfamily: ranking\nmain_score: nDCG@10\nname: b\n")
    with pytest.raises(BenchError) as info:
        load_spec_file(p)
    one_line_error(info.value)


# ---------------------------------------------------------------- steering files

KINDS = ["include", "exclude", "range_bin", "include_range", "include_exclude", "before", "after", "neutral", "inclde"]
phrasing = st.one_of(junk, st.sampled_from(["a {value} film", "before {year}", "{value} but not {other}", "{colour}", "", "{"]))


@SETTINGS
@given(doc=st.fixed_dictionaries({}, optional={
    "version": st.one_of(st.just(1), scalars),
    "description": scalars,
    "templates": st.one_of(values, st.dictionaries(st.sampled_from(KINDS), st.dictionaries(
        st.sampled_from(["train", "eval", "test"]), st.one_of(st.lists(phrasing, max_size=3), scalars), max_size=2), max_size=3)),
    "utterances": st.one_of(values, st.lists(st.dictionaries(st.sampled_from(["text", "has", "lacks", "ranges", "kind"]), values, max_size=3), max_size=2)),
}))
def test_generated_steering_files_load_or_fail_in_one_line(doc):
    d = _tmp()
    try:
        p = d / "steer.yaml"
        p.write_text(yaml.safe_dump(doc, allow_unicode=True))
        try:
            load_steering_file(p)
        except Exception as exc:  # noqa: BLE001
            one_line_error(exc)
    finally:
        shutil.rmtree(d)


# ---------------------------------------------------------------- result files

@pytest.fixture(scope="module")
def good_result(tmp_path_factory) -> dict:
    from talkwalk_bench.tasks.runner import RunConfig, run

    out = tmp_path_factory.mktemp("good") / "r.json"
    run(RunConfig(system="popularity", task="ranking", dataset=str(FIXTURES / "tiny"), output=out, progress=False))
    return json.loads(out.read_text())


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_generated_result_files_read_or_fail_in_one_line(good_result, data):
    doc = json.loads(json.dumps(good_result))
    paths = [p for p in _paths(doc) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = doc
        try:
            for k in path[:-1]:
                parent = parent[k]
            if data.draw(st.booleans()):
                parent[path[-1]] = data.draw(values)
            elif isinstance(parent, dict):
                parent.pop(path[-1], None)
        except (KeyError, IndexError, TypeError):
            continue
    text = data.draw(st.sampled_from(["json", "truncated", "top"]))
    raw = json.dumps(doc, allow_nan=True)
    if text == "truncated":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif text == "top":
        raw = json.dumps(data.draw(values), allow_nan=True)
    d = _tmp()
    try:
        p = d / "r.json"
        p.write_text(raw)
        try:
            res = read_result(p)
        except Exception as exc:  # noqa: BLE001
            one_line_error(exc)
            return
        # read: no metric that a leaderboard or gate could mistake for a number
        for m in res.metrics.values():
            assert m.value is None or math.isfinite(m.value)
    finally:
        shutil.rmtree(d)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, "NaN", "Infinity", "-inf"]), values), data=st.data())
def test_generated_metric_values_are_numbers_or_invalid(good_result, value, data):
    doc = json.loads(json.dumps(good_result))
    name = data.draw(st.sampled_from(sorted(doc["metrics"])))
    field = data.draw(st.sampled_from(["value", "ci_low", "ci_high", "chance"]))
    doc["metrics"][name][field] = value
    d = _tmp()
    try:
        p = d / "r.json"
        p.write_text(json.dumps(doc, allow_nan=True))
        try:
            res = read_result(p)
        except Exception as exc:  # noqa: BLE001
            one_line_error(exc)
            return
        m = res.metrics[name]
        for v in (m.value, m.ci_low, m.ci_high, m.chance):
            assert v is None or math.isfinite(v)
        if field == "value" and isinstance(value, float | str) and str(value).lower().lstrip("-") in ("nan", "inf", "infinity"):
            assert m.invalid and "not a finite number" in m.reason
    finally:
        shutil.rmtree(d)


@SETTINGS
@given(key=st.sampled_from(["schema_version", "status", "run_id", "system", "task", "dataset", "seed"]))
def test_a_result_missing_a_required_field_is_no_success(good_result, key):
    doc = dict(good_result)
    doc.pop(key)
    assume(doc)
    d = _tmp()
    try:
        p = d / "r.json"
        p.write_text(json.dumps(doc))
        with pytest.raises(BenchError) as info:
            read_result(p)
        one_line_error(info.value)
    finally:
        shutil.rmtree(d)
