"""Semantic ids: widths, disambiguation, lookup both ways, codebook statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from systems.semid.ids import (
    SemanticIdTable,
    codebook_stats,
    default_widths,
    disambiguate,
    genre_coherence,
    spread_last_level,
)


def four_clusters(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """120 points around 4 well separated centres in 16-d, and their cluster labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(4, 16)) * 3
    lab = rng.integers(0, 4, 120)
    return centers[lab] + 0.2 * rng.normal(size=(120, 16)), lab


def test_default_widths_scale_with_catalog():
    assert default_widths(1682) == (16, 32, 32)
    assert default_widths(100) == (8, 16, 16)
    assert default_widths(16_000_000) == (256, 256, 256)


def test_disambiguation_makes_ids_unique_and_table_maps_both_ways():
    base = np.array([[0, 1, 2], [0, 1, 2], [3, 0, 0], [0, 1, 2]])
    codes = disambiguate(base)
    assert codes[:, -1].tolist() == [0, 1, 0, 2]
    t = SemanticIdTable(("a", "b", "c", "d"), codes, (4, 2, 3, 3))
    for it in "abcd":
        assert t.item(t.sid(it)) == it
    assert t.item((0, 1, 2, 3)) is None
    back = SemanticIdTable.from_json(t.to_json())
    assert back.sid("d") == (0, 1, 2, 2)


def test_duplicate_ids_rejected():
    with pytest.raises(ValueError):
        SemanticIdTable(("a", "b"), np.array([[1, 0], [1, 0]]), (2, 1))


def test_codebook_stats_hand_computed():
    codes = np.array([[0, 0], [0, 1], [1, 1], [1, 1]])
    s = codebook_stats(codes, (4, 2))
    l1, l2 = s["levels"]
    assert l1["usage"] == 0.5 and l1["perplexity"] == pytest.approx(2.0)
    p = np.array([0.25, 0.75])
    assert l2["usage"] == 1.0 and l2["perplexity"] == pytest.approx(
        math.exp(-(p * np.log(p)).sum())
    )
    assert s["collision_rate"] == 0.5 and s["max_collision_group"] == 2


def test_genre_coherence_hand_computed():
    codes = np.array([[0], [0], [0], [1], [1]])
    labels = [
        frozenset({"a"}),
        frozenset({"a", "b"}),
        frozenset({"c"}),
        frozenset({"d"}),
        frozenset({"d"}),
    ]
    g = genre_coherence(codes, labels)
    # item0: 1/2, item1: 1/2, item2: 0/2, item3: 1/1, item4: 1/1
    assert g["l1_neighbour_share_genre"] == pytest.approx((0.5 + 0.5 + 0 + 1 + 1) / 5)
    assert g["l1_items_sharing"] == pytest.approx(2 / 5)


def test_rqvae_uses_codebooks_and_groups_clusters():
    torch = pytest.importorskip("torch")
    pytest.importorskip("vector_quantize_pytorch")
    torch.set_num_threads(1)
    from systems.semid.ids import build_table

    emb, lab = four_clusters(0)
    t = build_table(
        [str(i) for i in range(120)],
        emb,
        widths=(4, 4, 4),
        labels=[frozenset([int(x)]) for x in lab],
        steps=150,
    )
    assert len({t.sid(str(i)) for i in range(120)}) == 120
    assert t.stats["levels"][0]["usage"] >= 0.75
    # level 1 separates the clusters far better than chance
    assert (
        t.stats["genre"]["l1_neighbour_share_genre"]
        > t.stats["genre"]["random_pair_share_genre"] + 0.3
    )


def test_residual_kmeans_level_one_recovers_the_clusters_and_ids_are_unique():
    pytest.importorskip("faiss")
    from systems.semid.ids import build_table

    emb, lab = four_clusters(1)
    t = build_table(
        [str(i) for i in range(120)],
        emb,
        widths=(4, 4, 8),
        labels=[frozenset([int(x)]) for x in lab],
        quantizer="rkmeans",
    )
    assert t.stats["rqvae"]["kind"] == "rkmeans"
    assert len({t.sid(str(i)) for i in range(120)}) == 120
    # four well separated clusters, four level-1 codes: each cluster on exactly one code
    l1 = t.codes[:, 0]
    assert all(len(set(l1[lab == c])) == 1 for c in range(4)) and len(set(l1)) == 4
    with pytest.raises(ValueError, match="quantizer"):
        build_table(["a", "b"], emb[:2], widths=(2, 2), quantizer="pq")


def test_spread_last_level_gives_distinct_codes_nearest_first():
    # items 0,1,2 share the prefix (0, 0); item 3 is alone on (1, 0)
    codes = np.array([[0, 0, 1], [0, 0, 1], [0, 0, 1], [1, 0, 2]])
    book = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    residual = np.array([[0.8, 0.0], [1.0, 0.1], [0.1, 0.0], [4.0, 4.0]])
    out = spread_last_level(codes, residual, book)
    assert out[:, :2].tolist() == codes[:, :2].tolist()  # coarser levels untouched
    # item 1 takes code 1 (d=0.01) before item 0 (d=0.04), item 2 code 0; item 0 gets code 2
    assert out[:, 2].tolist() == [2, 1, 0, 2]
    assert codebook_stats(out, (2, 1, 4))["collision_rate"] == 0.0
    assert codebook_stats(codes, (2, 1, 4))["collision_rate"] == 0.75


def test_spread_last_level_keeps_collisions_when_group_exceeds_codebook():
    codes = np.zeros((3, 2), dtype=np.int64)
    book = np.array([[0.0], [1.0]])
    out = spread_last_level(codes, np.array([[0.0], [0.1], [0.9]]), book)
    # item 0 -> code 0 (d=0), item 2 -> code 1 (d=0.01); item 1 keeps its code: one collision left
    assert out[:, 1].tolist() == [0, 0, 1]
