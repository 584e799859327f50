"""How well the exclusion demotion marks the items of a ruled-out value, on the steering module's TRAIN templates only.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/contrastive_exclusion_dev.py

For every categorical item value and every ``exclude`` train template (said
with the value's first two aliases), the negated phrase is split off as at
inference and ``exclusion_mask`` marks items; reported: mean precision and
recall of the marked set against the items that really carry the value, and
how often nothing is marked, for a grid of ``exclude_z``; and how often the
cue-free polarity check calls each train exclude phrasing negative. The eval
phrasings are never read here; settings are chosen from this table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/contrastive_exclusion_dev.json")
    ap.add_argument("--z", default="0.5,1.0,1.5,2.0,2.5")
    ap.add_argument("--margins", default="0.05,0.1,0.2,0.3",
                    help="ground_margin grid for grounding the phrase in a metadata prototype")
    ap.add_argument("--system", default="contrastive")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    from systems.contrastive.query import exclusion_mask, split_negation
    from talkwalk_bench.data.card import load_card
    from talkwalk_bench.data.dataset import load_dataset
    from talkwalk_bench.data.split import leave_one_out
    from talkwalk_bench.registry import build_system
    from talkwalk_bench.steering.phrasings import train_templates

    card = load_card("ml-100k")
    ds = load_dataset("ml-100k")
    system, _ = build_system(a.system, {"progress": False})
    system.fit(leave_one_out(ds).train_data(card), seed=0)
    rows = [dict(ds.items[i]) for i in system.index.ids]
    cases = []
    for _name, attr in card.item.attributes.items():
        if attr.kind not in ("categorical", "multi_categorical"):
            continue
        for value, spec in attr.values.items():
            truth = np.array([value in (attr.value_of(r) if attr.kind == "multi_categorical" else {attr.value_of(r)})
                              for r in rows])
            if not truth.any():
                continue
            for t in train_templates()["exclude"]:
                for alias in spec.aliases[:2] or (value.lower(),):
                    utt = t.format(value=alias, noun=card.item.noun, nouns=card.item.noun + "s")
                    negs = split_negation(utt)[1]
                    if negs:
                        sims = system.index.vectors @ system.steer_text(negs[0])
                        cases.append((utt, sims, truth, negs[0], (_name, value)))
    table = []
    for z in [float(x) for x in a.z.split(",")]:
        prec, rec, none = [], [], 0
        for _, sims, truth, _, _ in cases:
            m = exclusion_mask(sims, z=z)
            if not m.any():
                none += 1
                rec.append(0.0)
                continue
            prec.append(float((m & truth).sum() / m.sum()))
            rec.append(float((m & truth).sum() / truth.sum()))
        table.append({"z": z, "precision": round(float(np.mean(prec)), 3) if prec else None,
                      "recall": round(float(np.mean(rec)), 3), "nothing_marked": round(none / len(cases), 3),
                      "cases": len(cases)})
        print(table[-1], flush=True)
    # grounding: the phrase's nearest single-value metadata prototype, else the z=1.0 direction mask
    grounded = []
    for g in [float(x) for x in a.margins.split(",")]:
        system.ground_margin = g
        prec, rec, hit, used = [], [], 0, 0
        for _, sims, truth, neg, value in cases:
            v = system.ground(neg)
            if v is not None:
                used += 1
                hit += v == value
                m = system._carries(*v)
            else:
                m = exclusion_mask(sims, z=1.0)
            prec.append(float((m & truth).sum() / m.sum()) if m.any() else 0.0)
            rec.append(float((m & truth).sum() / truth.sum()))
        grounded.append({"ground_margin": g, "grounded": round(used / len(cases), 3),
                         "grounded_correct": round(hit / max(used, 1), 3),
                         "precision": round(float(np.mean(prec)), 3), "recall": round(float(np.mean(rec)), 3),
                         "cases": len(cases)})
        print(grounded[-1], flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"source": "steering train templates (exclude)", "system": a.system,
                                       "table": table, "grounded": grounded}, indent=1))


if __name__ == "__main__":
    main()
