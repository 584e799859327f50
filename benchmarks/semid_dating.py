"""How well the base LLM dates an event, as ``semid`` and ``semid-constrain`` ask it to (``systems/semid/dated.py``).

Usage: python benchmarks/semid_dating.py [--base-model smollm2] [--newest 1998] [--out FILE]

For each event below (written for this check; none is an evaluation
phrasing, and none paraphrases one), the base LLM completes "<Event>
happened in the year" greedily over the years ``dated.EARLIEST`` to
``--newest``, as the systems do. An event is *dated* when the LLM gives its
year more than ``dated.SURE`` of the probability, else *left to the readers*.
Events with a known year count as right when the year is in their window;
the ones without (a weekend, a party) should be left to the readers.

Prints one row per event and the counts, and writes them as Markdown with
``--out``. Needs only the base LLM (no trained model); about a minute on one
thread.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (event, (first, last) year that counts as right, or None: no one year)
EVENTS: list[tuple[str, tuple[int, int] | None]] = [
    ("the end of World War II", (1945, 1945)),
    ("the start of the First World War", (1914, 1914)),
    ("the fall of the Berlin Wall", (1989, 1989)),
    ("the attack on Pearl Harbor", (1941, 1941)),
    ("the Great Depression", (1929, 1929)),
    ("the Kennedy assassination", (1963, 1963)),
    ("the Watergate scandal", (1972, 1974)),
    ("the Titanic sank", (1912, 1912)),
    ("the Cold War ended", (1989, 1991)),
    ("the Chernobyl disaster", (1986, 1986)),
    ("the Cuban missile crisis", (1962, 1962)),
    ("the Gulf War", (1990, 1991)),
    ("the death of Elvis Presley", (1977, 1977)),
    ("the Beatles broke up", (1970, 1970)),
    ("the Woodstock festival", (1969, 1969)),
    ("the American Civil War ended", (1865, 1865)),
    ("the weekend", None),
    ("the party", None),
    ("the rain", None),
    ("the meeting", None),
    ("the holidays", None),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-model", default="smollm2")
    ap.add_argument("--newest", type=int, default=1998, help="the catalog's newest year (ml-100k: 1998)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from systems.semid.dated import SURE, Dating
    from systems.semid.lm import load_base

    torch.set_num_threads(1)
    model, tok = load_base(args.base_model)
    dater = Dating.__new__(Dating)  # the systems' own dating, without a trained model
    dater.p, dater.tok, dater._newest, dater._year_trie, dater._date_lm = {"base_model": args.base_model}, tok, args.newest, None, model.eval()
    rows, counts = [], {"dated, right": 0, "dated, wrong": 0, "left to the readers": 0, "no one year, dated": 0}
    for event, window in EVENTS:
        year, p = dater.year_of(event)
        dated = p > SURE
        if window is None:
            verdict = "no one year, dated" if dated else "left to the readers"
        elif not dated:
            verdict = "left to the readers"
        else:
            verdict = "dated, right" if window[0] <= year <= window[1] else "dated, wrong"
        counts[verdict] += 1
        rows.append((event, "-" if window is None else f"{window[0]}" if window[0] == window[1] else f"{window[0]}-{window[1]}",
                     year, p, verdict))
    lines = ["| event | right year | LLM's year | probability | verdict |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {e} | {w} | {y} | {p:.2f} | {v} |" for e, w, y, p, v in rows]
    lines += ["", ", ".join(f"{k}: {v}" for k, v in counts.items()) + f" (of {len(rows)}; dated when p > {SURE})"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
