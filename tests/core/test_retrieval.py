"""Retrieval scores against hand-computed values and an independent sort-based formula."""

import numpy as np
import pytest
import torch

from cl.core.retrieval import (
    first_hit_ranks,
    image_text_recall,
    multimodal_map_at_k,
    recall_at_k,
)

# 3 images (rows) x 6 captions (columns); captions 0,1 -> image 0, 2,3 -> image 1, 4,5 -> image 2.
S = np.array([
    [0.9, 0.1, 0.8, 0.7, 0.2, 0.0],   # image 0: best caption 0 -> rank 0
    [0.5, 0.6, 0.3, 0.4, 0.1, 0.2],   # image 1: best own caption 3 (0.4); 0.5, 0.6 before -> rank 2
    [0.3, 0.2, 0.1, 0.9, 0.5, 0.8],   # image 2: best own caption 5 (0.8); 0.9 before -> rank 1
])
OWNER = np.array([0, 0, 1, 1, 2, 2])
# text->image ranks, by hand, per caption (column of S against the 3 images):
# c0 (img 0): 0.9 is the max -> 0;  c1 (img 0): 0.1 < 0.6, 0.2 -> 2;  c2 (img 1): 0.3 < 0.8 -> 1
# c3 (img 1): 0.4 < 0.7, 0.9 -> 2;  c4 (img 2): 0.5 > 0.2, 0.1 -> 0;  c5 (img 2): 0.8 > 0.0, 0.2 -> 0
I2T_RANKS = [0, 2, 1]
T2I_RANKS = [0, 2, 1, 2, 0, 0]


def test_first_hit_ranks_match_hand_computation_with_several_captions_per_image():
    i2t_pos = [{0, 1}, {2, 3}, {4, 5}]
    assert first_hit_ranks(S, i2t_pos).tolist() == I2T_RANKS
    assert first_hit_ranks(S.T, [{o} for o in OWNER]).tolist() == T2I_RANKS


def test_recall_at_k_hand_values():
    i2t_pos = [{0, 1}, {2, 3}, {4, 5}]
    assert recall_at_k(S, i2t_pos, 1) == pytest.approx(1 / 3)
    assert recall_at_k(S, i2t_pos, 2) == pytest.approx(2 / 3)
    assert recall_at_k(S, i2t_pos, 3) == 1.0
    assert recall_at_k(S.T, [[o] for o in OWNER], 1) == pytest.approx(3 / 6)
    assert recall_at_k(S.T, [[o] for o in OWNER], 2) == pytest.approx(4 / 6)


def test_image_text_recall_names_and_means():
    out = image_text_recall(S, OWNER, ks=(1, 2, 3))
    assert out["i2t_recall@1"] == pytest.approx(1 / 3)
    assert out["t2i_recall@2"] == pytest.approx(4 / 6)
    assert out["i2t_mean_recall"] == pytest.approx((1 / 3 + 2 / 3 + 1) / 3)
    assert out["t2i_mean_recall"] == pytest.approx((3 / 6 + 4 / 6 + 1) / 3)
    assert out["mean_recall"] == pytest.approx((out["i2t_mean_recall"] + out["t2i_mean_recall"]) / 2)
    assert set(out) == {"i2t_recall@1", "i2t_recall@2", "i2t_recall@3", "t2i_recall@1",
                        "t2i_recall@2", "t2i_recall@3", "i2t_mean_recall", "t2i_mean_recall",
                        "mean_recall"}


def _sorted_rank(row: np.ndarray, hits: set[int]) -> int:
    """Independent formula: position of the first hit in the list sorted by decreasing score."""
    order = np.argsort(-row, kind="stable")
    return int(next(pos for pos, g in enumerate(order) if g in hits))


def test_ranks_equal_sorted_list_position_on_random_scores():
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(60, 90))
    positives = [set(rng.choice(90, size=rng.integers(1, 6), replace=False).tolist()) for _ in range(60)]
    expected = [_sorted_rank(sim[q], positives[q]) for q in range(60)]
    assert first_hit_ranks(sim, positives).tolist() == expected
    assert first_hit_ranks(sim, positives, ties="optimistic").tolist() == expected
    for k in (1, 5, 10):
        assert recall_at_k(sim, positives, k) == pytest.approx(np.mean(np.array(expected) < k))


def test_image_text_recall_agrees_with_recall_at_k_on_both_directions():
    rng = np.random.default_rng(1)
    owner = np.repeat(np.arange(40), rng.integers(1, 7, size=40))
    sim = rng.normal(size=(40, owner.size))
    out = image_text_recall(torch.from_numpy(sim), owner)
    i2t_pos = [np.flatnonzero(owner == i) for i in range(40)]
    for k in (1, 5, 10):
        assert out[f"i2t_recall@{k}"] == recall_at_k(sim, i2t_pos, k)
        assert out[f"t2i_recall@{k}"] == recall_at_k(sim.T, [[o] for o in owner], k)


