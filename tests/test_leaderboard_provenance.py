"""Leaderboard rows against the current code (stale, mixed, dirty, ``--check``) and honest multi-seed cells."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from talkwalk_bench import leaderboard as lb
from talkwalk_bench import provenance as pv
from talkwalk_bench.cli import main
from talkwalk_bench.errors import ResultFileError
from talkwalk_bench.registry import SYSTEMS
from talkwalk_bench.results import Result, episodes_path, write_result
from talkwalk_bench.tasks.base import FAMILIES
from talkwalk_bench.tasks.runner import RunConfig, run

ROOT = pv.project_root()
SYSTEMS_UNDER_TEST = ("popularity", "sasrec", "sasrec-filter", "contrastive")


def _result(system: str, seed: int, values: list[float] | None, *, provenance=None, metric="nDCG@10") -> Result:
    v = float(np.mean(values)) if values else 0.5
    return Result.model_validate({
        "status": "success", "run_id": f"{system}{seed}", "created_at": "2026-01-01T00:00:00+00:00", "seed": seed,
        "system": {"name": system}, "dataset": {"name": "d", "fingerprint": "f", "n_users": 1, "n_items": 1, "n_interactions": 1},
        "task": {"name": "ranking", "version": 1, "family": "ranking", "spec_hash": "h", "main_score": metric},
        "protocol": {}, "env": {}, "metrics": {metric: {"value": v, "ci_low": v - 0.01, "ci_high": v + 0.01, "n": len(values or [1])}},
        "n_episodes": len(values or []), "provenance": provenance})


def _write(folder: Path, res: Result, values: list[float] | None, metric="nDCG@10", name=None) -> Path:
    path = folder / (name or f"{res.system.name}__d__seed{res.seed}.json")
    folder.mkdir(parents=True, exist_ok=True)
    write_result(path, res)
    if values is not None:
        episodes_path(path).write_text("".join(json.dumps({"episode": f"e{i}", "status": "ok", "metrics": {metric: x}}) + "\n"
                                               for i, x in enumerate(values)))
    return path


@pytest.fixture(scope="module")
def fingerprints():
    fam = FAMILIES.get("ranking").__module__
    return {s: pv.fingerprint(family_module=fam, system_factory=SYSTEMS.get(s), spec_path=ROOT / "tasks/ranking.yaml",
                              card_path=ROOT / "tasks/cards/ml-100k.yaml", steering_file=None, dataset_fingerprint="f")
            for s in SYSTEMS_UNDER_TEST}


@pytest.fixture
def tree(tmp_path, fingerprints):
    """A copy of every fingerprinted file, to edit without touching the real tree."""
    root = tmp_path / "tree"
    for fp in fingerprints.values():
        for rel in fp["files"]:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, root / rel)
    return root


def _board(tmp_path, fingerprints, root):
    files = [_write(tmp_path / "res", _result(s, 0, [0.1, 0.2, 0.3], provenance=fp), [0.1, 0.2, 0.3])
             for s, fp in fingerprints.items()]
    results, _ = lb.collect(files)
    (board,) = lb.build(results, root=root)
    return {r.system: r for r in board.rows}


def _edit_one_line(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    i = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith(("#", '"""')))
    lines[i] = lines[i].rstrip("\n") + "  # edited\n"
    path.write_text("".join(lines))


def test_unchanged_tree_has_no_stale_rows(tmp_path, fingerprints, tree):
    rows = _board(tmp_path, fingerprints, tree)
    assert {s: r.marks for s, r in rows.items() if r.stale or r.mixed} == {}


@pytest.mark.parametrize(("edited", "stale"), [
    ("systems/keyword_filter.py", {"sasrec-filter"}),
    ("systems/sasrec/filter.py", {"sasrec-filter"}),
    ("systems/sasrec/model.py", {"sasrec", "sasrec-filter"}),  # the filter pipeline ranks with SASRec's model
    ("systems/baselines.py", {"popularity"}),
    ("systems/contrastive/system.py", {"contrastive"}),
    ("talkwalk_bench/metrics/ranking.py", set(SYSTEMS_UNDER_TEST)),  # the harness's scoring: every row
])
def test_editing_one_line_makes_exactly_that_systems_rows_stale(tmp_path, fingerprints, tree, edited, stale):
    _edit_one_line(tree / edited)
    rows = _board(tmp_path, fingerprints, tree)
    assert {s for s, r in rows.items() if r.stale} == stale
    for s in stale:
        assert rows[s].stale_files == [edited] and edited in rows[s].stale
        assert any(edited in what for _, what in rows[s].problems)


def test_marks_show_in_every_format(tmp_path, fingerprints, tree):
    _edit_one_line(tree / "systems/baselines.py")
    files = [_write(tmp_path / "res", _result(s, 0, [0.1, 0.2], provenance=fp), [0.1, 0.2]) for s, fp in fingerprints.items()]
    boards = lb.build(lb.collect(files)[0], root=tree)
    md = lb.to_markdown(boards)
    assert "| popularity **stale** |" in md and "changed: systems/baselines.py): popularity." in md
    rows = json.loads(lb.to_json(boards))[0]["rows"]
    assert {r["system"]: r["stale_files"] for r in rows}["popularity"] == ["systems/baselines.py"]
    assert "stale" in lb.to_csv(boards).splitlines()[0].split(",")
    html = lb.to_html(boards)
    assert 'title="stale: changed: systems/baselines.py">stale</span>' in html


