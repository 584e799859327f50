"""Seconds per SASRec epoch on ml-100k at the default settings, and whether the default
training fits the 15-minute budget on this machine.

    .venv/bin/python benchmarks/sasrec_epoch_time.py [--threads 2] [--epochs 1]

Trains without the cache (into a temporary cache folder), so it always measures training.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

BUDGET_S = 15 * 60


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the system's default)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs to time")
    a = ap.parse_args()
    os.environ["TALKWALK_CACHE_DIR"] = tempfile.mkdtemp(prefix="sasrec-bench-")

    from talkwalk_bench.data import leave_one_out, load_dataset
    from talkwalk_bench.registry import build_system, system_defaults

    defaults = system_defaults("sasrec")
    overrides = {"epochs": a.epochs, "cache": False}
    if a.threads:
        overrides["threads"] = a.threads
    split = leave_one_out(load_dataset("ml-100k"))
    system, args = build_system("sasrec", overrides)
    t0 = time.perf_counter()
    system.fit(split.train_data(), seed=0)
    fit_s = time.perf_counter() - t0
    per_epoch = system.fit_info["train_s"] / max(1, system.fit_info["epochs_run"])
    projected = (fit_s - system.fit_info["train_s"]) + per_epoch * defaults["epochs"]
    ok = projected <= BUDGET_S
    print(f"threads={args['threads']} batch={args['train_batch_size']}: {per_epoch:.1f} s/epoch "
          f"(incl. validation); default {defaults['epochs']} epochs -> {projected / 60:.1f} min "
          f"[{'within' if ok else 'OVER'} the {BUDGET_S // 60}-minute budget]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