def test_ties_are_pessimistic_by_default_and_optimistic_on_request():
    row = np.array([[0.5, 0.5, 0.5, 0.2]])      # hit = item 2, tied with two non-hits
    assert first_hit_ranks(row, [[2]]).tolist() == [2]
    assert first_hit_ranks(row, [[2]], ties="optimistic").tolist() == [0]
    # other hits never count against a query: hits 0 and 2 tied with non-hit 1
    assert first_hit_ranks(row, [[0, 2]]).tolist() == [1]
    # a constant model cannot score: recall 0 unless k covers the gallery
    flat = np.zeros((5, 5))
    eye = [[i] for i in range(5)]
    assert recall_at_k(flat, eye, 4) == 0.0
    assert recall_at_k(flat, eye, 5) == 1.0
    assert recall_at_k(flat, eye, 1, ties="optimistic") == 1.0


def test_boolean_mask_equals_index_sets():
    mask = np.zeros((3, 6), dtype=bool)
    for i in range(3):
        mask[i, OWNER == i] = True
    assert first_hit_ranks(S, mask).tolist() == I2T_RANKS


@pytest.mark.parametrize("bad, error", [
    ([{0}, {1}], "2 entries for 3 queries"),
    ([{0}, set(), {1}], "no positive"),
    ([{0}, {6}, {1}], r"gallery indices in \[0, 6\)"),
    ("abc", "positives must be"),
])
def test_bad_positives_are_named(bad, error):
    with pytest.raises((ValueError, TypeError), match=error):
        first_hit_ranks(S, bad)


def test_bad_similarity_and_options():
    with pytest.raises(ValueError, match="NaN"):
        recall_at_k(np.array([[np.nan, 1.0]]), [[0]], 1)
    with pytest.raises(ValueError, match=r"\(Q, G\) matrix"):
        recall_at_k(np.ones(3), [[0]], 1)
    with pytest.raises(ValueError, match="positive integer"):
        recall_at_k(S, [[0], [2], [4]], 0)
    with pytest.raises(ValueError, match="ties"):
        recall_at_k(S, [[0], [2], [4]], 1, ties="random")
    with pytest.raises(ValueError, match="no caption"):
        image_text_recall(S[:, :4], OWNER[:4])    # image 2 keeps no caption
    with pytest.raises(ValueError, match="one per similarity column"):
        image_text_recall(S, OWNER[:5])


def test_multimodal_map_hand_computed():
    # gallery labels a a b b a c; query 0 (label a), query 1 (label b, also gallery item "g2")
    sim = np.array([
        [0.9, 0.1, 0.8, 0.3, 0.7, 0.2],     # ranked: g0(a) g2(b) g4(a) g3(b) g5(c) g1(a)
        [0.1, 0.2, 0.95, 0.9, 0.3, 0.8],    # ranked: g2(self) g3(b) g5(c) g4(a) g1 g0
    ])
    q_lab, g_lab = ["a", "b"], ["a", "a", "b", "b", "a", "c"]
    q_ids, g_ids = ["q0", "g2"], ["g0", "g1", "g2", "g3", "g4", "g5"]
    # query 0, k=5: P=3, n=min(5,3,6)=3, hits at 1 and 3 -> (1/1 + 2/3) / 2
    # query 1, k=5: self removed -> g3 g5 g4 g1 g0 (5 left); P=2 (g2 counts), n=2, hit at 1 -> 1
    assert multimodal_map_at_k(sim, q_lab, g_lab, 5, query_ids=q_ids, gallery_ids=g_ids) == \
        pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
    # k=1: query 0 hit at 1 -> 1; query 1 -> g3 hit -> 1
    assert multimodal_map_at_k(sim, q_lab, g_lab, 1, query_ids=q_ids, gallery_ids=g_ids) == 1.0
    # without ids the query's own gallery item is retrieved: query 1's list g2 g3 -> 1 as well,
    # and depth=2 cuts query 0's list to g0 g2: n = min(5, 3, 2) = 2, one hit -> 1
    assert multimodal_map_at_k(sim, q_lab, g_lab, 2, depth=2) == 1.0
    # ties are taken in gallery order (CTP's heapq.nlargest): g1 (a) before g3 (b)
    tied = np.array([[0.0, 0.5, 0.0, 0.5, 0.0, 0.0]])
    assert multimodal_map_at_k(tied, ["b"], g_lab, 1) == 0.0
    assert multimodal_map_at_k(tied, ["a"], g_lab, 1) == 1.0


def test_multimodal_map_rejects_bad_arguments():
    with pytest.raises(ValueError, match="raise depth"):
        multimodal_map_at_k(S, ["a"] * 3, ["a"] * 6, 11)
    with pytest.raises(ValueError, match="both"):
        multimodal_map_at_k(S, ["a"] * 3, ["a"] * 6, 1, query_ids=["x"] * 3)
    with pytest.raises(ValueError, match="3 query labels"):
        multimodal_map_at_k(S, ["a"] * 2, ["a"] * 6, 1)
