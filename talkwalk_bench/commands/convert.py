"""``talkwalk-bench convert``: native dataset formats -> atomic files + dataset-card skeleton."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert ML-1M, Amazon Reviews 2023 or Steam files into atomic files and a card skeleton")
    p.add_argument("format", choices=["ml-1m", "amazon", "steam"])
    p.add_argument("--input", help="ml-1m: folder with ratings.dat, movies.dat, users.dat")
    p.add_argument("--reviews", help="amazon/steam: review file (JSONL, optionally .gz)")
    p.add_argument("--meta", help="amazon: metadata JSONL; steam: games file")
    p.add_argument("--output", required=True, help="folder to write NAME.inter/.item/.user and NAME.card.yaml")
    p.add_argument("--name", help="dataset name (default: the format, e.g. ml-1m)")
    p.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    from talkwalk_bench.data import convert
    from talkwalk_bench.errors import BenchError

    name = a.name or a.format
    out = Path(a.output)
    if a.format == "ml-1m":
        if not a.input:
            raise BenchError("convert ml-1m needs --input FOLDER (with ratings.dat, movies.dat, users.dat)")
        convert.convert_ml1m(Path(a.input), out, name)
    else:
        if not a.reviews or not a.meta:
            raise BenchError(f"convert {a.format} needs --reviews FILE and --meta FILE")
        fn = convert.convert_amazon if a.format == "amazon" else convert.convert_steam
        fn(Path(a.reviews), Path(a.meta), out, name)
    print(f"wrote {out}/{name}.inter, .item{', .user' if a.format == 'ml-1m' else ''} and the card skeleton {out}/{name}.card.yaml", file=sys.stderr)
    print(f"run with: talkwalk-bench run --system popularity --task ranking --dataset {out}", file=sys.stderr)
    return 0
