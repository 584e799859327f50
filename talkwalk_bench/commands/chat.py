"""``talkwalk-bench chat``: steer any registered system from the terminal, one utterance per line.

It says what it is doing before a system trains (and where the trained
model is cached), shows the user's recent history and the starting list,
then after each turn: the constraint it read in the words (the system's own
parse where the system exposes one, else the dataset card's keyword
reading), the new list and, per item, why it is there (new or kept, which
part of the request it meets or misses, what it shares with the user's
history). Words in which nothing is recognised are answered "not
understood" and leave the list as it was (``:say TEXT`` sends them anyway).
Reads stdin, so it can be scripted:
``printf 'a comedy\\nno romance\\ngo back\\n' | talkwalk-bench chat --system contrastive``.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from collections import Counter
from typing import Any, TextIO

from talkwalk_bench.argtypes import whole

HELP = ("commands: ':help' this text, ':history' the user's recent items, ':user ID' switch user (new conversation), "
        "':reset' new conversation, ':say TEXT' send words even if none is recognised, ':quit' (or EOF) to stop")
# words that ask for a change without naming an attribute value: understood as requests, not nonsense
INTENT_WORDS = {"variety", "varied", "diverse", "different", "else", "other", "another", "similar", "like", "alike", "same",
                "close", "closer", "back", "undo", "revert", "before", "previous", "more", "less", "fewer", "newer", "older",
                "recent", "old", "new", "classic", "modern", "fun", "light", "dark", "serious", "surprise", "again", "instead"}
# first-use cost of systems that train, measured on 2 shared cores (docs of each system)
FIRST_USE = {"contrastive": "about 15 min (encoding the catalog ~7, training ~6)", "sasrec": "a few minutes",
             "semid": "many minutes", "text-only": "about a minute (encoding the catalog)"}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("chat", help="interactive steering session with a system (reads stdin)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--system", default=os.environ.get("TALKWALK_SYSTEM"), required=os.environ.get("TALKWALK_SYSTEM") is None,
                   help="system name ($TALKWALK_SYSTEM)")
    p.add_argument("-S", "--system-arg", action="append", metavar="KEY=VALUE", help="system argument override")
    p.add_argument("--dataset", default=os.environ.get("TALKWALK_DATASET", "ml-100k"), help="dataset ($TALKWALK_DATASET)")
    p.add_argument("--user", default=os.environ.get("TALKWALK_CHAT_USER", ""), help="user id to steer as (default: the first test user)")
    p.add_argument("-k", type=whole("-k", env="TALKWALK_CHAT_K", minimum=1, maximum=1000), default=os.environ.get("TALKWALK_CHAT_K", "10"),
                   help="items per turn, 1-1000 ($TALKWALK_CHAT_K)")
    p.add_argument("--seed", type=whole("--seed", minimum=0, maximum=2**32 - 1), default=0)
    p.set_defaults(func=run_chat)


def _label(items: dict, card, item: str) -> str:
    row = items.get(item, {})
    if card is None:
        return item
    parts = []
    ent = card.item
    if ent.title:
        t = ent.attributes[ent.title].value_of(dict(row))
        if t:
            parts.append(str(t))
    for name, attr in ent.attributes.items():
        if attr.kind == "text":
            continue
        v = attr.value_of(dict(row))
        if attr.kind == "multi_categorical" and v:
            parts.append("/".join(sorted(v)))
        elif attr.kind == "ordinal" and v == v:
            parts.append(f"{name} {int(v)}")
        elif v:
            parts.append(f"{name} {v}")
    return " | ".join(parts) or item


def _keyword_reader():
    """The module behind the ``keyword`` entry point of ``talkwalk_bench.readers`` (None when none is installed)."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="talkwalk_bench.readers"):
        if ep.name == "keyword":
            try:
                return ep.load()
            except Exception:  # a broken plugin only hides the reading, never the chat
                return None
    return None