def test_result_without_provenance_is_stale(tmp_path):
    path = _write(tmp_path, _result("popularity", 0, [0.1, 0.2]), [0.1, 0.2])
    (board,) = lb.build(lb.collect([path])[0])
    assert board.rows[0].stale == "no code fingerprint"


def test_mixed_and_dirty_rows(tmp_path, fingerprints, tree):
    fp = fingerprints["popularity"]
    # made by code that read one more (unchanged) file: current, but not the same code as seed 0's
    (tree / "extra.py").write_text("x = 1\n")
    other = {**fp, "files": {**fp["files"], "extra.py": pv.file_hash(tree / "extra.py")}}
    other["code_hash"] = pv.combined_hash(other["files"])
    dirty = {**fp, "dirty_files": ["systems/baselines.py"]}
    files = [_write(tmp_path, _result("popularity", 0, [0.1, 0.3], provenance=fp), [0.1, 0.3]),
             _write(tmp_path, _result("popularity", 1, [0.2, 0.2], provenance=other), [0.2, 0.2]),
             _write(tmp_path, _result("random", 0, [0.1, 0.1], provenance=dirty), [0.1, 0.1])]
    rows = {r.system: r for r in lb.build(lb.collect(files)[0], root=tree)[0].rows}
    assert rows["popularity"].mixed and not rows["popularity"].stale
    assert rows["random"].dirty == ["systems/baselines.py"] and rows["random"].marks == ["dirty"]


def test_check_exits_nonzero_on_stale_and_zero_when_current(tmp_path, fingerprints, tree, monkeypatch, capsys):
    monkeypatch.setattr(pv, "project_root", lambda: tree)
    clean = {**fingerprints["popularity"], "dirty_files": []}
    path = _write(tmp_path / "res", _result("popularity", 0, [0.1, 0.2], provenance=clean), [0.1, 0.2])
    assert main(["leaderboard", "--check", str(tmp_path / "res")]) == 0
    _edit_one_line(tree / "systems/baselines.py")
    capsys.readouterr()
    assert main(["leaderboard", "--check", str(tmp_path / "res")]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"{path}: stale: changed since the run: systems/baselines.py"]


def test_a_real_run_is_current_until_its_system_changes(tmp_path, monkeypatch):
    out = tmp_path / "res" / "p.json"
    run(RunConfig(system="popularity", task="ranking", output=out, progress=False, limit=3))
    res = lb.collect([out], allow_limited=True)[0]
    (board,) = lb.build(res)
    assert not board.rows[0].stale and not board.rows[0].mixed
    tree = tmp_path / "tree"
    for rel in res[0][1].provenance["files"]:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, tree / rel)
    _edit_one_line(tree / "systems/baselines.py")
    (board,) = lb.build(res, root=tree)
    assert board.rows[0].stale_files == ["systems/baselines.py"]


# ----------------------------------------------------------------- multi-seed cells

def test_duplicate_seed_is_refused_naming_both_files(tmp_path):
    a = _write(tmp_path / "a", _result("random", 0, [0.1, 0.2]), [0.1, 0.2])
    b = _write(tmp_path / "b", _result("random", 0, [0.3, 0.2]), [0.3, 0.2])
    with pytest.raises(ResultFileError, match="seed 0") as err:
        lb.build(lb.collect([a, b])[0])
    assert str(a) in str(err.value) and str(b) in str(err.value) and "\n" not in str(err.value)


def test_deterministic_system_is_shown_once(tmp_path):
    vals = [0.1, 0.5, 0.2, 0.0]
    files = [_write(tmp_path, _result("popularity", s, vals), vals) for s in (0, 1, 2)]
    (board,) = lb.build(lb.collect(files)[0])
    row = board.rows[0]
    assert row.note.startswith("deterministic") and row.seeds_text == "1 (3 identical)"
    assert "seed_sd" not in row.metrics["nDCG@10"] and row.metrics["nDCG@10"]["ci_low"] == pytest.approx(np.mean(vals) - 0.01)
    assert "| 1 (3 identical) |" in lb.to_markdown([board])


def test_seed_ci_includes_seed_variance(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 0.1, 400)
    files = [_write(tmp_path, _result("sasrec", s, list(base + shift)), list(base + shift))
             for s, shift in ((0, 0.0), (1, 0.3), (2, 0.6))]
    (board,) = lb.build(lb.collect(files)[0])
    m = board.rows[0].metrics["nDCG@10"]
    assert m["ci_method"].startswith("hierarchical")
    # seed means 0.05, 0.35, 0.65: the episode-only CIs are ~0.01 wide, the seed mean's CI spans the seeds
    assert m["ci_low"] < 0.2 and m["ci_high"] > 0.5
    assert m["ci_low"] <= m["value"] <= m["ci_high"]


