"""Retrieval scores of image-text tasks: Recall@K, mean recall and CTP's multimodal mAP@K.

Conventions
-----------
A *similarity* matrix has shape (Q, G): row ``q`` scores every gallery item for
query ``q``, higher meaning more similar (cosine similarity of unit-norm
embeddings in practice). Scores are fractions in [0, 1]; the reference code
(VSE++/Mod-X ``i2t``/``t2i``, CTP ``itm_eval``/``eval_gallery``) prints percent,
that is 100 times these values.

Image-text pairs are given by a *flat caption index*: captions are numbered
``0..N_captions-1`` and ``caption_to_image[c]`` is the image of caption ``c``. An
image may have several captions (5 in COCO and Flickr30K); image→text counts a
hit when *any* of its captions is retrieved, text→image when *its* image is.

Ties
----
The reference code sorts with ``np.argsort(score)[::-1]`` (an unstable
quicksort), so the order of exactly equal scores is unspecified there. Here it
is defined by ``ties``:

``"pessimistic"`` (default)
    a non-hit gallery item whose score equals the best hit's score ranks
    *before* it. A model that gives every item the same score gets recall 0
    (unless ``K`` covers the whole gallery), never a perfect score.
``"optimistic"``
    such a tie ranks *after* the hit.

Other hits never push a hit down: the rank of a query is the number of non-hit
items ranked before its best-scoring hit. With distinct scores both rules give
the references' ranks exactly. :func:`multimodal_map_at_k` reproduces CTP's own
deterministic rule instead (``heapq.nlargest``: equal scores in gallery order).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "first_hit_ranks",
    "image_text_recall",
    "multimodal_map_at_k",
    "recall_at_k",
]

Ties = Literal["pessimistic", "optimistic"]
_CHUNK = 256  # query rows per block: bounds the (rows, G) temporaries


def _similarity(similarity: Any) -> np.ndarray:
    """``similarity`` as a 2-D floating numpy array (torch tensors are detached to CPU)."""
    if hasattr(similarity, "detach"):
        similarity = similarity.detach().cpu().numpy()
    S = np.asarray(similarity)
    if S.dtype.kind not in "fiu" or S.ndim != 2 or 0 in S.shape:
        raise ValueError(
            f"similarity must be a non-empty real (Q, G) matrix, got dtype {S.dtype} "
            f"and shape {S.shape}."
        )
    if S.dtype.kind != "f":
        S = S.astype(np.float64)
    if np.isnan(S).any():
        raise ValueError("similarity contains NaN; recall is undefined (check the embeddings).")
    return S


def _check_ties(ties: str) -> None:
    if ties not in ("pessimistic", "optimistic"):
        raise ValueError(f"ties must be 'pessimistic' or 'optimistic', got {ties!r}.")


def _check_k(k: int, name: str = "k") -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"{name} must be a positive integer, got {k!r}.")


def _ranks(
    n_queries: int,
    rows_of: Callable[[int, int], np.ndarray],
    hits_of: Callable[[int, int], np.ndarray],
    ties: Ties,
) -> np.ndarray:
    """Rank of the best hit of every query; ``rows_of(start, stop)`` gives the scores of
    queries ``start:stop`` and ``hits_of(start, stop)`` their boolean hit mask, both of
    shape (stop - start, G)."""
    _check_ties(ties)
    out = np.empty(n_queries, dtype=np.int64)
    for start in range(0, n_queries, _CHUNK):
        stop = min(start + _CHUNK, n_queries)
        block, hits = rows_of(start, stop), hits_of(start, stop)
        empty = ~hits.any(axis=1)
        if empty.any():
            bad = (np.flatnonzero(empty) + start)[:5].tolist()
            raise ValueError(f"queries {bad} have no positive gallery item; recall is undefined.")
        best = np.where(hits, block, -np.inf).max(axis=1, keepdims=True)
        ahead = block >= best if ties == "pessimistic" else block > best
        out[start:stop] = (ahead & ~hits).sum(axis=1)
    return out


def _positive_mask(positives: Any, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (Q, G) mask from a mask or from one collection of gallery indices per query."""
    Q, G = shape
    if hasattr(positives, "detach"):
        positives = positives.detach().cpu().numpy()
    if isinstance(positives, np.ndarray) and positives.dtype == bool:
        if positives.shape != shape:
            raise ValueError(f"positive mask must have shape {shape}, got {positives.shape}.")
        return positives
    if isinstance(positives, str | bytes) or not isinstance(positives, Iterable):
        raise TypeError(
            "positives must be a boolean (Q, G) array or a sequence of Q collections of "
            f"gallery indices, got {type(positives).__name__}."
        )
    rows = list(positives)
    if len(rows) != Q:
        raise ValueError(f"positives has {len(rows)} entries for {Q} queries.")
    mask = np.zeros(shape, dtype=bool)
    for q, row in enumerate(rows):
        idx = np.atleast_1d(np.asarray(list(row) if isinstance(row, set | frozenset) else row))
        if idx.size == 0:
            continue  # reported by _ranks as a query without a positive
        if idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= G:
            raise ValueError(
                f"positives[{q}] = {idx.tolist()[:5]} must be gallery indices in [0, {G})."
            )
        mask[q, idx] = True
    return mask