class Reader:
    """The dataset card's keyword reading of an utterance (values, decades, years, negation), for display and checks.

    It is the parser of the keyword-filter pipeline, used here only to say
    what the words ask for and whether each shown item meets it; it is not
    given to the system.
    """

    def __init__(self, card, ds) -> None:
        self.ok = False
        if card is None:
            return
        reader = _keyword_reader()
        if reader is None:
            return
        ItemMatcher, Lexicon, merge_ranges, parse = (  # noqa: N806 (names of the reader's classes and functions)
            reader.ItemMatcher, reader.Lexicon, reader.merge_ranges, reader.parse)
        self._parse, self._merge = parse, merge_ranges
        self.lexicon = Lexicon(card)
        self.matcher = ItemMatcher(card, ds.items, ds.item_ids)
        self.index = {it: j for j, it in enumerate(ds.item_ids)}
        self.card = card
        self.ok = True

    def read(self, text: str) -> list[dict[str, Any]]:
        """Constraints as dicts: attribute, kind (include, exclude, demote, range), values or low/high, phrase."""
        if not self.ok:
            return []
        parsed = self._merge(self._parse(text, self.lexicon))
        out = [{**c.as_dict(), "_c": c} for c in parsed.constraints]
        out += [{"attribute": a, "kind": d, "phrase": p} for a, d, p in parsed.relative]
        return out

    def check(self, c: dict[str, Any], item: str) -> bool | None:
        """Whether the item meets the constraint (for exclude/demote: lacks the refused thing); None when not checkable."""
        con = c.get("_c")
        if con is None or item not in self.index:
            return None
        has = self.matcher.satisfies(con, self.index[item])
        return has if con.kind in ("include", "range") else not has


def describe(c: dict[str, Any]) -> str:
    kind, attr = c.get("kind"), c.get("attribute", "")
    vals = " or ".join(c.get("values", []))
    if kind == "include":
        return f"{attr} is {vals}"
    if kind == "exclude":
        return f"{attr} is not {vals}"
    if kind == "demote":
        return f"less {vals} ({attr})"
    if kind == "range":
        lo, hi = c.get("low"), c.get("high")
        lo_t = "" if lo is None or (isinstance(lo, float) and math.isinf(lo)) else f"{lo:g}"
        hi_t = "" if hi is None or (isinstance(hi, float) and math.isinf(hi)) else f"{hi:g}"
        return f"{attr} {lo_t}–{hi_t}"
    if kind in ("newer", "older"):
        return f"{kind} ({attr}) than what was shown"
    return str({k: v for k, v in c.items() if k != "_c"})


def _short(c: dict[str, Any]) -> str:
    """What an item meets or misses, in a word or two: ``Comedy``, ``no Horror``, ``less Drama``, ``1990–1999``."""
    if c.get("kind") == "range":
        return describe(c).split(" ", 1)[1]
    vals = " or ".join(c.get("values", []))
    return {"exclude": f"no {vals}", "demote": f"less {vals}"}.get(c.get("kind"), vals) or c.get("kind", "")


def _recognised(text: str, constraints: list, titles: dict[str, str]) -> bool:
    """Anything a system could act on: a constraint, a change word, or an item's title."""
    if constraints:
        return True
    words = set(re.findall(r"[a-z']+", text.lower()))
    if words & INTENT_WORDS:
        return True
    low = text.lower()
    return any(len(t) >= 4 and t.lower() in low for t in titles.values())


