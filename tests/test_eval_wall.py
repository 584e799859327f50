"""The wall between the evaluation phrasings and systems: no import path, no copied wording.

Systems may read ``talkwalk_bench.steering`` (predicates, train templates)
but never the task package, where the eval phrasings live; and no string
under ``systems/`` may hold wording that only the eval phrasings use
("prior to", "revert", "surprise me", ...), since a cue list copied from
them would score generalisation to phrasings the system has in fact seen.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from talkwalk_bench.data.card import load_card
from talkwalk_bench.steering import train_phrasings, train_templates
from talkwalk_bench.steering.phrasings import BUILTIN_PATH, _builtin, load_steering_file
from talkwalk_bench.tasks.steering_eval import EVAL_PATH, builtin_eval, eval_only_words, leaked

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ROOT / "systems"
INDEPENDENT = ROOT / "benchmarks" / "contrastive_phrasings.yaml"
HARNESS_ONLY = ("talkwalk_bench.tasks", "talkwalk_bench.cli", "talkwalk_bench.commands")
FORBIDDEN_NAMES = {"_eval_templates", "eval_templates", "builtin_eval", "steering_eval"}
# Literals that hold an eval-only word but are not steering cues, with the reason.
NOT_CUES: dict[tuple[str, str], str] = {
    ("contrastive/pairs.py", "low affinity, avoid unless requested"): "a training description of a user-item pair, not a cue",
}


@pytest.fixture(scope="module")
def card():
    return load_card("ml-100k")


def _python_files() -> list[Path]:
    return sorted(SYSTEMS.rglob("*.py"))


def _imports(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
            out += [f"{node.module}.{a.name}" for a in node.names]
    return out


def _literals(tree: ast.AST) -> list[ast.Constant]:
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


_SPLIT = re.compile(r"\||\(\?:|\(|\)|\\b|\\s[*+]?|\?")


def _cue_fragments(text: str) -> list[str]:
    """Phrase-sized pieces of a literal: regex alternatives and short strings; identifiers are skipped."""
    out = []
    for part in _SPLIT.split(text):
        part = part.strip()
        if not part or (" " not in part and re.search(r"[_=.:/]", part)) or len(part.split()) > 6:
            continue
        out.append(part)
    return out


def test_systems_never_import_the_eval_phrasings():
    bad = []
    for f in _python_files():
        tree = ast.parse(f.read_text(), filename=str(f))
        for name in _imports(tree):
            if name.startswith(HARNESS_ONLY) or name.rsplit(".", 1)[-1] in FORBIDDEN_NAMES:
                bad.append(f"{f.relative_to(ROOT)} imports {name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_NAMES or isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
                bad.append(f"{f.relative_to(ROOT)}:{node.lineno} uses {getattr(node, 'attr', getattr(node, 'id', ''))}")
        for node in _literals(tree):
            if "steering_eval" in node.value:
                bad.append(f"{f.relative_to(ROOT)}:{node.lineno} names {node.value!r}")
    assert not bad, bad


def test_what_systems_import_from_the_harness_does_not_load_the_eval_phrasings():
    modules = sorted({n for f in _python_files() for n in _imports(ast.parse(f.read_text()))
                      if n.startswith("talkwalk_bench") and not n.startswith(HARNESS_ONLY)})
    code = ("import importlib, sys\n"
            f"for m in {modules!r}:\n"
            "    try: importlib.import_module(m)\n"
            "    except ImportError: pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('talkwalk_bench.tasks')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().replace("'", '"')) == []


def test_the_import_check_fails_when_a_system_reaches_for_the_eval_phrasings(tmp_path):
    tree = ast.parse("from talkwalk_bench.tasks.steering_eval import builtin_eval\nx = builtin_eval()")
    assert any(n.startswith(HARNESS_ONLY) for n in _imports(tree))


def _leaks_in(source: str, rel: str, card) -> list[str]:
    bad = []
    for node in _literals(ast.parse(source)):
        for frag in _cue_fragments(node.value):
            hits = leaked(frag, card)
            # a single eval-only word counts in a short phrase (a cue); a sequence of them counts anywhere
            if hits and (len(frag.split()) <= 5 or any(" " in h for h in hits)) and (rel, node.value) not in NOT_CUES:
                bad.append(f"systems/{rel}:{node.lineno}: {frag!r} holds eval-only wording {hits}")
    return bad


def test_no_string_under_systems_holds_eval_only_wording(card):
    bad = [b for f in _python_files() for b in _leaks_in(f.read_text(), str(f.relative_to(SYSTEMS)), card)]
    assert not bad, "\n".join(bad)


def test_the_wording_check_fails_on_a_cue_list_copied_from_the_eval_phrasings(card):
    planted = ('NEG = {"no", "without", "minus"}\n'
               'BEFORE = re.compile(r"\\b(?:before|prior to)\\b")\n'
               'INTENTS = ("go back", "let\'s return to what you had")\n')
    hits = _leaks_in(planted, "planted.py", card)
    assert len(hits) == 3 and any("minus" in h for h in hits) and any("prior to" in h for h in hits)
    assert not _leaks_in('NEG = {"no", "without", "anything but"}\nERR = "needs a dataset card; pass --card PATH"\n', "ok.py", card)


def test_the_wording_check_catches_copied_cues(card):
    # cue strings of the kind once found in systems/: each must be caught
    for cue in ("prior to", "minus", "revert the last change", "surprise me", "steer clear of", "diversify"):
        assert leaked(cue, card), cue
    # train wording and the card's own words pass
    for cue in ("older than", "no horror please", "go back", "more variety", "seventies", "anything but"):
        assert not leaked(cue, card), cue


def test_eval_and_train_sets_are_apart_and_only_the_train_set_ships_with_the_steering_package(card):
    assert BUILTIN_PATH.parent.name == "steering" and EVAL_PATH.parent.name == "tasks"
    ev, tr = builtin_eval(), _builtin()
    assert not any(ev.train.get(k) for k in ev.eval) and not any(tr.eval.get(k) for k in tr.train)
    assert set(ev.eval) == set(tr.train)
    exposed = json.dumps(train_templates()) + json.dumps([p.__dict__ for p in train_phrasings(card)])
    assert not [t for ts in ev.eval.values() for t in ts if t in exposed]
    assert eval_only_words(card)  # the check has something to look for


def test_the_independent_phrasings_share_no_template_and_no_eval_only_wording(card):
    own = load_steering_file(INDEPENDENT, card)
    ev = builtin_eval()
    eval_set = {t.lower() for ts in ev.eval.values() for t in ts}
    texts = [t for part in (own.train, own.eval) for ts in part.values() for t in ts] + [u.text for u in own.utterances]
    assert texts
    assert not [t for t in texts if t.lower() in eval_set]
    assert not [(t, leaked(t, card)) for t in texts if leaked(t, card)]


def test_the_semid_constrain_readers_negated_rows_hold_no_eval_only_wording(card):
    # the rows are rendered from the train templates and system paraphrases by rules, so the check is on what
    # they render, not on literals
    from systems.semid.reading import NegatingSpace

    rows = NegatingSpace(card, anchored=True).negated_rows(card, ["Heat", "Brazil"], seed=0)
    assert len(rows) > 500
    bad = [(u, leaked(u, card)) for _, u, _ in rows if leaked(u, card)]
    assert not bad, bad[:5]


def test_semids_satisfaction_head_rows_hold_no_eval_only_wording(card):
    # plain semid's head reads the train phrasings and the reader's rule-negated relations, said with titles
    from systems.semid.heed import heed_rows

    rows = heed_rows(card, [("1", "Heat"), ("2", "Brazil")], seed=0, per_anchor=2)
    assert len(rows) > 1000
    bad = [(u, leaked(u, card)) for _, u, _ in rows if leaked(u, card)]
    assert not bad, bad[:5]
