"""Retrieval metrics against Mod-X's and CTP's evaluation code.

References executed (ast-extracted, unchanged; their modules' heavy imports are not needed by
these functions and are left out):

* Mod-X ``Continual_Learning/evaluation_models.py`` ``i2t``, ``t2i`` (the VSE++ code; cosine
  measure, 5 captions per image, the (5N, K) image layout: each image row repeated 5 times).
* CTP ``product_evaluation.py`` ``itm_eval`` (image→text and text→image recall with
  ``img2txt`` lists, any number of captions per image), ``eval_gallery`` and ``compute_ap``
  (multimodal mAP@1/5/10 with self-exclusion of the query's own item).

Ours: ``cl.core.retrieval.image_text_recall`` (fractions; compared ×100) and
``multimodal_map_at_k``. Inputs: random embeddings (distinct scores: the tie rules do not
matter); for the mAP also scores rounded to 0.1 (many ties: both keep gallery order).
"""

from __future__ import annotations

import common

NAME = "retrieval"
DESCRIPTION = "Recall@K and multimodal mAP@K vs Mod-X (VSE++) and CTP evaluation code"
REFERENCES = (common.Git("ZixuanNi/Mod-X", "a6a2f6c2d967a0c42d6ffe7e0efb0799733f7d82"),
              common.Git("KevinLight831/CTP", "7baab57f23f0b9b552c1eb852a5c6a20208ae76e"))


def run(refs: common.Refs) -> list[common.Row]:
    modx, ctp = (refs.path(r) for r in REFERENCES)
    import contextlib
    import heapq
    import io

    import numpy as np
    import torch

    from cl.core.retrieval import image_text_recall, multimodal_map_at_k

    vse = common.load_source(modx / "Continual_Learning" / "evaluation_models.py",
                             ["i2t", "t2i"], namespace={"numpy": np, "torch": torch})
    ev = common.load_source(ctp / "product_evaluation.py",
                            ["itm_eval", "compute_ap", "eval_gallery"],
                            namespace={"np": np, "heapq": heapq, "torch": torch})
    rng = np.random.default_rng(0)
    rows = []

    worst, sets = 0.0, 0
    for n in (37, 100, 400):
        for _ in range(3):
            img, cap = rng.normal(size=(n, 16)), rng.normal(size=(5 * n, 16))
            ours = image_text_recall(img @ cap.T, np.repeat(np.arange(n), 5))
            images = np.repeat(img, 5, axis=0)
            r_i2t, r_t2i = vse.i2t(images, cap), vse.t2i(images, cap)
            for k, ref_i, ref_t in zip((1, 5, 10), r_i2t[:3], r_t2i[:3]):
                worst = max(worst, abs(100 * ours[f"i2t_recall@{k}"] - ref_i),
                            abs(100 * ours[f"t2i_recall@{k}"] - ref_t))
            sets += 1
    rows.append(common.Row("`image_text_recall` (R@1/5/10, both directions)",
                           f"vs Mod-X `i2t`/`t2i`, {sets} sets, N = 37 … 400 images × 5 captions",
                           worst, dtype="float64 (percent)", tol=1e-10))

    worst, sets = 0.0, 0
    for n in (50, 300, 900):
        for _ in range(2):
            per = rng.integers(1, 4, n)
            owner = np.repeat(np.arange(n), per)
            img, cap = rng.normal(size=(n, 16)), rng.normal(size=(owner.size, 16))
            S = img @ cap.T
            img2txt = [list(np.flatnonzero(owner == i)) for i in range(n)]
            with contextlib.redirect_stdout(io.StringIO()):  # itm_eval prints per-task lines
                ref = ev.itm_eval(S, S.T, owner, img2txt)
            ours = image_text_recall(S, owner)
            pairs = {"txt_r1": "i2t_recall@1", "txt_r5": "i2t_recall@5",
                     "txt_r10": "i2t_recall@10", "txt_r_mean": "i2t_mean_recall",
                     "img_r1": "t2i_recall@1", "img_r5": "t2i_recall@5",
                     "img_r10": "t2i_recall@10", "img_r_mean": "t2i_mean_recall",
                     "r_mean": "mean_recall"}
            worst = max(worst, *(abs(100 * ours[o] - ref[r]) for r, o in pairs.items()))
            sets += 1
    rows.append(common.Row("`image_text_recall` (CTP names: all 9 entries of `itm_eval`)",
                           f"vs CTP `itm_eval`, {sets} sets, 50 … 900 images with 1–3 captions",
                           worst, dtype="float64 (percent)", tol=1e-10))

    for rounded in (False, True):
        Q, G, cats = 200, 1500, 25
        gallery_ids = np.array([f"g{i}" for i in range(G)])
        gallery_labels = rng.integers(0, cats, G)
        query_ids = [f"q{i}" for i in range(Q - 40)] + list(gallery_ids[:40])  # 40 self-hits
        query_labels = np.concatenate([rng.integers(0, cats, Q - 40), gallery_labels[:40]])
        S = rng.normal(size=(Q, G))
        if rounded:
            S = np.round(S, 1)
        q_label = {q: {"label": int(c)} for q, c in zip(query_ids, query_labels)}
        g_label = {g: {"label": int(c)} for g, c in zip(gallery_ids, gallery_labels)}
        label_ids = {c: list(gallery_ids[gallery_labels == c]) for c in range(cats)}
        ref = ev.eval_gallery(S, query_ids, gallery_ids, q_label, g_label, label_ids)
        worst = max(abs(100 * multimodal_map_at_k(S, query_labels, gallery_labels, k,
                                                  query_ids=query_ids, gallery_ids=gallery_ids)
                        - ref[f"top{k}"]["mAP"]) for k in (1, 5, 10))
        rows.append(common.Row("`multimodal_map_at_k` (mAP@1/5/10)",
                               "vs CTP `eval_gallery`: 200 queries (40 in the gallery) × 1,500 "
                               "items, 25 categories, scores " + ("rounded to 0.1 (ties)"
                                                                  if rounded else "distinct"),
                               worst, dtype="float64 (percent)", tol=1e-10))
    return rows
