"""Probe: does the ``semid-constrain`` reader read negated requests once it is trained on some?

Usage: python benchmarks/semid_reader_negation_probe.py --rows {base,negation} [--seed 0] [--out FILE.json]
       python benchmarks/semid_reader_negation_probe.py --rows negation --task steerability --run-out RUN.json [--steering-file F]

The reader with the plain constraint language misread negations: "not before
1990" came out as ``year < 1990`` (docs/semid.md). ``semid-constrain`` now
reads with a language that negates each ordinal constraint, taught by
negated relation phrasings (``systems/semid/reading.py``). This probe trains
the reader alone (cut from the base LLM plus its LoRA adapter, as
``semid-constrain`` trains it; the ranking model is not needed) on the
system's rows as they are (``base``; this is the very reader
``semid-constrain`` caches and reuses), or on those rows plus the older
hand-written negated paraphrases below (``negation``; cached under another
key), then measures parse accuracy on the built-in evaluation phrasings and
on the independent ones (``benchmarks/contrastive_phrasings.yaml``) with
``semid_constraint_parse.parse_hits``. With ``--task`` it runs that task
end to end instead, ``semid-constrain`` with the probe's reader (the ranking
model is trained or loaded from the cache as usual), into ``--run-out``:
a probe's result, never one to publish (its fingerprint does not show the
patched rows).

The paraphrases are written here in everyday English. They say a relation
the reader already knows with a negation in front, so each one means the
opposite relation: "not older than {bound}" is an *after* request, "not
{bound} or later" a *before* one, "I'm not into {value}" an *exclude*. Before
training, every rendered row is checked against the evaluation wording
(``leaked``): none may use a word or word sequence that only the eval
phrasings use. The system is untouched; nothing here is used by a published
result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# template -> it is said with the steers of this kind (whose predicate it means)
NEGATED: dict[str, tuple[str, ...]] = {
    "after": ("not older than {bound}", "no older than {bound}", "not made before {bound}", "nothing made before {bound}",
              "not released before {bound}", "not earlier than {bound}", "not from before {bound}", "none from before {bound}",
              "not pre-{bound}", "nothing pre-{bound}", "a {noun} not older than {bound}", "I don't want anything older than {bound}",
              "nothing released earlier than {bound}", "no {nouns} older than {bound}", "no {noun} from before {bound}",
              "don't show me anything made before {bound}", "skip everything before {bound}"),
    "before": ("not from {bound} onwards", "none from {bound} onwards", "not {bound} or later", "nothing {bound} or later",
               "not released since {bound}", "nothing since {bound}", "nothing made in {bound} or after",
               "I don't want anything from {bound} or later", "skip everything from {bound} onwards"),
    "exclude": ("I'm not into {value}", "I'm not keen on {value}", "I don't love {value}", "I don't really like {value}",
                "not a fan of {value}", "{value} is not my thing", "I'm not up for {value}", "I wouldn't enjoy {value}",
                "don't put on {value}", "don't pick {value}", "no {value} for me", "I'd rather not watch {value}",
                "I don't feel like {value}", "let's not do {value}", "anything except {value}", "everything but {value}",
                "not a {value} {noun}", "I'd prefer no {value}", "not {value} {nouns}", "no {value} {nouns} for me",
                "I don't want to see {value}", "leave {value} aside", "anything that isn't {value}", "I'm not interested in {value}"),
}


def negated_rows(card) -> list[tuple[str, str, str]]:
    """(kind, utterance, canonical text) for every negated template and every filling of its kind."""
    from systems.semid.constraint import canonical
    from talkwalk_bench.steering import Vocabulary

    vocab = Vocabulary(card)
    out = []
    for kind, temps in NEGATED.items():
        for s in vocab.all_steers(kind):
            for t in temps:
                out.append((kind, s.say(t, noun=vocab.noun), canonical(s.predicate.to_dict())))
    return out


def confidence(records: list, scores: list[float]) -> dict:
    """How well the reader's own probability of its reading separates right readings from wrong ones:
    the AUROC, and accuracy and coverage when only readings with probability >= p are kept."""
    import math

    ok = [int(w == g) for _, _, w, g in records]
    pos = [s for s, o in zip(scores, ok, strict=True) if o]
    neg = [s for s, o in zip(scores, ok, strict=True) if not o]
    auc = (sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))) if pos and neg else None
    out = {"auroc": auc, "n": len(ok), "kept": {}}
    for p in (0.5, 0.7, 0.9):
        keep = [o for s, o in zip(scores, ok, strict=True) if s >= math.log(p)]
        out["kept"][str(p)] = {"coverage": len(keep) / len(ok), "accuracy": sum(keep) / len(keep) if keep else None,
                               "wrong_kept": len(keep) - sum(keep), "wrong_all": len(ok) - sum(ok)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", choices=("base", "negation"), required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-kind", type=int, default=60)
    ap.add_argument("--steps", type=int, default=None, help="reader steps (default: the system's; a quick check only)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--init-seed", type=int, default=None,
                    help="seed torch before the reader's adapter is made (its own cache entry): how much the start alone moves it")
    ap.add_argument("--task", default=None, help="run this task end to end with the probe's reader")
    ap.add_argument("--run-out", default=None)
    ap.add_argument("--steering-file", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a reader argument of semid-constrain (e.g. reader_layers=30); it is in the reader's cache key")
    args = ap.parse_args()

    import torch
    from semid_constraint_parse import markdown, parse_hits, wilson

    import systems.semid.system as semsys
    from systems.semid.constraint import ConstraintSpace
    from systems.semid.lm import load_base
    from talkwalk_bench.data.card import load_card
    from talkwalk_bench.data.dataset import load_dataset
    from talkwalk_bench.data.split import leave_one_out
    from talkwalk_bench.paths import cache_dir
    from talkwalk_bench.registry import build_system
    from talkwalk_bench.tasks.steering_eval import leaked

    torch.set_num_threads(1)
    ds = load_dataset("ml-100k")
    card = load_card("ml-100k")
    data = leave_one_out(ds).train_data(card)
    extra = negated_rows(card) if args.rows == "negation" else []
    bad = [(u, leaked(u, card)) for _, u, _ in extra if leaked(u, card)]
    if bad:
        raise SystemExit(f"negated rows use eval-only wording: {bad[:5]}")
    if args.init_seed is not None:  # the system seeds the adapter from the run's seed; this starts it elsewhere
        import systems.semid.train as semtrain

        semsys.READER_VERSION = f"{semsys.READER_VERSION}+init-{args.init_seed}"  # its own cache entry
        add_lora = semtrain.add_lora

        def seeded_add_lora(*a, **k):
            torch.manual_seed(args.init_seed)
            return add_lora(*a, **k)

        semtrain.add_lora = seeded_add_lora
    if extra:
        semsys.READER_VERSION = f"{semsys.READER_VERSION}+negation-probe"  # its own cache entry
        own = ConstraintSpace.reader_rows

        def reader_rows(self, card, titles, seed=0, per_anchor=2):
            return own(self, card, titles, seed=seed, per_anchor=per_anchor) + extra

        ConstraintSpace.reader_rows = reader_rows

    sargs = dict(kv.split("=", 1) for kv in args.set)
    if args.steps is not None:
        sargs["reader_steps"] = args.steps
    if args.task:
        from talkwalk_bench.tasks.runner import RunConfig, run

        res = run(RunConfig(system="semid-constrain", task=args.task, seed=args.seed, output=Path(args.run_out), progress=False,
                            system_args=sargs or None,
                            steering_file=Path(args.steering_file) if args.steering_file else None))
        print(res.status, {k: round(m.value, 4) for k, m in res.metrics.items() if k.startswith("constraint_following@10")})
        return
    system, _ = build_system("semid-constrain", sargs)
    _, tok = load_base(system.p["base_model"])
    system.item_ids = tuple(data.item_ids)
    system.vocab = {"n_old": len(tok)}
    system.fit_info = {}
    root = cache_dir() / "semid-reader-probe"
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    reader = system._fit_reader(None, tok, data, root, args.seed)
    train_s = time.perf_counter() - t0
    system.reader = reader.to(torch.bfloat16).eval()
    system.tok = tok
    system._has_reader = True
    system._constraint_setup(data)
    import systems.semid.reading as reading

    scores: list[float] = []
    search = reading.likeliest_readings

    def likeliest_readings(model, prompt_ids, trie, **kw):  # the reader's log-probability of what it reads, per read
        found = search(model, prompt_ids, trie, **kw)
        scores.append(float(found[0][1]))
        return found

    reading.likeliest_readings = likeliest_readings
    report = {"rows": args.rows, "seed": args.seed, "negated_rows": len(extra), "reader": system.fit_info.get("reader"),
              "reader_seconds": round(train_s, 1), "phrasings": {}}
    for name, path in (("builtin-eval", None), ("independent", "benchmarks/contrastive_phrasings.yaml")):
        records: list = []
        scores.clear()
        hits = parse_hits(system, card, ds, path, per_kind=args.per_kind, records=records)
        assert len(scores) == len(records)
        allk = [h for v in hits.values() for h in v]
        report["phrasings"][name] = {"per_kind": {k: {"n": len(v), "accuracy": sum(v) / len(v), "ci95": wilson(sum(v), len(v))}
                                                  for k, v in hits.items()},
                                     "all": {"n": len(allk), "accuracy": sum(allk) / len(allk), "ci95": wilson(sum(allk), len(allk))}}
        report["phrasings"][name]["confidence"] = confidence(records, scores)
        report["phrasings"][name]["errors"] = [(k, t, w, g, round(sc, 3)) for (k, t, w, g), sc in zip(records, scores, strict=True) if w != g]
        print(f"## {args.rows} reader, {name} phrasings\n\n{markdown(hits)}\n", flush=True)
        print(json.dumps(report["phrasings"][name]["confidence"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
