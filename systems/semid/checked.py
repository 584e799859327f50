"""``semid-constrain`` checks its reader's reading against its satisfaction head before it keeps to it.

The system reads each request twice, in two independent ways: the reader
(``reading.py``) emits a constraint, and the satisfaction head
(``heed.py``) gives every item a probability of satisfying the request.
The reader's one systematic error is a bound read the wrong way round
("made no earlier than 1980" read as ``year < 1980``); the head, trained on
dense labels for every item, reads most of those the right way. Keeping to
a flipped reading leaves only items that break the request, and the head's
weighting cannot bring them back.

So before decoding keeps to a bound it is sure of (one reading; several
credible ones already keep only to what they are 90 % sure of), the head is asked which way it reads
the request: the items the bound keeps must be, on average, likelier to
satisfy the request than the items it rules out (its complement, the one
reading the reader confuses it with). Where they are not, the two readings
contradict each other; decoding keeps to no constraint and the head alone
heeds the request, as it does where the reader is unsure. The rule has no
threshold to tune: it compares two means of the system's own probabilities.
Neither reading ever sees the task's predicate.

Only bounds are checked (``year < 1980``, ``year >= 1980``: an ordinal
constraint whose complement is in the language), not a relation to an item
nor a categorical constraint. The head has a feature for every year bin and
for "below the bin's lower edge", so it can say a bound either way exactly;
a relation to an item it reads through one relation feature, and a genre
through a soft weighting of all of them, and there its reading is the
weaker of the two (plain ``semid`` keeps to "older than X" in 0.72 of a
list at seed 1, where the reader's reading keeps to it in 0.84). A first
version that checked every reading set aside as many right readings of
those kinds as it caught flipped bounds (docs/semid.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from systems.semid.heed import HeedingNegatingReaderRecommender
from systems.semid.reading import Credible

SET_ASIDE = " (set aside: the satisfaction head reads the request the other way)"


class CheckedReaderRecommender(HeedingNegatingReaderRecommender):
    """``semid-constrain``: ``HeedingNegatingReaderRecommender`` that keeps to its reader's reading only where its
    satisfaction head agrees with it (the module docstring)."""

    check = True  # False: keep to every reading, as before the check

    def checks(self, text: str) -> bool:
        """Whether a reading is checked: a bound (an ordinal constraint whose complement is in the language),
        not a relation to an item."""
        if getattr(self, "_bounds", None) is None:
            self._bounds = {t for t in self.cspace.negation.values() if t not in self.cspace.anchored}
        return text in self._bounds

    def satisfaction(self, r: Any) -> np.ndarray:
        # the head's reading of one request serves both the check and the decoding prior: read it once
        key = (r.utterance, self.anchor_of(r))
        memo = getattr(self, "_sat_memo", None)
        if memo is None or memo[0] != key:
            memo = self._sat_memo = (key, super().satisfaction(r))
        return memo[1]

    def agrees(self, r: Any, pred: Any) -> bool:
        """Whether the head finds the items that satisfy ``pred`` likelier, on average, to satisfy ``r`` than the
        rest (True when every item or none satisfies it: there is nothing to compare)."""
        inside = self._mask(pred) > 0.5
        if inside.all() or not inside.any():
            return True
        p = np.exp(self.satisfaction(r))
        return bool(p[inside].mean() > p[~inside].mean())

    def read(self, r: Any) -> tuple[str, Any, Any]:
        text, pred, key = super().read(r)
        if (not self.check or pred is None or isinstance(pred, Credible) or getattr(self, "heed", None) is None
                or not self.checks(text) or self.agrees(r, pred)):
            return text, pred, key
        return text + SET_ASIDE, None, key
