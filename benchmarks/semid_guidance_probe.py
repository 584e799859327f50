"""Probe: ``semid`` with guidance at decoding, for its steering (docs/semid.md).

Lists the top ``k`` of ``lp_r + alpha * (lp_r - lp_0)``, where ``lp_r`` is the exact item
log-probability with the request and ``lp_0`` with the history alone (alpha from the
environment variable GUIDE_ALPHA, default 1; 0 is exact top-k without guidance). It replaces
``semid``'s whole-sequence decoding in this process only, then runs the usual command line, so
its results are probes: write them outside results/ and never publish them.

Usage: GUIDE_ALPHA=2 python benchmarks/semid_guidance_probe.py run --system semid \
           --task steerability --limit 100 --output /tmp/guided.json
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.getcwd())
from systems.semid import system as S  # noqa: E402
from talkwalk_bench.types import Ranking  # noqa: E402

ALPHA = float(os.environ.get("GUIDE_ALPHA", "1"))


def guided(self, requests, *, k):
    from systems.semid.decode import item_log_probs

    out = []
    for r in requests:
        n = int(self.p.get("max_history_infer") or self.p["max_history"])
        hist = self.space.history_tokens(r.history, n)
        full = np.full(len(self.item_ids), -np.inf)
        lp_r = item_log_probs(self.model, self._seq_prompt(r), self.trie, self.level_tokens, chunk=self.p["catalog_chunk"])
        if r.utterance and ALPHA:
            lp_0 = item_log_probs(self.model, [self.vocab["rec"], *hist], self.trie, self.level_tokens, chunk=self.p["catalog_chunk"])
            lp = lp_r + ALPHA * (lp_r - lp_0)
        else:
            lp = lp_r
        full[self._trie_cols] = lp
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