def first_hit_ranks(similarity: ArrayLike, positives: Any, *, ties: Ties = "pessimistic") -> np.ndarray:
    """0-based rank of each query's best-ranked positive gallery item.

    Parameters
    ----------
    similarity : array-like or torch.Tensor, shape (Q, G)
    positives : sequence of Q collections of int, or bool array of shape (Q, G)
        For each query, the gallery indices that count as hits (at least one).
    ties : {"pessimistic", "optimistic"}
        Rank of a hit tied with non-hits (module docstring).

    Returns
    -------
    np.ndarray of int64, shape (Q,)
        Number of non-hit items ranked before the query's best hit; the
        reference's ``ranks`` (``np.where(inds == i)[0][0]`` minimised over hits).
    """
    S = _similarity(similarity)
    mask = _positive_mask(positives, S.shape)
    return _ranks(S.shape[0], lambda a, b: S[a:b], lambda a, b: mask[a:b], ties)


def recall_at_k(
    similarity: ArrayLike, positives: Any, k: int, *, ties: Ties = "pessimistic"
) -> float:
    """Recall@K: the fraction of queries with a hit among their top ``k`` gallery items.

    ``R@K = mean_q [ rank_q < K ]`` with ``rank_q`` from :func:`first_hit_ranks`.
    This is the image-sentence ranking recall of Karpathy & Fei-Fei, CVPR 2015
    ("R@K"), as computed by VSE++ (Faghri et al. 2018) ``evaluation.i2t``/``t2i``, the code
    Mod-X (ZixuanNi/Mod-X ``evaluation_models.py``) and CTP
    (KevinLight831/CTP ``product_evaluation.itm_eval``) use, divided by 100.

    Parameters
    ----------
    similarity : array-like or torch.Tensor, shape (Q, G)
    positives : sequence of Q collections of int, or bool array of shape (Q, G)
        For each query the gallery indices that count as hits, e.g. all captions
        of an image for image→text retrieval.
    k : int
        Cut-off, ``k >= 1``.
    ties : {"pessimistic", "optimistic"}
        See the module docstring.

    Returns
    -------
    float
        In [0, 1].
    """
    _check_k(k)
    return float(np.mean(first_hit_ranks(similarity, positives, ties=ties) < k))


def image_text_recall(
    similarity: ArrayLike,
    caption_to_image: ArrayLike,
    ks: Sequence[int] = (1, 5, 10),
    *,
    ties: Ties = "pessimistic",
) -> dict[str, float]:
    """Image→text and text→image Recall@K and their means, from one similarity matrix.

    Parameters
    ----------
    similarity : array-like or torch.Tensor, shape (N_images, N_captions)
        ``similarity[i, c]`` between image ``i`` and caption ``c``.
    caption_to_image : array-like of int, shape (N_captions,)
        The flat caption index: image of each caption. Every image needs a caption.
    ks : sequence of int
        Cut-offs; ``(1, 5, 10)`` in Mod-X and CTP.
    ties : {"pessimistic", "optimistic"}
        See the module docstring.

    Returns
    -------
    dict of str to float
        ``"i2t_recall@K"`` and ``"t2i_recall@K"`` for each K;
        ``"i2t_mean_recall"``, ``"t2i_mean_recall"`` (mean over ``ks``) and
        ``"mean_recall"``, their average: CTP's ``txt_r_mean``, ``img_r_mean`` and
        ``r_mean`` (``itm_eval``) divided by 100. Image→text is CTP's ``txt_r*``
        (text retrieval), text→image its ``img_r*``. Mod-X's ``rsum`` is
        ``600 * mean_recall`` for ``ks = (1, 5, 10)``.
    """
    S = _similarity(similarity)
    n_images, n_captions = S.shape
    owner = np.asarray(caption_to_image)
    if owner.shape != (n_captions,) or owner.dtype.kind not in "iu":
        raise ValueError(
            f"caption_to_image must be {n_captions} integer image indices (one per similarity "
            f"column), got dtype {owner.dtype} and shape {owner.shape}."
        )
    if owner.min() < 0 or owner.max() >= n_images:
        raise ValueError(f"caption_to_image must index images in [0, {n_images}).")
    captionless = np.setdiff1d(np.arange(n_images), owner)
    if captionless.size:
        raise ValueError(f"images {captionless[:5].tolist()} have no caption in caption_to_image.")
    if not ks:
        raise ValueError("ks must hold at least one cut-off.")
    for k in ks:
        _check_k(k, "each of ks")
    image_ids = np.arange(n_images)
    i2t = _ranks(n_images, lambda a, b: S[a:b],
                 lambda a, b: owner[None, :] == image_ids[a:b, None], ties)
    t2i = _ranks(n_captions, lambda a, b: S[:, a:b].T,
                 lambda a, b: image_ids[None, :] == owner[a:b, None], ties)
    out: dict[str, float] = {}
    for direction, ranks in (("i2t", i2t), ("t2i", t2i)):
        for k in ks:
            out[f"{direction}_recall@{k}"] = float(np.mean(ranks < k))
        out[f"{direction}_mean_recall"] = float(np.mean([out[f"{direction}_recall@{k}"] for k in ks]))
    out["mean_recall"] = (out["i2t_mean_recall"] + out["t2i_mean_recall"]) / 2
    return out