def test_seed_ci_without_episode_files_says_why(tmp_path):
    files = [_write(tmp_path, _result("sasrec", s, [v]), None) for s, v in ((0, 0.1), (1, 0.2), (2, 0.3))]
    (board,) = lb.build(lb.collect(files)[0])
    m = board.rows[0].metrics["nDCG@10"]
    assert "episode file is missing" in m["ci_method"] and m["ci_low"] < 0.1 and m["ci_high"] > 0.3


def test_tie_mark_pairs_over_all_seeds(tmp_path):
    rng = np.random.default_rng(1)
    a0, a1 = rng.uniform(0.4, 0.6, 300), rng.uniform(0.4, 0.6, 300)
    b0 = a0.copy()  # seed 0: identical to the best, so a seed-0-only test calls it a tie
    b1 = a1 - 0.3  # seed 1: far below
    files = [_write(tmp_path, _result("best", 0, list(a0)), list(a0)), _write(tmp_path, _result("best", 1, list(a1)), list(a1)),
             _write(tmp_path, _result("other", 0, list(b0)), list(b0)), _write(tmp_path, _result("other", 1, list(b1)), list(b1))]
    (board,) = lb.build(lb.collect(files)[0])
    rows = {r.system: r for r in board.rows}
    assert rows["best"].rank == 1 and rows["other"].tied_with_best is False


def _write_eps(folder: Path, res: Result, eps: dict[str, float], metric="nDCG@10") -> Path:
    path = folder / f"{res.system.name}__d__seed{res.seed}.json"
    folder.mkdir(parents=True, exist_ok=True)
    write_result(path, res)
    episodes_path(path).write_text("".join(json.dumps({"episode": e, "status": "ok", "metrics": {metric: x}}) + "\n"
                                           for e, x in eps.items()))
    return path


def test_tie_mark_pairs_seed_by_seed_when_each_seed_draws_its_own_episodes(tmp_path):
    # each seed draws its own episodes (steering users, cold-start users): the episodes every seed shares are few,
    # so pairing must go seed by seed, never fall back to "different" for want of common episodes
    rng = np.random.default_rng(2)
    best = {s: {f"s{s}e{i}": x for i, x in enumerate(rng.uniform(0.4, 0.6, 200))} for s in (0, 1, 2)}
    same = {s: {e: x + rng.normal(0, 0.05) for e, x in v.items()} for s, v in best.items()}  # noise, no shift
    worse = {s: {e: x - 0.2 for e, x in v.items()} for s, v in best.items()}
    files = []
    for name, per in (("best", best), ("same", same), ("worse", worse)):
        for s, eps in per.items():
            files.append(_write_eps(tmp_path / name, _result(name, s, list(eps.values())), eps))
    # a row with no seed in common with the best: nothing to pair
    files.append(_write_eps(tmp_path / "elsewhere", _result("elsewhere", 7, [0.1] * 5), {f"x{i}": 0.1 for i in range(5)}))
    (board,) = lb.build(lb.collect(files)[0])
    rows = {r.system: r for r in board.rows}
    top, second = sorted((rows["best"], rows["same"]), key=lambda r: r.rank)
    assert top.rank == 1 and second.tied_with_best is True
    assert rows["worse"].tied_with_best is False
    assert rows["elsewhere"].tied_with_best is None


def test_editing_one_variants_defaults_stales_only_that_variant(tmp_path):
    """systems/semid/__init__.py registers five systems: a default of one of them stales its rows alone."""
    fam = FAMILIES.get("ranking").__module__
    names = ("semid", "semid-constrain", "semid-tiger")
    fps = {s: pv.fingerprint(family_module=fam, system_factory=SYSTEMS.get(s), spec_path=ROOT / "tasks/ranking.yaml",
                             card_path=ROOT / "tasks/cards/ml-100k.yaml", steering_file=None, dataset_fingerprint="f")
           for s in names}
    root = tmp_path / "tree"
    for fp in fps.values():
        for rel in fp["files"]:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, root / rel)
    init = root / "systems/semid/__init__.py"
    src = init.read_text()
    tiger = src.index("def semid_tiger(")
    at = src.index("epochs: int = ", tiger)
    init.write_text(src[:at] + "epochs: int = 99" + src[src.index(",", at):])
    rows = _board(tmp_path, fps, root)
    assert {s for s, r in rows.items() if r.stale} == {"semid-tiger"}
    assert rows["semid-tiger"].stale_files == ["systems/semid/__init__.py"]
    # and a change to what semid-constrain is built like (semid's own defaults) stales both
    src = init.read_text()
    at = src.index("epochs: float = ", src.index("def semid("))
    assert at < src.index("def semid_tiger(")
    init.write_text(src[:at] + "epochs: float = 9.0" + src[src.index(",", at):])
    rows = _board(tmp_path, fps, root)
    assert {s for s, r in rows.items() if r.stale} == {"semid-tiger", "semid", "semid-constrain"}
