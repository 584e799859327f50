"""talkwalk-bench: a benchmark for steerable recommendation."""

import os as _os

# Nothing may reach a model hub at run time.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from talkwalk_bench.errors import BenchError  # noqa: E402
from talkwalk_bench.registry import SYSTEMS, build_system, register_system  # noqa: E402
from talkwalk_bench.types import (  # noqa: E402
    CatalogScorer,
    Interactions,
    Ranking,
    Recommender,
    Request,
    SystemMeta,
    TrainData,
    Turn,
)

__version__ = "0.1.0"
__all__ = [
    "SYSTEMS",
    "BenchError",
    "CatalogScorer",
    "Interactions",
    "Ranking",
    "Recommender",
    "Request",
    "SystemMeta",
    "TrainData",
    "Turn",
    "build_system",
    "register_system",
]
