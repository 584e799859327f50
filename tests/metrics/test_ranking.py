"""Ranking metrics against hand-computed values, ranx, and RecBole's own evaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from talkwalk_bench.metrics.ranking import RANKING_METRICS, hit_matrix, ranking_metrics


def test_hand_computed_single_episode():
    # ranked: x a y b z ; relevant {a, b, c}
    H, n_rel = hit_matrix([["x", "a", "y", "b", "z"]], [["a", "b", "c"]], 5)
    assert H.tolist() == [[0, 1, 0, 1, 0]]
    m = ranking_metrics(H, n_rel, [1, 2, 5])
    assert m["Hit@1"][0] == 0 and m["Hit@2"][0] == 1
    assert m["Recall@5"][0] == pytest.approx(2 / 3)
    assert m["Precision@5"][0] == pytest.approx(2 / 5)
    assert m["Precision@2"][0] == pytest.approx(1 / 2)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["nDCG@5"][0] == pytest.approx(dcg / idcg)
    # with K=2 only one relevant fits: ideal = 1 + 1/log2(3)
    assert m["nDCG@2"][0] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m["MRR@5"][0] == pytest.approx(0.5)
    assert m["MRR@1"][0] == 0
    # AP@5 = (P@2 + P@4) / min(3, 5) = (1/2 + 2/4) / 3
    assert m["MAP@5"][0] == pytest.approx((0.5 + 0.5) / 3)
    # AP@2 = P@2 / min(3, 2)
    assert m["MAP@2"][0] == pytest.approx(0.5 / 2)


def test_duplicates_count_once_and_short_lists():
    H, n_rel = hit_matrix([["a", "a", "b"], ["q"]], [["a"], ["z"]], 4)
    assert H.tolist() == [[1, 0, 0, 0], [0, 0, 0, 0]]
    m = ranking_metrics(H, n_rel, [4])
    assert m["Precision@4"].tolist() == [0.25, 0.0]  # a short list still divides by K


def test_canonical_names_and_order():
    H, n_rel = hit_matrix([["a"]], [["a"]], 10)
    names = list(ranking_metrics(H, n_rel, [5, 10]))
    assert names[:2] == ["Hit@5", "Hit@10"] and "nDCG@10" in names and len(names) == 12


def test_rejects_unscorable_episodes():
    H, n_rel = hit_matrix([["a"]], [[]], 1)
    with pytest.raises(ValueError, match="without relevant"):
        ranking_metrics(H, n_rel, [1])


def _random_runs(seed: int, n_q: int = 200, n_docs: int = 60, k_max: int = 20, max_rel: int = 20):
    rng = np.random.default_rng(seed)
    ranked, targets = [], []
    for _ in range(n_q):
        docs = [f"d{i}" for i in rng.permutation(n_docs)[:k_max]]
        n_rel = int(rng.integers(1, max_rel + 1))
        targets.append([f"d{i}" for i in rng.choice(n_docs, size=n_rel, replace=False)])
        ranked.append(docs)
    return ranked, targets


def test_agrees_with_ranx():
    ranx = pytest.importorskip("ranx")
    ks = [1, 3, 5, 10, 20]
    # ranx's AP divides by all relevant items; ours (RecBole's) by min(n_rel, K): compare
    # MAP where n_rel <= K, everything else on unrestricted runs
    for max_rel, names in ((20, ["Hit", "Recall", "Precision", "nDCG", "MRR"]), (1, ["MAP"])):
        ranked, targets = _random_runs(7, max_rel=max_rel)
        H, n_rel = hit_matrix(ranked, targets, 20)
        ours = ranking_metrics(H, n_rel, ks, names)
        qrels = ranx.Qrels({f"q{i:04d}": {d: 1 for d in t} for i, t in enumerate(targets)})
        run = ranx.Run({f"q{i:04d}": {d: float(len(r) - j) for j, d in enumerate(r)} for i, r in enumerate(ranked)})
        rx_name = {"Hit": "hit_rate", "Recall": "recall", "Precision": "precision", "nDCG": "ndcg", "MRR": "mrr", "MAP": "map"}
        for name in names:
            for k in ks:
                got = ranx.evaluate(qrels, run, f"{rx_name[name]}@{k}", return_mean=False)
                np.testing.assert_allclose(ours[f"{name}@{k}"], got, atol=1e-9, err_msg=f"{name}@{k}")


def test_agrees_with_recbole_evaluator(monkeypatch):
    torch = pytest.importorskip("torch")
    metrics = pytest.importorskip("recbole.evaluator.metrics")
    ranked, targets = _random_runs(11, max_rel=30)
    H, n_rel = hit_matrix(ranked, targets, 20)
    ks = [1, 5, 10, 20]
    ours = ranking_metrics(H, n_rel, ks)
    # RecBole 1.2.1's MAP still uses the alias np.float, removed in numpy 1.24
    monkeypatch.setattr(np, "float", float, raising=False)
    config = {"topk": ks, "metric_decimal_place": 12}
    pos_index = torch.from_numpy(H.astype(bool)).numpy()
    pos_len = n_rel.astype(np.int64)
    impl = {"Hit": metrics.Hit, "Recall": metrics.Recall, "Precision": metrics.Precision,
            "nDCG": metrics.NDCG, "MRR": metrics.MRR, "MAP": metrics.MAP}
    for name, cls in impl.items():
        m = cls(config)
        try:
            per_user = m.metric_info(pos_index, pos_len)
        except TypeError:
            per_user = m.metric_info(pos_index)
        for k in ks:
            np.testing.assert_allclose(ours[f"{name}@{k}"], per_user[:, k - 1], atol=1e-9, err_msg=f"{name}@{k}")
    assert set(impl) == set(RANKING_METRICS)
