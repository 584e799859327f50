"""Parse accuracy of ``semid-constrain``: does the constraint the LLM emits match the request?

Usage: python benchmarks/semid_constraint_parse.py [--seed N] [--steering-file FILE] [-S key=value ...]
           [--show-errors KIND] [--out FILE]

Fits (or loads from the cache) ``semid-constrain`` on ml-100k, then renders
every *evaluation* phrasing of every kind with a fixed predicate (the
built-in eval templates, or a steering file's ``eval`` templates, e.g.
``benchmarks/contrastive_phrasings.yaml``, written apart from the project)
with every filling the card allows, asks the model for its constraint and
compares it with the canonical text of the request's predicate. Requests
about a named item (older / newer / similar / contrast, said with a random
catalog title) must parse to the anchored relation when the reader knows
them (``year < that``, ...); kinds without a predicate (neutral, go back,
...) must parse to ``none``.

This script is harness-side: it reads the evaluation phrasings to score the
system; the system itself never sees them (tests/test_eval_wall.py).
Prints accuracy per kind and overall with a 95 % Wilson interval, and writes
the table as Markdown when ``--out`` is given.

For ``semid-constrain``, whose satisfaction head checks each reading before
decoding keeps to it (``systems/semid/checked.py``), it also prints how often
the check set the reading aside, among the readings that were right (what
the check costs) and among those that were wrong (what it catches).
"""

from __future__ import annotations

import argparse
import math
import random
from collections import defaultdict


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (c - h, c + h)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steering-file", default=None)
    ap.add_argument("-S", action="append", default=[])
    ap.add_argument("--per-kind", type=int, default=60, help="phrasings sampled per kind")
    ap.add_argument("--seed", type=int, default=0, help="the run seed the system (and its reader) is fitted with")
    ap.add_argument("--show-errors", default=None, metavar="KIND", help="also print this kind's misread phrasings")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from talkwalk_bench.data.card import load_card
    from talkwalk_bench.data.dataset import load_dataset
    from talkwalk_bench.data.split import leave_one_out
    from talkwalk_bench.registry import build_system

    overrides = dict(kv.split("=", 1) for kv in args.S)
    system, _ = build_system("semid-constrain", overrides)
    ds = load_dataset("ml-100k")
    card = load_card("ml-100k")
    data = leave_one_out(ds).train_data(card)
    system.fit(data, seed=args.seed)
    records: list = []
    aside: dict[str, list[tuple[int, int]]] = {}
    hits = parse_hits(system, card, ds, args.steering_file, per_kind=args.per_kind, records=records, aside=aside)
    table = markdown(hits)
    if aside:
        table += "\n\n" + markdown_aside(aside)
    print(table)
    if args.show_errors and args.show_errors not in hits:
        print(f"--show-errors: no kind {args.show_errors!r}; the kinds are {', '.join(sorted(hits))}")
    for kind, phrasing, wanted, emitted in records:
        if kind == args.show_errors and wanted != emitted:
            print(f"{kind}: {phrasing!r} -> {emitted!r} (wanted {wanted!r})")
    if args.out:
        with open(args.out, "w") as f:
            f.write(f"Phrasings: {args.steering_file or 'built-in eval templates'}\n\n{table}\n")


def parse_hits(system, card, ds, steering_file: str | None = None, *, per_kind: int = 60,
               records: list | None = None, aside: dict | None = None) -> dict[str, list[int]]:
    """Per request kind, 1/0 for each sampled evaluation phrasing: is the reader's likeliest reading its canonical text?

    ``records``, when given, receives one ``(kind, phrasing, wanted, emitted)`` per phrasing, in order. ``aside``,
    when given and the system checks its readings (``systems.semid.checked``), receives per kind one
    ``(right, set aside)`` pair of 1/0 per phrasing: was the likeliest reading right, and did the check set
    aside what decoding would have kept to."""
    from systems.semid.checked import SET_ASIDE
    from systems.semid.constraint import NONE, canonical
    from talkwalk_bench.steering import ItemValues, Vocabulary
    from talkwalk_bench.tasks.steering_eval import eval_templates
    from talkwalk_bench.types import Request, Turn

    vocab = Vocabulary(card)
    templates, _ = eval_templates(steering_file)
    rng = random.Random(0)
    hits: dict[str, list[int]] = defaultdict(list)
    # anchored kinds (older / newer / similar / contrast) name an item shown just before, as the task
    # says them: a random catalog title, 15 per template
    anchored = {k: t for t, k in system.cspace.anchored.items()}
    titles = [(it, t) for it, t in ItemValues(card, ds.items, list(ds.item_ids)).titles.items() if t]
    that = f"that {vocab.noun}"
    for kind, temps in templates.items():
        cases = []
        for s in vocab.all_steers(kind):
            want = canonical(s.predicate.to_dict()) if s.predicate is not None else NONE
            for t in temps:
                text = s.say(t, noun=vocab.noun)
                if kind in anchored:
                    for it, title in rng.sample(titles, 15):
                        cases.append((text.replace(that, title), anchored[kind], (it,)))
                else:
                    cases.append((text, want or NONE, ("1",)))
        for text, want, shown in rng.sample(cases, min(per_kind, len(cases))):
            r = Request("0", conversation=(Turn("", shown=shown), Turn(text)))
            if hasattr(system, "readings"):  # the likeliest reading ("that" as the system resolves it), not the
                # set of credible readings decoding keeps to
                got = system.readings(text, anchored=system.anchor_of(r) is not None, most=1)[0][0]
            else:
                got, _, _ = system.read(r)
            hits[kind].append(int(got == want))
            if aside is not None and hasattr(system, "agrees"):
                aside.setdefault(kind, []).append((int(got == want), int(system.read(r)[0].endswith(SET_ASIDE))))
            if records is not None:
                records.append((kind, text, want, got))
    return dict(hits)


def markdown(hits: dict[str, list[int]]) -> str:
    """Accuracy per kind and overall, with 95 % Wilson intervals, as a Markdown table."""
    lines = ["| kind | n | parse accuracy | 95 % CI |", "|---|---|---|---|"]
    allk = [h for v in hits.values() for h in v]
    for kind, v in [*hits.items(), ("all", allk)]:
        lo, hi = wilson(sum(v), len(v))
        lines.append(f"| {kind} | {len(v)} | {sum(v) / max(1, len(v)):.3f} | [{lo:.3f}, {hi:.3f}] |")
    return "\n".join(lines)


def markdown_aside(aside: dict[str, list[tuple[int, int]]]) -> str:
    """How often the head's check set a reading aside, among right and among wrong readings, per kind and overall."""
    lines = ["| kind | right readings | set aside | wrong readings | set aside |", "|---|---|---|---|---|"]
    allk = [x for v in aside.values() for x in v]
    for kind, v in [*aside.items(), ("all", allk)]:
        right = [a for ok, a in v if ok]
        wrong = [a for ok, a in v if not ok]
        share = [f"{sum(x)} ({sum(x) / len(x):.3f})" if x else "-" for x in (right, wrong)]
        lines.append(f"| {kind} | {len(right)} | {share[0]} | {len(wrong)} | {share[1]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
