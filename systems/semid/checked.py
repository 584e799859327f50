"""``semid-constrain`` checks its reader's reading against its satisfaction head before it keeps to it.

The system reads each request twice, in two independent ways: the reader
(``reading.py``) emits a constraint, and the satisfaction head
(``heed.py``) gives every item a probability of satisfying the request.
The reader's one systematic error is a bound read the wrong way round
("made no earlier than 1980" read as ``year < 1980``); the head, trained on
dense labels for every item, reads most of those the right way. Keeping to
a flipped reading leaves only items that break the request, and the head's
weighting cannot bring them back.

So before decoding keeps to a reading, the head is asked whether it agrees
with it: the items the reading keeps to (for ``Credible`` readings, those it
makes ``CREDIBLE`` sure) must be, on average, likelier to satisfy the
request than the items it rules out. Where they are not, the two readings
contradict each other; decoding keeps to no constraint and the head alone
heeds the request, as it does where the reader is unsure. The rule has no
threshold to tune: it compares two means of the system's own probabilities.
Neither reading ever sees the task's predicate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from systems.semid.heed import HeedingNegatingReaderRecommender
from systems.semid.reading import CREDIBLE, Credible

SET_ASIDE = " (set aside: the satisfaction head reads the request the other way)"


class CheckedReaderRecommender(HeedingNegatingReaderRecommender):
    """``semid-constrain``: ``HeedingNegatingReaderRecommender`` that keeps to its reader's reading only where its
    satisfaction head agrees with it (the module docstring)."""

    check = True  # False: keep to every reading, as before the check

    def satisfaction(self, r: Any) -> np.ndarray:
        # the head's reading of one request serves both the check and the decoding prior: read it once
        key = (r.utterance, self.anchor_of(r))
        memo = getattr(self, "_sat_memo", None)
        if memo is None or memo[0] != key:
            memo = self._sat_memo = (key, super().satisfaction(r))
        return memo[1]

    def kept(self, pred: Any) -> np.ndarray:
        """Whether decoding keeps each item (code-space order) under ``pred``: it satisfies the predicate, or, for
        ``Credible`` readings, is ``CREDIBLE`` sure to satisfy the request under them."""
        if not isinstance(pred, Credible):
            return self._mask(pred) > 0.5
        sure = np.zeros(len(self.space.item_ids))
        for p, _, prob in pred.readings:
            sure += prob * (self._mask(p) if p is not None else 1.0)
        return sure >= CREDIBLE - 1e-9

    def agrees(self, r: Any, pred: Any) -> bool:
        """Whether the head finds the items ``pred`` keeps likelier, on average, to satisfy ``r`` than the rest
        (True when the reading keeps every item or none: there is nothing to compare)."""
        inside = self.kept(pred)
        if inside.all() or not inside.any():
            return True
        p = np.exp(self.satisfaction(r))
        return bool(p[inside].mean() > p[~inside].mean())

    def read(self, r: Any) -> tuple[str, Any, Any]:
        text, pred, key = super().read(r)
        if not self.check or pred is None or getattr(self, "heed", None) is None or self.agrees(r, pred):
            return text, pred, key
        return text + SET_ASIDE, None, key
