"""Learning curves of the semantic-id systems: validation nDCG@10 against training CPU-minutes.

Usage: python benchmarks/semid_learning_curve.py LABEL=CACHE_DIR [LABEL=CACHE_DIR ...]
           [--point LABEL=MINUTES:NDCG ...] [--by-epoch] [--out docs/img/semid_learning_curve.png]

Each CACHE_DIR is a trained model's cache folder (the ``cache_dir`` a fit
reports): ``semid`` with ``recipe=seq`` logs its validation nDCG@10 every
``val_every`` sequence batches (``train_log.json``: ``training.curve``),
``semid-tiger`` after every epoch (``curve``). ``--point`` adds a single
measured point (e.g. the old prompt recipe, which logged no curve).
``--by-epoch`` puts ``semid-tiger``'s epochs on the x axis instead of time
(its log has wall time only, which sharing the cores distorts). Writes a
PNG with matplotlib and prints the curves as a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def curve(path: Path, by_epoch: bool = False) -> list[tuple[float, float]]:
    """(training CPU-minutes, validation nDCG@10) points of a cache folder.

    CPU time of the training process (all its threads, validation excluded)
    where the log has it, else wall minutes. A training that never finished
    has no ``train_log.json``; its ``checkpoint.pt`` holds the same log so far.
    """
    if (path / "train_log.json").exists():
        log = json.loads((path / "train_log.json").read_text())
        if "training" in log:  # semid, recipe=seq
            return [(r.get("cpu_minutes") or r["minutes"], r["val_ndcg@10"]) for r in log["training"].get("curve", [])]
        if by_epoch:
            return [(float(r["epoch"]), r["val_ndcg@10"]) for r in log.get("curve", [])]
        return [(r.get("cpu_seconds", r["seconds"]) / 60, r["val_ndcg@10"]) for r in log.get("curve", [])]  # semid-tiger
    import torch

    ck = torch.load(path / "checkpoint.pt", map_location="cpu", weights_only=False)
    return [(r.get("cpu_seconds", r["seconds"]) / 60, r["val_ndcg@10"]) for r in ck["log"] if "val_ndcg@10" in r]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", help="LABEL=CACHE_DIR")
    ap.add_argument("--point", action="append", default=[], help="LABEL=MINUTES:NDCG")
    ap.add_argument("--by-epoch", action="store_true", help="x axis: semid-tiger's epochs")
    ap.add_argument("--out", default="docs/img/semid_learning_curve.png")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for spec in args.runs:
        label, _, path = spec.partition("=")
        pts = curve(Path(path), args.by_epoch)
        unit = "epoch" if args.by_epoch else "CPU-min"
        print(f"{label}: " + ", ".join(f"{m:.1f} {unit} {v:.4f}" for m, v in pts))
        dashed = "codes only" in label
        # one colour per seed when labels name it, so the two recipes of a seed pair up
        seed = next((w for w in label.replace(",", " ").split() if w.isdigit()), None) if "seed" in label else None
        color = f"C{int(seed)}" if seed is not None else None
        ax.plot([m for m, _ in pts], [v for _, v in pts], marker="o", label=label, linestyle="--" if dashed else "-", color=color)
    for spec in args.point:
        label, _, mv = spec.partition("=")
        m, v = (float(x) for x in mv.split(":"))
        ax.scatter([m], [v], marker="x", s=80, color="black", zorder=3)
        ax.annotate(label, (m, v), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set_xlabel("epoch" if args.by_epoch else "training CPU-minutes (all threads of the training process; validation excluded)")
    ax.set_ylabel("validation nDCG@10 (ml-100k)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Semantic-id recommenders: validation nDCG@10 by " + ("epoch" if args.by_epoch else "training CPU time"), fontsize=10)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
