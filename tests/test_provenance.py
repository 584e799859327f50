"""The code fingerprint recorded in every result: which files, their hashes, and the dirty check."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from talkwalk_bench import provenance as pv
from talkwalk_bench.registry import SYSTEMS
from talkwalk_bench.tasks.base import FAMILIES

ROOT = pv.project_root()


def _fp(system: str | None, family: str, root: Path = ROOT, **kw) -> dict:
    return pv.fingerprint(family_module=FAMILIES.get(family).__module__, system_factory=SYSTEMS.get(system) if system else None,
                          spec_path=ROOT / "tasks" / f"{family}.yaml", card_path=ROOT / "tasks" / "cards" / "ml-100k.yaml",
                          steering_file=kw.get("steering_file"), dataset_fingerprint="fp", root=root)


def test_fingerprint_lists_harness_system_spec_and_card():
    fp = _fp("popularity", "ranking")
    files = fp["files"]
    for f in ("talkwalk_bench/tasks/ranking.py", "talkwalk_bench/tasks/runner.py", "talkwalk_bench/tasks/__init__.py",
              "talkwalk_bench/data/split.py", "talkwalk_bench/metrics/stats.py", "systems/baselines.py",
              "systems/__init__.py", "tasks/ranking.yaml", "tasks/cards/ml-100k.yaml"):
        assert f in files, f
    assert files["systems/baselines.py"] == pv.file_hash(ROOT / "systems/baselines.py")
    assert len(files["systems/baselines.py"]) == pv.HASH_CHARS
    assert not any(f.startswith(("systems/sasrec", "systems/contrastive")) for f in files)  # other systems' code is not this one's
    assert fp["dataset_fingerprint"] == "fp" and fp["code_hash"] == pv.combined_hash(files)


def test_variant_and_lazy_imports_reach_the_systems_own_modules():
    plain = _fp("sasrec", "ranking")["files"]
    filt = _fp("sasrec-filter", "ranking")["files"]
    # the variant's builder imports systems.sasrec.filter inside a function, which imports systems.keyword_filter
    assert "systems/keyword_filter.py" in filt and "systems/sasrec/filter.py" in filt
    assert "systems/sasrec/model.py" in plain and "systems/keyword_filter.py" not in plain


def test_steering_file_is_fingerprinted(tmp_path):
    sf = tmp_path / "mine.yaml"
    sf.write_text("templates: {}\n")
    fp = _fp("popularity", "steerability", steering_file=sf)
    assert fp["files"][str(sf.resolve())] == pv.file_hash(sf)


def test_closure_follows_imports_inside_functions(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n    return b\n")
    (pkg / "b.py").write_text("from .c import x\n")
    (pkg / "c.py").write_text("x = 1\n")
    (pkg / "unused.py").write_text("")
    got = {p.name for p in pv.closure(["pkg.a"], ("pkg",), tmp_path)}
    assert got == {"__init__.py", "a.py", "b.py", "c.py"}


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(root)})


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("def f():\n    from pkg import b\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "pkg")
    _git(tmp_path, "commit", "-q", "-m", "init")
    return tmp_path


def test_untracked_imported_file_makes_the_run_dirty(repo):
    assert pv.dirty(["pkg/a.py"], repo) == []
    assert not pv.revision(repo).endswith("-dirty")
    (repo / "pkg" / "b.py").write_text("x = 1\n")  # imported by a.py, never committed
    files = sorted(pv.rel(p, repo) for p in pv.closure(["pkg.a"], ("pkg",), repo))
    assert "pkg/b.py" in files
    assert pv.dirty(files, repo) == ["pkg/b.py"]
    assert pv.revision(repo).endswith("-dirty")


def test_run_outputs_do_not_make_the_tree_dirty(repo):
    for d in pv.OUTPUT_DIRS:
        (repo / d).mkdir()
        (repo / d / "x.json").write_text("{}")
    assert not pv.revision(repo).endswith("-dirty")
    (repo / "pkg" / "a.py").write_text("# edited\n")
    assert pv.revision(repo).endswith("-dirty")
    assert pv.dirty(["pkg/a.py"], repo) == ["pkg/a.py"]


def test_changed_files_compares_content(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("x = 1\n")
    files = {"m.py": pv.file_hash(f), "gone.py": "0" * 16}
    assert pv.changed_files(files, tmp_path) == ["gone.py"]
    f.write_text("x = 2\n")
    assert pv.changed_files(files, tmp_path) == ["gone.py", "m.py"]


REGISTERING = '''"""Two systems and a variant in one module."""
from talkwalk_bench.registry import register_system, register_variant

SHARED = 3  # every system here reads it


def _build(name, **params):
    return (name, SHARED, params)


@register_system("alpha")
def alpha(k: int = 1):
    return _build("alpha", k=k)


register_variant("alpha-wide", _build, like=alpha, defaults={"k": 5})


def _beta_helper():
    return 2


@register_system("beta")
def beta(depth: int = 2):
    return ("beta", depth, _beta_helper())
'''


def _reg_hashes(source: str) -> dict[str, str | None]:
    return {s: pv.registration_hash(source, s) for s in ("alpha", "alpha-wide", "beta", "gamma")}


@pytest.mark.parametrize(("old", "new", "moved"), [
    ("def beta(depth: int = 2):", "def beta(depth: int = 4):", {"beta"}),  # a default of one system
    ("return 2", "return 7", {"beta"}),  # a helper only that system calls
    ('defaults={"k": 5}', 'defaults={"k": 6}', {"alpha-wide"}),  # a variant's own defaults
    ("def alpha(k: int = 1):", "def alpha(k: int = 2):", {"alpha", "alpha-wide"}),  # the variant is built like alpha
    # alpha's body: the variant takes alpha's arguments, never runs its body
    ('return _build("alpha", k=k)', 'return _build("alpha", k=k, deep=True)', {"alpha"}),
    ('@register_system("alpha")', '@register_system("alpha", description="the first")', {"alpha"}),  # alpha's own record
    ("return (name, SHARED, params)", "return (name, SHARED, dict(params))", {"alpha", "alpha-wide"}),  # their builder
    ("SHARED = 3  # every system here reads it", "SHARED = 4  # every system here reads it", {"alpha", "alpha-wide", "beta"}),
    # a variant given a builder of its own: the lines added for it move no other system's hash
    ('register_variant("alpha-wide", _build, like=alpha, defaults={"k": 5})',
     'def _build_wide(name, **params):\n    return _build(name, wide=True, **params)\n\n\n'
     'register_variant("alpha-wide", _build_wide, like=alpha, defaults={"k": 5})', {"alpha-wide"}),
])
def test_registration_hash_moves_only_for_the_systems_an_edit_concerns(old, new, moved):
    before = _reg_hashes(REGISTERING)
    assert before["gamma"] is None and len({before[s] for s in ("alpha", "alpha-wide", "beta")}) == 3
    after = _reg_hashes(REGISTERING.replace(old, new))
    assert {s for s in before if before[s] != after[s]} == moved


def test_old_record_is_scoped_from_its_own_revision(repo):
    """A result recorded before ``scoped`` existed: its registering module's recorded copy is read back from git
    (and checked against the recorded hash), so an edit to another system's registration leaves it current."""
    mod = repo / "pkg" / "systems.py"
    mod.write_text(REGISTERING)
    _git(repo, "add", "pkg")
    _git(repo, "commit", "-q", "-m", "systems")
    rev = pv.revision(repo)
    prov = {"revision": rev, "dirty_files": [], "files": {"pkg/systems.py": pv.file_hash(mod)}}
    mod.write_text(REGISTERING.replace("def beta(depth: int = 2):", "def beta(depth: int = 4):"))
    assert pv.changed_files(prov["files"], repo) == ["pkg/systems.py"]  # the whole file did change
    assert pv.changed_files(prov["files"], repo, prov=prov, system="alpha") == []
    assert pv.changed_files(prov["files"], repo, prov=prov, system="beta") == ["pkg/systems.py"]
    assert pv.is_current(prov, repo, system="alpha-wide") and not pv.is_current(prov, repo, system="beta")
    # a record whose hash is not that revision's copy is never scoped from it
    forged = {**prov, "files": {"pkg/systems.py": "0" * 16}}
    assert pv.changed_files(forged["files"], repo, prov=forged, system="alpha") == ["pkg/systems.py"]
    # a new-style record says what it held for its system and needs no git
    new_style = {**prov, "revision": None,
                 "scoped": {"pkg/systems.py": {"system": "alpha", "hash": pv.registration_hash(REGISTERING, "alpha"),
                                               "version": pv.SCOPE_VERSION}}}
    assert pv.changed_files(new_style["files"], repo, prov=new_style, system="alpha") == []
    assert pv.changed_files(new_style["files"], repo, prov=new_style, system="beta") == ["pkg/systems.py"]
    # a record of an earlier version of the hash is not compared with today's: its revision's copy is read instead
    v1 = {**prov, "scoped": {"pkg/systems.py": {"system": "alpha", "hash": "0" * 16}}}
    assert pv.changed_files(v1["files"], repo, prov=v1, system="alpha") == []
    assert pv.changed_files(v1["files"], repo, prov={**v1, "revision": None}, system="alpha") == ["pkg/systems.py"]


def test_fingerprint_records_the_registering_module_scoped_to_the_system():
    fp = _fp("semid-tiger", "ranking")
    assert fp["scoped"] == {"systems/semid/__init__.py": {
        "system": "semid-tiger", "version": pv.SCOPE_VERSION,
        "hash": pv.registration_hash((ROOT / "systems/semid/__init__.py").read_text(), "semid-tiger")}}
    assert fp["scoped"]["systems/semid/__init__.py"]["hash"] != _fp("semid", "ranking")["scoped"]["systems/semid/__init__.py"]["hash"]
