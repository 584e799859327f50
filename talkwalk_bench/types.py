"""The one interface between the harness and a system: requests in, rankings out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

# Request.context key under which tasks hand an oracle system (registered with oracle=True) the
# ground-truth predicate of the current request; never set for any other system.
ORACLE_KEY = "oracle_predicate"

if TYPE_CHECKING:
    from talkwalk_bench.data.card import DatasetCard

Capability = Literal["scores", "semantic_ids", "explanations", "query_trace", "steering"]
CAPABILITIES: tuple[str, ...] = ("scores", "semantic_ids", "explanations", "query_trace", "steering")


@dataclass(frozen=True)
class SystemMeta:
    """What a system is and what it can do.

    capabilities:
      scores        implements ``score_catalog``: a score for every catalog item
      semantic_ids  implements ``semantic_ids``: a hierarchical id per item
      explanations  fills ``Ranking.explanation``
      query_trace   fills ``Ranking.trace['query']`` with the query vector of the turn
      steering      reads ``Request.utterance`` (systems without it ignore the text)
    """

    name: str
    version: str = "0"
    params: Mapping[str, Any] = field(default_factory=dict)
    capabilities: frozenset[str] = frozenset()
    is_oracle: bool = False

    def has(self, capability: str) -> bool:
        return capability in self.capabilities


@dataclass(frozen=True)
class Turn:
    """One user turn: what the user said, and the items the system showed in answer.

    The current turn of a request has ``shown == ()``: it has not been answered yet.
    """

    utterance: str
    shown: tuple[str, ...] = ()


@dataclass(frozen=True)
class Request:
    """Everything that may move the query point for one recommendation list.

    history      the user's earlier items, oldest first
    user         user metadata (attribute name -> value), as in the dataset
    context      system-provided context (time of day, business rules, ...)
    conversation earlier turns and, last, the current one
    exclude      items that must not be recommended (already consumed)
    session_id   stable across the turns of one conversation
    """

    user_id: str
    history: tuple[str, ...] = ()
    user: Mapping[str, Any] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)
    conversation: tuple[Turn, ...] = ()
    exclude: frozenset[str] = frozenset()
    session_id: str = ""

    @property
    def utterance(self) -> str:
        """The current utterance, or '' for a request without text."""
        return self.conversation[-1].utterance if self.conversation else ""

    @property
    def shown(self) -> tuple[str, ...]:
        """Every item shown earlier in this conversation, in order."""
        return tuple(i for t in self.conversation for i in t.shown)


@dataclass(frozen=True)
class Ranking:
    """A recommendation list, best first, with the system's scores."""

    items: tuple[str, ...]
    scores: tuple[float, ...] = ()
    explanation: str | None = None
    trace: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scores and len(self.scores) != len(self.items):
            raise ValueError(
                f"Ranking has {len(self.items)} items but {len(self.scores)} scores"
            )


@dataclass(frozen=True)
class Interactions:
    """Interaction log columns, aligned; time-ordered within each user."""

    user_ids: np.ndarray  # str objects
    item_ids: np.ndarray  # str objects
    timestamps: np.ndarray  # float64
    ratings: np.ndarray  # float64, NaN where the dataset has none

    def __len__(self) -> int:
        return len(self.user_ids)


@dataclass(frozen=True)
class TrainData:
    """What a system may learn from: the training split and all metadata.

    key identifies the dataset and split, so systems can cache trained models on it.
    valid holds one validation interaction per user (for early stopping), or is empty.
    """

    key: str
    dataset_name: str
    train: Interactions
    valid: Interactions
    items: Mapping[str, Mapping[str, Any]]
    users: Mapping[str, Mapping[str, Any]]
    item_ids: tuple[str, ...]
    card: DatasetCard | None = None


@runtime_checkable
class Recommender(Protocol):
    """A steerable recommender. ``recommend`` is batched and keyword-only after the data."""

    meta: SystemMeta

    def fit(self, data: TrainData, *, seed: int) -> None: ...

    def recommend(self, requests: Sequence[Request], *, k: int) -> list[Ranking]: ...


@runtime_checkable
class CatalogScorer(Protocol):
    """Optional: systems with the ``scores`` capability."""

    def score_catalog(self, requests: Sequence[Request]) -> np.ndarray:
        """Scores of shape (len(requests), len(item_ids)), catalog order of fit()."""
        ...
