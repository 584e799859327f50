"""What each part of the contrastive query builder buys, per request kind of the steerability task.

Runs ``talkwalk-bench run --task steerability`` for ``contrastive`` with parts
of the query builder switched off (inference switches only: every run loads
the same trained model), then writes a per-kind table (JSON + Markdown) and a
grouped bar plot of constraint_following@10 with the chance level per kind.

  embedding only      -S constrain=false -S constrain_anchored=false -S exclude_demote=false
  + demotion          -S constrain=false -S constrain_anchored=false   (ruled-out phrases demoted, no grounding)
  + grounded values   -S constrain_anchored=false                     (card values and ranges filter the list)
  + anchored          -S lexicon=false                                (older/newer/similar/different from a named item)
  + lexicon           (default)                                       (unfamiliar words read through their definition)

  python benchmarks/contrastive_steer_ablation.py --out /tmp/abl [--steering-file F] [--system contrastive]
      [--png docs/img/contrastive_ablation.png] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = [
    ("embedding only", ["constrain=false", "constrain_anchored=false", "exclude_demote=false"]),
    ("+ demotion", ["constrain=false", "constrain_anchored=false"]),
    ("+ grounded values/ranges", ["constrain_anchored=false"]),
    ("+ anchored relations", ["lexicon=false"]),
    ("+ lexicon (default)", []),
]
KINDS = ("include", "exclude", "include_exclude", "include_range", "range_bin", "before", "after",
         "older", "newer", "similar", "contrast")


def run(system: str, args: list[str], out: Path, steering_file: str | None, reuse: bool) -> dict:
    if not (reuse and out.exists()):
        cmd = [str(ROOT / ".venv" / "bin" / "talkwalk-bench"), "run", "--system", system, "--task", "steerability",
               "--no-progress", "--output", str(out), "--force"]
        for a in args:
            cmd += ["-S", a]
        if steering_file:
            cmd += ["--steering-file", steering_file]
        subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.read_text())


def per_kind(res: dict) -> dict[str, dict]:
    m = res["metrics"]
    out = {}
    for kind in ("all", *KINDS):
        key = "constraint_following@10" + ("" if kind == "all" else f"/{kind}")
        if key in m and m[key].get("value") is not None:
            e = m[key]
            out[kind] = {"cf": e["value"], "lo": e["ci_low"], "hi": e["ci_high"], "n": e["n"], "chance": e.get("chance")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--system", default="contrastive")
    ap.add_argument("--steering-file")
    ap.add_argument("--png")
    ap.add_argument("--reuse", action="store_true", help="reuse result files already in --out")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = "independent" if a.steering_file else "eval"
    table = {}
    for name, args in VARIANTS:
        slug = name.split("(")[0].strip(" +").replace(" ", "_").replace("/", "_")
        res = run(a.system, args, out / f"{a.system}_{tag}_{slug}.json", a.steering_file, a.reuse)
        table[name] = per_kind(res)
    (out / f"ablation_{a.system}_{tag}.json").write_text(json.dumps(table, indent=1) + "\n")
    kinds = [k for k in ("all", *KINDS) if all(k in t for t in table.values())]
    lines = ["| kind | chance (default) | " + " | ".join(table) + " |", "| --- | --- |" + " --- |" * len(table)]
    first = list(table.values())[-1]  # chance of anchored kinds depends on the list shown: the default's
    for k in kinds:
        lines.append(f"| {k} (n={first[k]['n']}) | {first[k]['chance']:.2f} | "
                     + " | ".join(f"{t[k]['cf']:.3f}" for t in table.values()) + " |")
    md = "\n".join(lines)
    (out / f"ablation_{a.system}_{tag}.md").write_text(md + "\n")
    print(md)
    if a.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        fig, ax = plt.subplots(figsize=(12, 4.2))
        w = 0.8 / len(table)
        x = np.arange(len(kinds))
        for j, (name, t) in enumerate(table.items()):
            v = np.array([t[k]["cf"] for k in kinds])
            err = np.array([[t[k]["cf"] - t[k]["lo"], t[k]["hi"] - t[k]["cf"]] for k in kinds]).T
            ax.bar(x + (j - (len(table) - 1) / 2) * w, v, w, yerr=err, capsize=2, label=name)
        ch = [first[k]["chance"] for k in kinds]
        ax.scatter(x, ch, marker="_", s=600, color="black", zorder=5, label="chance")
        ax.set_xticks(x, [f"{k}\n(n={first[k]['n']})" for k in kinds], fontsize=8)
        ax.set_ylim(0, 1.22)  # headroom: the legend sits above the bars, hiding none
        ax.set_ylabel("constraint following@10")
        where = "independent phrasings" if a.steering_file else "eval phrasings"
        ax.set_title(f"{a.system}: what each part of the query builder buys, per request kind ({where}, ml-100k, seed 0)")
        ax.legend(fontsize=7, ncol=5, loc="upper center")
        fig.tight_layout()
        Path(a.png).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(a.png, dpi=110)
        print("wrote", a.png)


if __name__ == "__main__":
    sys.exit(main())