def _top_in_order(row: np.ndarray, depth: int) -> np.ndarray:
    """The ``depth`` largest entries of ``row``, largest first, equal values in index order
    (``heapq.nlargest(depth, range(G), row.take)``)."""
    if depth >= row.size:
        return np.argsort(-row, kind="stable")
    threshold = np.partition(row, row.size - depth)[row.size - depth]
    candidates = np.flatnonzero(row >= threshold)
    return candidates[np.argsort(-row[candidates], kind="stable")][:depth]


def multimodal_map_at_k(
    similarity: ArrayLike,
    query_labels: Sequence[Hashable],
    gallery_labels: Sequence[Hashable],
    k: int,
    *,
    query_ids: Sequence[Hashable] | None = None,
    gallery_ids: Sequence[Hashable] | None = None,
    depth: int = 10,
) -> float:
    """CTP's multimodal retrieval mAP@K: category-level retrieval of image-text items.

    Defined by CTP (Zhu et al., ICCV 2023; the multi-modal retrieval task of P9D)
    and computed as in KevinLight831/CTP ``product_evaluation.eval_gallery`` and
    ``compute_ap``. For each query ``q``:

    1. ``L_q`` = the ``depth`` gallery items of highest similarity, highest
       first, equal scores in gallery order; then the items whose id equals the
       query's id are removed (when ids are given), so ``L_q`` may be shorter;
    2. ``P_q`` = number of gallery items with the query's label (any id);
    3. ``n = min(k, P_q, len(L_q))`` and, with ``hit_i = [label(L_q[i]) = label(q)]``
       and ``h = sum_{i<n} hit_i``,
       ``AP_q = (1/h) * sum_{i<n} hit_i * (sum_{i'<=i} hit_i') / (i + 1)``
       (``AP_q = 0`` when ``h = 0``): precision at each hit, averaged over the hits
       found in the top ``n``.

    ``mAP@K = mean_q AP_q``. CTP embeds each item with its fused image-text
    (multimodal) encoder; the similarity given here may come from any embedding.

    Parameters
    ----------
    similarity : array-like or torch.Tensor, shape (Q, G)
    query_labels : sequence of hashable, length Q
        Category of each query (P9D ``cate_name``).
    gallery_labels : sequence of hashable, length G
    k : int
        Cut-off, ``1 <= k <= depth``; CTP reports 1, 5 and 10.
    query_ids, gallery_ids : sequence of hashable or None
        Item ids; a gallery item with the query's own id is never counted as
        retrieved. Give both or neither.
    depth : int
        Length of the candidate list taken before removing the query's own id
        (CTP: ``max_topk = 10``).

    Returns
    -------
    float
        In [0, 1].
    """
    S = _similarity(similarity)
    Q, G = S.shape
    _check_k(k)
    _check_k(depth, "depth")
    if k > depth:
        raise ValueError(f"k={k} exceeds the candidate depth={depth}; raise depth to at least k.")
    if len(query_labels) != Q or len(gallery_labels) != G:
        raise ValueError(
            f"need {Q} query labels and {G} gallery labels for a {S.shape} similarity, got "
            f"{len(query_labels)} and {len(gallery_labels)}."
        )
    if (query_ids is None) != (gallery_ids is None):
        raise ValueError("give both query_ids and gallery_ids, or neither.")
    if query_ids is not None and (len(query_ids) != Q or len(gallery_ids) != G):
        raise ValueError(f"need {Q} query ids and {G} gallery ids.")
    codes: dict[Hashable, int] = {}
    g_lab = np.array([codes.setdefault(x, len(codes)) for x in gallery_labels])
    q_lab = np.array([codes.setdefault(x, len(codes)) for x in query_labels])
    label_count = np.bincount(g_lab, minlength=len(codes))
    if query_ids is not None:
        id_codes: dict[Hashable, int] = {}
        g_id = np.array([id_codes.setdefault(x, len(id_codes)) for x in gallery_ids])
        q_id = np.array([id_codes.setdefault(x, len(id_codes)) for x in query_ids])
    total = 0.0
    for q in range(Q):
        ranked = _top_in_order(S[q], depth)
        if query_ids is not None:
            ranked = ranked[g_id[ranked] != q_id[q]]
        n = min(k, int(label_count[q_lab[q]]), ranked.size)
        hit = g_lab[ranked[:n]] == q_lab[q]
        if hit.any():
            precision = np.cumsum(hit) / np.arange(1, n + 1)
            total += float(precision[hit].sum() / hit.sum())
    return total / Q