def run_chat(a: argparse.Namespace, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    import numpy as np

    from talkwalk_bench.cli import parse_kv
    from talkwalk_bench.data.card import load_card
    from talkwalk_bench.data.dataset import load_dataset
    from talkwalk_bench.data.split import leave_one_out
    from talkwalk_bench.errors import BenchError
    from talkwalk_bench.paths import cache_dir
    from talkwalk_bench.registry import build_system
    from talkwalk_bench.types import Request, Turn

    inp, out = stdin or sys.stdin, stdout or sys.stdout
    interactive = hasattr(inp, "isatty") and inp.isatty()
    if not isinstance(a.k, int) or a.k < 1:
        raise BenchError(f"-k {a.k!r}: items per turn must be a whole number >= 1")

    def say(*parts: Any) -> None:
        print(*parts, file=out, flush=True)

    say(f"loading {a.dataset} ...")
    ds = load_dataset(a.dataset)
    split = leave_one_out(ds)
    try:
        card = load_card(ds.name)
    except BenchError:
        card = None
    system, _ = build_system(a.system, parse_kv(a.system_arg))
    family = a.system.split("-")[0] if a.system.split("-")[0] in FIRST_USE else a.system
    if family in FIRST_USE:
        say(f"fitting {a.system}: on first use it trains, {FIRST_USE[family]} on 2 cores, and caches the model under "
            f"{cache_dir()}; later starts load it in seconds")
    else:
        say(f"fitting {a.system} ...")
    t0 = time.perf_counter()
    system.fit(split.train_data(card), seed=a.seed)
    say(f"ready ({time.perf_counter() - t0:.1f} s)")
    users = list(split.test_item) or list(ds.user_ids)
    user = a.user or users[0]
    reader = Reader(card, ds)
    titles = {}
    if card is not None and card.item.title:
        ta = card.item.attributes[card.item.title]
        titles = {it: str(ta.value_of(dict(row)) or "") for it, row in ds.items.items()}

    def label(it: str) -> str:
        return _label(ds.items, card, it)

    def check_user(u: str) -> bool:
        if u not in ds.users and u not in split.train_sequences:
            say(f"no user {u!r} in {ds.name}; try e.g. {', '.join(users[:5])}")
            return False
        return True

    def taste(u: str) -> Counter:
        """Genre-like values of the user's history (the first multi-valued attribute of the card)."""
        if card is None:
            return Counter()
        attr = next(((n, x) for n, x in card.item.attributes.items() if x.kind == "multi_categorical"), None)
        if attr is None:
            return Counter()
        c: Counter = Counter()
        for it in split.history(u, "test"):
            c.update(attr[1].value_of(dict(ds.items.get(it, {}))) or ())
        return c

    def show_history(u: str, n: int = 5) -> None:
        hist = split.history(u, "test")
        top = ", ".join(f"{v} ({k})" for v, k in taste(u).most_common(3))
        say(f"user {u}: {len(hist)} items in the history{'; mostly ' + top if top else ''}. Most recent:")
        for it in list(hist)[-n:][::-1]:
            say(f"     {label(it)}")

    def recommend(u: str, turns: list, text: str | None):
        hist = split.history(u, "test")
        conv = tuple(turns) + ((Turn(text),) if text is not None else ())
        req = Request(user_id=u, history=hist, user=ds.users.get(u, {}), exclude=frozenset(hist), conversation=conv,
                      session_id=f"chat-{u}")
        [rank] = system.recommend([req], k=a.k)
        return [i for i in rank.items if i not in req.exclude][: a.k], rank

    def reasons(it: str, prev: tuple, constraints: list, liked: Counter) -> str:
        why = []
        if prev:
            why.append(f"kept (was #{prev.index(it) + 1})" if it in prev else "new")
        for c in constraints:
            ok = reader.check(c, it)
            if ok is not None:
                why.append(("meets " if ok else "misses ") + _short(c))
        if card is not None and liked:
            attr = next((x for x in card.item.attributes.values() if x.kind == "multi_categorical"), None)
            shared = sorted((attr.value_of(dict(ds.items.get(it, {}))) or set()) & set(v for v, _ in liked.most_common(3))) if attr else []
            if shared:
                why.append("like your history: " + ", ".join(shared))
        return "; ".join(why)

    def show_list(items: list, prev: tuple, constraints: list, liked: Counter) -> None:
        for n, it in enumerate(items, 1):
            mark = " " if not prev else ("=" if it in prev else "+")
            r = reasons(it, prev, constraints, liked)
            say(f"  {n:>2} {mark} {label(it)}" + (f"\n        why: {r}" if r else ""))

    def start(u: str) -> tuple[list, tuple, Any]:
        show_history(u)
        items, _ = recommend(u, [], None)
        say("starting list (no request yet):")
        show_list(items, (), [], taste(u))
        # the starting list was shown: "older than that" refers to it (as the steering task's neutral turn does)
        return [Turn("", tuple(items))], tuple(items), None

    if not check_user(user):
        raise BenchError(f"--user {user}: no such user in {ds.name}; pick one of e.g. {', '.join(users[:5])}")
    say(f"{a.system} on {ds.name}. {HELP}")
    turns, prev_items, prev_q = start(user)
    while True:
        if interactive:
            print("you> ", end="", file=out, flush=True)
        line = inp.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        head = text.split()[0]
        if head in (":quit", ":q", ":exit"):
            break
        if head in (":help", ":h", ":?"):
            say(HELP)
            continue
        if head == ":history":
            show_history(user, 10)
            continue
        if head == ":user":
            if len(text.split()) < 2:
                say(f"usage: :user ID (now user {user})")
            elif check_user(text.split()[1]):
                user = text.split()[1]
                say(f"-- user {user}, new conversation")
                turns, prev_items, prev_q = start(user)
            continue
        if head == ":reset":
            say("-- new conversation")
            turns, prev_items, prev_q = start(user)
            continue
        forced = head == ":say"
        if head.startswith(":") and not forced:
            say(f"unknown command {head!r}; {HELP}")
            continue
        if forced:
            text = text[len(":say"):].strip()
        constraints = reader.read(text)
        if not forced and not _recognised(text, constraints, titles):
            say(f"\n> {text}\n  not understood: no attribute value, year, change word or title recognised; "
                "the list is unchanged (':say TEXT' sends it anyway, ':help' for commands)")
            continue
        items, rank = recommend(user, turns, text)
        if not interactive:  # a typed line is on screen already; a piped one is not
            say(f"\n> {text}")
        own = (rank.trace or {}).get("constraints") if isinstance(rank.trace, dict) else None
        own_text = (rank.trace or {}).get("constraint") if isinstance(rank.trace, dict) else None
        if own:
            say("  understood (the system's own parse): " + "; ".join(describe(c) for c in own))
        elif own_text:
            say(f"  understood (the system's own reading): {own_text}")
        elif constraints:
            say("  understood (card keyword reading): " + "; ".join(describe(c) for c in constraints))
        else:
            say("  understood: a change without a checkable constraint (no attribute value or year named)")
        if rank.explanation and rank.explanation.strip().lower() not in (text.lower(), f"moved toward: {text.lower()}"):
            say(f"  system says: {rank.explanation}")
        q = rank.trace.get("query") if rank.trace else None
        if q is not None:
            q = np.asarray(q, dtype=float)
            if prev_q is not None and len(prev_q) == len(q):
                cos = float(q @ prev_q / (np.linalg.norm(q) * np.linalg.norm(prev_q) + 1e-12))
                say(f"  query moved: cosine to the previous point {cos:.3f}")
            prev_q = q
        show_list(items, prev_items, constraints, taste(user))
        checks = [reader.check(c, it) for c in constraints for it in items]
        checks = [x for x in checks if x is not None]
        if checks:
            say(f"  {sum(checks)} of {len(checks)} item checks meet what was asked")
        if prev_items:
            dropped = [i for i in prev_items if i not in items]
            kept = len(prev_items) - len(dropped)
            say(f"  moved: {len(items) - kept} new (+), {kept} kept (=), {len(dropped)} dropped")
        turns.append(Turn(text, tuple(items)))
        prev_items = tuple(items)
    return 0
