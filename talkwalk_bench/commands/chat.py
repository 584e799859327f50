"""``talkwalk-bench chat``: steer any registered system from the terminal, one utterance per line.

Each turn prints the top-K items with their metadata and how the list moved
(new, kept, dropped); for systems that expose their query vector it also
prints how far the query point moved. Reads stdin, so it can be scripted:
``printf 'a comedy\\nno romance\\ngo back\\n' | talkwalk-bench chat --system contrastive``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

from talkwalk_bench.argtypes import whole

HELP = "commands: ':user ID' switch user (new conversation), ':reset' new conversation, ':help' this line, ':quit' (or EOF) to stop"


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


def run_chat(a: argparse.Namespace, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    import numpy as np

    from talkwalk_bench.cli import parse_kv
    from talkwalk_bench.data.card import load_card
    from talkwalk_bench.data.dataset import load_dataset
    from talkwalk_bench.data.split import leave_one_out
    from talkwalk_bench.errors import BenchError
    from talkwalk_bench.registry import build_system
    from talkwalk_bench.types import Request, Turn

    inp, out = stdin or sys.stdin, stdout or sys.stdout
    if not isinstance(a.k, int) or a.k < 1:
        raise BenchError(f"-k {a.k!r}: items per turn must be a whole number >= 1")
    ds = load_dataset(a.dataset)
    split = leave_one_out(ds)
    try:
        card = load_card(ds.name)
    except BenchError:
        card = None
    system, _ = build_system(a.system, parse_kv(a.system_arg))
    system.fit(split.train_data(card), seed=a.seed)
    users = list(split.test_item) or list(ds.user_ids)
    user = a.user or users[0]
    if user not in ds.users and user not in split.train_sequences:
        raise BenchError(f"--user {user}: no such user in {ds.name}; pick one of e.g. {', '.join(users[:5])}")

    def fresh() -> tuple[list, tuple, Any]:
        return [], (), None

    turns, prev_items, prev_q = fresh()
    print(f"{a.system} on {ds.name}, user {user}. {HELP}", file=out)
    for line in inp:
        text = line.strip()
        if text in (":quit", ":q", ":exit"):
            break
        if text in (":help", ":h", ":?"):
            print(HELP, file=out)
            continue
        if text.startswith(":") and text.split()[0] not in (":user", ":reset"):
            print(f"unknown command {text.split()[0]!r}; {HELP}", file=out)
            continue
        if text.startswith(":user"):
            user = text.split(maxsplit=1)[1] if len(text.split()) > 1 else user
            turns, prev_items, prev_q = fresh()
            print(f"-- user {user}, new conversation", file=out)
            continue
        if text == ":reset":
            turns, prev_items, prev_q = fresh()
            print("-- new conversation", file=out)
            continue
        hist = split.history(user, "test")
        req = Request(user_id=user, history=hist, user=ds.users.get(user, {}), exclude=frozenset(hist),
                      conversation=tuple(turns) + (Turn(text),), session_id=f"chat-{user}")
        [rank] = system.recommend([req], k=a.k)
        items = [i for i in rank.items if i not in req.exclude][: a.k]
        print(f"\n> {text or '(no text)'}", file=out)
        if rank.explanation:
            print(f"  why: {rank.explanation}", file=out)
        q = rank.trace.get("query") if rank.trace else None
        if q is not None:
            q = np.asarray(q, dtype=float)
            if prev_q is not None and len(prev_q) == len(q):
                cos = float(q @ prev_q / (np.linalg.norm(q) * np.linalg.norm(prev_q) + 1e-12))
                print(f"  query moved: cosine to the previous point {cos:.3f}", file=out)
            prev_q = q
        for n, it in enumerate(items, 1):
            mark = " " if not prev_items else ("=" if it in prev_items else "+")
            print(f"  {n:>2} {mark} {_label(ds.items, card, it)}", file=out)
        if prev_items:
            dropped = [i for i in prev_items if i not in items]
            kept = len(prev_items) - len(dropped)
            print(f"  moved: {len(items) - kept} new (+), {kept} kept (=), {len(dropped)} dropped", file=out)
        turns.append(Turn(text, tuple(items)))
        prev_items = tuple(items)
    return 0
