"""How well the grounding (systems/contrastive/grounding.py) reads requests, without the trained space.

For every request rendered from a template (slots filled with the card's
words), the grounded constraints define a set of catalog items; a reading is
*right* when that set is non-empty and every item in it satisfies the
request's predicate (then a filter on it satisfies the request). Anchored
kinds are right when the relation read is the kind.

Sets: the steering *train* templates, each read by a grounder built without
that template (leave-one-template-out), and the independently written
phrasings of ``benchmarks/contrastive_phrasings.yaml`` (templates and literal
utterances). The built-in evaluation phrasings are not read here.

  python benchmarks/contrastive_grounding_dev.py [--out benchmarks/results/contrastive_grounding_dev.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from systems.contrastive.grounding import ANCHORED, Constraint, Grounder  # noqa: E402
from systems.contrastive.text import TextEncoder  # noqa: E402
from talkwalk_bench.data.card import load_card  # noqa: E402
from talkwalk_bench.data.dataset import load_dataset  # noqa: E402
from talkwalk_bench.steering import ItemValues, Vocabulary, load_steering_file, train_templates  # noqa: E402
from talkwalk_bench.steering.phrasings import utterance_predicate  # noqa: E402

KINDS = ("include", "exclude", "range_bin", "before", "after", "include_range", "include_exclude", *ANCHORED)


def constraint_mask(c: Constraint, values: dict, ids: list[str]) -> np.ndarray:
    out = []
    for it in ids:
        v = values[it].get(c.attribute)
        if c.kind in ("has", "lacks"):
            s = v if isinstance(v, frozenset) else (frozenset([v]) if v else frozenset())
            out.append(bool(s) and (c.values <= s if c.kind == "has" else not (c.values & s)))
        elif c.kind == "range":
            out.append(v is not None and v == v and c.low <= v <= c.high)
        else:
            out.append(True)
    return np.array(out, bool)


def judge(g: Grounder, text: str, kind: str, pred, iv: ItemValues, ids: list[str]) -> tuple[bool, str]:
    anchored = kind in ANCHORED
    r = g.read(text, anchored=anchored)
    if anchored:
        return r.relation == kind, str(r.relation)
    if not r.constraints:
        return False, "nothing grounded"
    m = np.ones(len(ids), bool)
    for c in r.constraints:
        m &= constraint_mask(c, iv.values, ids)
    truth = iv.mask(pred)
    ok = bool(m.any()) and bool(truth[m].all())
    return ok, "; ".join(c.describe() for c in r.constraints)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "contrastive_grounding_dev.json"))
    ap.add_argument("--per-template", type=int, default=12)
    args = ap.parse_args()
    card = load_card("ml-100k")
    ds = load_dataset("ml-100k")
    ids = list(ds.item_ids)
    iv = ItemValues(card, ds.items, ids)
    vocab = Vocabulary(card)
    enc = TextEncoder()
    years = [v.get("year") for v in iv.values.values()]
    newest = max(y for y in years if y == y)
    rng = random.Random(0)
    tt = train_templates()

    def rendered(kind: str, template: str, n: int):
        steers = vocab.all_steers(kind)
        if kind in ANCHORED:
            steers = steers * n
        for s in rng.sample(steers, min(n, len(steers))):
            if kind in ANCHORED:
                yield s.say(template, noun=vocab.noun), None
            else:
                yield s.say(template, noun=vocab.noun), s.predicate

    report: dict[str, dict] = {}
    # leave one train template out
    res = defaultdict(list)
    fails = []
    for kind in KINDS:
        for t in tt.get(kind, ()):
            held = {k: tuple(x for x in v if not (k == kind and x == t)) for k, v in tt.items()}
            g = Grounder(card, held, enc.encode, newest=newest)
            for text, pred in rendered(kind, t, args.per_template):
                if pred is not None and iv.mask(pred).sum() < 10:
                    continue  # never asked: the task needs 10 satisfying items
                ok, got = judge(g, text, kind, pred, iv, ids)
                res[kind].append(ok)
                if not ok:
                    fails.append({"kind": kind, "text": text, "read": got})
    report["train_leave_one_template_out"] = {k: {"right": float(np.mean(v)), "n": len(v)} for k, v in res.items()}
    report["train_failures"] = fails[:60]
    # independent phrasings
    g = Grounder(card, tt, enc.encode, newest=newest)
    sf = load_steering_file(ROOT / "benchmarks" / "contrastive_phrasings.yaml", card)
    res = defaultdict(list)
    fails = []
    for kind, temps in sf.eval.items():
        if kind not in KINDS:
            continue
        for t in temps:
            for text, pred in rendered(kind, t, args.per_template):
                if pred is not None and iv.mask(pred).sum() < 10:
                    continue  # never asked: the task needs 10 satisfying items
                ok, got = judge(g, text, kind, pred, iv, ids)
                res[kind].append(ok)
                if not ok:
                    fails.append({"kind": kind, "text": text, "read": got})
    for u in sf.utterances:
        ok, got = judge(g, u.text, u.kind, utterance_predicate(u, card), iv, ids)
        res["literal"].append(ok)
        if not ok:
            fails.append({"kind": "literal", "text": u.text, "read": got})
    report["independent"] = {k: {"right": float(np.mean(v)), "n": len(v)} for k, v in res.items()}
    report["independent_failures"] = fails
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    for sec in ("train_leave_one_template_out", "independent"):
        print(sec)
        for k, v in report[sec].items():
            print(f"  {k:16s} {v['right']:.3f} (n={v['n']})")
    print("failures:")
    for f in report["train_failures"][:30] + report["independent_failures"][:40]:
        print("  ", f)


if __name__ == "__main__":
    main()
