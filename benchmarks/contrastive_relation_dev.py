"""A development set for reading requests (systems/contrastive/grounding.py) that is not the eval phrasings.

Two parts:

- *held-out train templates*: for each kind, each steering train template is
  read by a grounder built without it (leave-one-template-out);
- *own phrasings* (``OWN`` below): everyday English written for this file,
  one idea per line, checked against the eval wall (phrases holding an
  eval-only word or word sequence are dropped before use; only the count
  dropped is printed). Anchored requests name the item as "that film", the
  way the system says a named title before reading it.

Measured: the relation read for anchored kinds, and whether the grounded
constraints define a set that satisfies the request for value kinds.

  python benchmarks/contrastive_relation_dev.py [--out PATH]
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from contrastive_grounding_dev import judge  # noqa: E402

from systems.contrastive.grounding import ANCHORED, Grounder  # noqa: E402
from systems.contrastive.lexicon import Lexicon  # noqa: E402
from systems.contrastive.text import TextEncoder, whole_words  # noqa: E402
from talkwalk_bench.data.card import load_card  # noqa: E402
from talkwalk_bench.data.dataset import load_dataset  # noqa: E402
from talkwalk_bench.steering import ItemValues, Vocabulary, train_templates  # noqa: E402

OWN: dict[str, tuple[str, ...]] = {
    "older": (
        "an older film than {title}", "something from before {title} came out", "go back in time from {title}",
        "something that predates {title}", "a film that was made earlier than {title}", "older stuff than {title}",
        "a film from an earlier year than {title}", "take me further into the past than {title}",
        "a movie that came before {title}", "less recent than {title}", "not as new as {title}",
        "something from the years before {title}", "a film older than {title}, please", "earlier stuff than {title}",
        "{title} is too new for me, go older", "an earlier release than {title}", "rewind to before {title}",
        "back further in time than {title}", "an oldie compared with {title}", "something more old-fashioned than {title}",
    ),
    "newer": (
        "a newer film than {title}", "something from after {title} came out", "something more modern than {title}",
        "a film that was made later than {title}", "more recent stuff than {title}", "come forward in time from {title}",
        "something released after {title} was", "a film from a later year than {title}", "less dated than {title}",
        "not as old as {title}", "something that came out after {title}", "{title} is too old for me, go newer",
        "a movie that followed {title}", "fresher than {title}", "a later film than {title}",
        "something made in the years after {title}", "more up to date than {title}", "a more contemporary film than {title}",
        "skip ahead in time from {title}", "younger than {title}",
    ),
    "similar": (
        "anything like {title}", "I loved {title}, find me another", "more films like {title}",
        "give me something close to {title}", "along the lines of {title}", "something that resembles {title}",
        "the same sort of film as {title}", "if I liked {title}, what else would I like?",
        "keep going with things like {title}", "{title} was fantastic, more please", "a film that matches {title}",
        "something with the same vibe as {title}", "stay near {title}", "closer to {title}", "a film much like {title}",
        "films in the same genre as {title}", "another {title} kind of film", "I'd enjoy more along those lines, like {title}",
        "more in that direction, {title}", "a twin of {title}",
    ),
    "contrast": (
        "something totally different to {title}", "a film not at all like {title}", "the complete opposite of {title}",
        "move away from {title}", "far away from {title}", "get away from stuff like {title}",
        "I didn't like {title}, something else entirely", "no more films like {title}",
        "something that has nothing in common with {title}", "a break from {title}",
        "{title} was not for me, try something different", "a different genre from {title}",
        "steer clear of anything like {title}", "dissimilar to {title}", "the other end of the spectrum from {title}",
        "a contrast to {title}", "nothing similar to {title}", "not like {title} at all", "less like {title}",
        "switch it up from {title}",
    ),
    "include": (
        "I'm craving some {value}", "give me {value}", "a good {value} {noun}", "{value} would be nice",
        "let me see {value} {nouns}", "I could go for some {value}", "my favourite is {value}", "{value} tonight",
        "find me a {value} {noun}", "something with lots of {value}", "I'm a big fan of {value}", "more {value}, please",
    ),
    "exclude": (
        "keep away from {value}", "I'd rather avoid {value}", "please leave {value} off the list", "I'm tired of {value}",
        "enough {value} already", "{value} bores me", "spare me any {value}", "take out the {value}",
        "cut the {value} {nouns}", "I really dislike {value}", "anything except {value}", "avoid {value} please",
        "{value} is a no from me", "less {value}, please",
    ),
    "include_range": (
        "{value} from the {bin}", "some {bin} {value}", "a {value} {noun} made in the {bin}", "{bin} {value} {nouns}, please",
        "I'd like {value}, from the {bin}", "{value} {nouns} of the {bin}", "looking for {value} in the {bin}",
        "the {bin} and {value}", "{value}, but from the {bin}", "only {bin} {value}",
    ),
    "include_exclude": (
        "{value} minus the {other}", "{value}, but keep {other} out", "{value} and avoid {other}",
        "{value}, leave out the {other}", "{value} without {other} please", "I'd like {value}, not {other}",
        "{value} rather than {other}", "a {value} {noun}, though no {other}",
    ),
}


def own_phrasings(card) -> dict[str, tuple[str, ...]]:
    """``OWN`` less any phrase the eval wall flags (eval-only words or word sequences)."""
    from talkwalk_bench.tasks.steering_eval import leaked

    out, dropped = {}, 0
    for kind, ts in OWN.items():
        keep = tuple(t for t in ts if not leaked(t, card))
        dropped += len(ts) - len(keep)
        out[kind] = keep
    print(f"own phrasings: {sum(map(len, out.values()))} kept, {dropped} dropped by the wall")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "contrastive_relation_dev.json"))
    ap.add_argument("--per-template", type=int, default=6)
    ap.add_argument("--skip-loo", action="store_true")
    ap.add_argument("--relation", default="blend", help="words | head | blend | margin (grounding.READERS)")
    ap.add_argument("--polarity", default="blend")
    ap.add_argument("--margin", type=float, default=0.2)
    ap.add_argument("--no-lexicon", action="store_true", help="read unseen words as nothing (no WordNet definitions)")
    args = ap.parse_args()
    card = load_card("ml-100k")
    ds = load_dataset("ml-100k")
    ids = list(ds.item_ids)
    iv = ItemValues(card, ds.items, ids)
    vocab = Vocabulary(card)
    enc = TextEncoder()
    newest = max(y for y in (v.get("year") for v in iv.values.values()) if y == y)
    tt = train_templates()
    kinds = tuple(OWN)
    kw = {"readers": {"relation": args.relation, "polarity": args.polarity}, "margin": args.margin,
          "lexicon": None if args.no_lexicon else Lexicon(), "familiar": whole_words()}

    def rendered(rng, kind: str, template: str, n: int):
        steers = vocab.all_steers(kind)
        if kind in ANCHORED:
            steers = steers * n
        for s in rng.sample(steers, min(n, len(steers))):
            yield s.say(template, noun=vocab.noun), (None if kind in ANCHORED else s.predicate)

    def score(g, kind, temps, rng, res, fails):
        for t in temps:
            for text, pred in rendered(rng, kind, t, args.per_template):
                if pred is not None and iv.mask(pred).sum() < 10:
                    continue
                ok, got = judge(g, text, kind, pred, iv, ids)
                res[kind].append(ok)
                if not ok:
                    fails.append((kind, text, got))

    report = {}
    if not args.skip_loo:
        res, fails = defaultdict(list), []
        rng = random.Random(0)
        for kind in kinds:
            for t in tt.get(kind, ()):
                held = {k: tuple(x for x in v if not (k == kind and x == t)) for k, v in tt.items()}
                score(Grounder(card, held, enc.encode, newest=newest, **kw), kind, [t], rng, res, fails)
        report["train_loo"] = {k: [float(np.mean(v)), len(v)] for k, v in res.items()}
        report["train_loo_failures"] = fails
    res, fails = defaultdict(list), []
    g = Grounder(card, tt, enc.encode, newest=newest, **kw)
    for kind, temps in own_phrasings(card).items():
        score(g, kind, temps, random.Random(1), res, fails)
    report["own"] = {k: [float(np.mean(v)), len(v)] for k, v in res.items()}
    report["own_failures"] = fails
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    for sec in ("train_loo", "own"):
        if sec in report:
            print(sec, "  ".join(f"{k}={v[0]:.2f}/{v[1]}" for k, v in report[sec].items()))
    seen = set()
    for kind, text, got in report["own_failures"]:
        key = (kind, text.split(" ")[0], got)
        if key not in seen:
            seen.add(key)
            print("  ", kind, "|", text, "|", got)


if __name__ == "__main__":
    main()
