"""The semid systems end to end on a tiny random Llama and a 24-item catalog."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("vector_quantize_pytorch")

from systems.semid.tiny import save_tiny  # noqa: E402
from talkwalk_bench.data.card import load_card  # noqa: E402
from talkwalk_bench.registry import build_system  # noqa: E402
from talkwalk_bench.types import Interactions, Request, TrainData, Turn  # noqa: E402

GENRES = ["Comedy", "Drama", "Horror", "Action", "Romance", "Sci-Fi"]


def train_data() -> TrainData:
    items = {
        str(i): {
            "movie_title": (f"Film{i}",),
            "release_year": str(1950 + 2 * i),
            "class": (GENRES[i % 6],) + ((GENRES[(i + 1) % 6],) if i % 4 == 0 else ()),
        }
        for i in range(1, 25)
    }
    rng = np.random.default_rng(0)
    users, its = [], []
    for u in range(6):
        seq = rng.choice(list(items), 8, replace=False)
        users += [str(u)] * len(seq)
        its += list(seq)
    inter = Interactions(
        np.array(users, dtype=object),
        np.array(its, dtype=object),
        np.arange(len(its), dtype=float),
        np.full(len(its), np.nan),
    )
    empty = Interactions(*(np.array([], dtype=object),) * 2, np.array([]), np.array([]))
    return TrainData("tiny", "tiny", inter, empty, items, {}, tuple(items), load_card("ml-100k"))


ARGS = dict(
    embedder="card",
    widths="4x4x4",
    rqvae_steps=60,
    steps_a=3,
    steps_b=0,
    batch_size=2,
    max_len=64,
    infer_bf16=False,
    beam=24,
)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("semid")
    mp = pytest.MonkeyPatch()
    mp.setenv("TALKWALK_CACHE_DIR", str(root / "cache"))
    yield save_tiny(root / "base"), train_data()
    mp.undo()


def fitted(name, env, **over):
    base, data = env
    sys_, _ = build_system(name, {**ARGS, "base_model": str(base), **over})
    sys_.fit(data, seed=0)
    return sys_


def test_lists_are_valid_unique_and_skip_excluded(env):
    s = fitted("semid-align", env)
    assert s.meta.has("semantic_ids") and s.meta.has("scores")
    data = env[1]
    hist = ("1", "2", "3")
    reqs = [
        Request("0", history=hist, exclude=frozenset(hist)),
        Request("1", conversation=(Turn("something funny"),)),
    ]
    for r, rank in zip(reqs, s.recommend(reqs, k=10), strict=False):
        assert len(rank.items) == 10 == len(set(rank.items))
        assert set(rank.items) <= set(data.item_ids) and not set(rank.items) & r.exclude
        assert list(rank.scores) == sorted(rank.scores, reverse=True)
        for it, sid in zip(rank.items, rank.trace["semantic_ids"], strict=False):
            assert s.semantic_id(it) == tuple(sid) and s.item_for(sid) == it


def test_catalog_scores_are_a_distribution_matching_the_beam(env):
    s = fitted("semid-align", env)
    r = Request("0", history=("4", "5"), conversation=(Turn("scary"),))
    lp = s.score_catalog([r])[0]
    assert np.exp(lp).sum() == pytest.approx(1.0, abs=1e-4)
    top = s.recommend([r], k=5)[0]
    order = [env[1].item_ids[j] for j in np.argsort(-lp, kind="stable")[:5]]
    assert list(top.items) == order
    np.testing.assert_allclose(top.scores, np.sort(lp)[::-1][:5], atol=1e-4)


def test_stage_a_moves_only_new_rows_and_is_cached(env):
    from systems.semid.lm import load_base

    s = fitted("semid-align", env, steps_a=4)
    assert s.fit_info["cached"] is False and s.fit_info["stage_a"]["steps"] == 4
    base, _ = load_base(str(env[0]))
    n_old = s.vocab["n_old"]
    w = s.model.get_input_embeddings().weight
    assert torch.equal(w[:n_old], base.get_input_embeddings().weight)
    again = fitted("semid-align", env, steps_a=4)
    assert again.fit_info["cached"] is True
    assert torch.equal(again.model.get_input_embeddings().weight, w)


def test_lora_stage_and_content_only_variant_run(env):
    s = fitted("semid", env, steps_b=2, recipe="prompt")
    assert "stage_b" in s.fit_info and s.item_vec is None  # item vectors belong to the whole-sequence recipe
    p = fitted("semid-poc", env, steps_b=0)
    out = p.recommend([Request("9", conversation=(Turn("i want drama"),))], k=5)[0]
    assert len(set(out.items)) == 5


def test_unknown_decoder_is_a_one_line_error(env):
    from talkwalk_bench.errors import BenchError

    with pytest.raises(BenchError, match="decoder"):
        build_system("semid", {"decoder": "greedy"})
    with pytest.raises(BenchError, match="-S quantizer=pq"):
        build_system("semid", {"quantizer": "pq"})
    with pytest.raises(BenchError, match="-S explain=1.5"):
        build_system("semid", {"explain": 1.5})


def test_explain_top_fills_the_explanation_from_the_model_and_declares_it(env):
    plain = fitted("semid-align", env)
    r = Request("0", history=("4", "5"), conversation=(Turn("something funny"),))
    assert not plain.meta.has("explanations") and plain.recommend([r], k=3)[0].explanation is None
    s = fitted("semid-align", env, explain_top=1)
    assert s.meta.has("explanations")
    assert s._cache_key(env[1], 0) == plain._cache_key(env[1], 0)  # inference only
    rank = s.recommend([r], k=3)[0]
    assert isinstance(rank.explanation, str) and rank.explanation
    again = s.explain(s._prompt_ids(r), [s.semantic_id(rank.items[0])])
    assert again == rank.explanation


def test_bf16_is_used_only_where_the_cpu_computes_it_natively(capsys):
    from systems.semid.system import resolve_precision

    asked = {"bf16": True, "infer_bf16": True}
    kept = resolve_precision(asked, native=True)
    assert kept["used"] == asked and capsys.readouterr().err == ""
    fell = resolve_precision(asked, native=False)
    assert fell["asked"] == asked and fell["used"] == {"bf16": False, "infer_bf16": False}
    assert "no native bf16" in capsys.readouterr().err
    assert resolve_precision({"bf16": False, "infer_bf16": False}, native=False)["used"] == {"bf16": False, "infer_bf16": False}


def test_a_cpu_without_bf16_trains_and_decodes_in_fp32_and_says_so(env, monkeypatch):
    import systems.semid.system as S

    monkeypatch.setattr(S, "native_bf16", lambda: False)
    s = fitted("semid-align", env, bf16=True, infer_bf16=True)
    assert s.fit_info["precision"]["asked"] == {"bf16": True, "infer_bf16": True}
    assert s.fit_info["precision"]["used"] == {"bf16": False, "infer_bf16": False}
    assert {p.dtype for p in s.model.parameters()} == {torch.float32}
    fp32 = fitted("semid-align", env, bf16=False, infer_bf16=False)
    assert s.fit_info["cache_dir"] == fp32.fit_info["cache_dir"]  # the same training: one cached model
