"""Probe: ``semid`` with guidance at decoding, for its steering (docs/semid.md).

Lists the top ``k`` of ``lp_r + alpha * (lp_r - lp_0)``, where ``lp_r`` is the exact item
log-probability with the request and ``lp_0`` with the history alone (alpha from the
environment variable GUIDE_ALPHA, default 1; 0 is exact top-k without guidance). It replaces
``semid``'s whole-sequence decoding in this process only, then runs the usual command line, so
its results are probes: write them outside results/ and never publish them.

Usage: GUIDE_ALPHA=2 python benchmarks/semid_guidance_probe.py run --system semid \
           --task steerability --limit 100 --output /tmp/guided.json
"""
import dataclasses
import os
import sys

import numpy as np

sys.path.insert(0, os.getcwd())
from systems.semid import system as S  # noqa: E402
from talkwalk_bench.types import Ranking  # noqa: E402

ALPHA = float(os.environ.get("GUIDE_ALPHA", "1"))


def guided(self, requests, *, k):
    """Top-k by guided exact scores: ``score_catalog`` with the request and without its text."""
    out = []
    for r in requests:
        if r.utterance and ALPHA:
            lp_r, lp_0 = self.score_catalog([r, dataclasses.replace(r, conversation=())])
            with np.errstate(invalid="ignore"):  # items outside the trie: -inf - -inf
                full = np.where(np.isfinite(lp_r), lp_r + ALPHA * (lp_r - lp_0), -np.inf)
        else:
            full = self.score_catalog([r])[0]
        for it in r.exclude:
            j = self._col.get(it)
            if j is not None:
                full[j] = -np.inf
        top = np.argsort(-full)[:k]
        out.append(Ranking(tuple(self.item_ids[j] for j in top), tuple(float(full[j]) for j in top), trace={}))
    return out


S.SemIdRecommender._recommend_seq = guided
from talkwalk_bench.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
