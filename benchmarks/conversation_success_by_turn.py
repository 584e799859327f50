"""Success by turn in the conversation task, each system with and without the critiques.

Reads the ``extras.success_by_turn`` curves of conversation results (a folder
of result JSON files, ``results/conversation`` by default) and draws one line
per system and walk: solid with the critiques, dashed without them. Several
seeds of one system are averaged.

    .venv/bin/python benchmarks/conversation_success_by_turn.py [RESULTS_DIR] [-o docs/img/conversation_success_by_turn.png]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def curves(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """system -> walk -> mean success-by-turn curve over the seeds found."""
    runs: dict[str, dict[str, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(folder.glob("*.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if r.get("status") != "success" or r.get("task", {}).get("family") != "conversation":
            continue
        sbt = (r.get("extras") or {}).get("success_by_turn") or {}
        name = r["system"]["name"] + (" (oracle)" if r["system"].get("oracle") else "")
        for walk, c in sbt.items():
            runs[name][walk].append(c)
    return {s: {w: np.mean(np.array(cs, dtype=float), axis=0) for w, cs in ws.items()} for s, ws in runs.items()}


def plot(data: dict[str, dict[str, np.ndarray]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    order = sorted(data, key=lambda s: -data[s].get("critiques", np.zeros(1))[-1])
    for j, system in enumerate(order):
        color = colors[j % len(colors)]
        for walk, style in (("critiques", "-"), ("no_critique", "--")):
            c = data[system].get(walk)
            if c is None:
                continue
            label = f"{system}, {'with critiques' if walk == 'critiques' else 'without'}"
            ax.plot(np.arange(1, len(c) + 1), c, style, color=color, marker="o" if walk == "critiques" else None,
                    markersize=3, label=label)
    ax.set_xlabel("turn")
    ax.set_ylabel("share of users satisfied by this turn")
    ax.set_ylim(0, 1.02)
    ax.set_title("conversation: success by turn (solid: with critiques, dashed: without)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # beside the axes: no line hidden
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="?", default="results/conversation", type=Path)
    ap.add_argument("-o", "--output", default=Path("docs/img/conversation_success_by_turn.png"), type=Path)
    args = ap.parse_args()
    data = curves(args.results)
    if not data:
        raise SystemExit(f"{args.results}: no conversation result with success_by_turn; rerun the task")
    plot(data, args.output)
    print(f"wrote {args.output} ({len(data)} systems)")


if __name__ == "__main__":
    main()
