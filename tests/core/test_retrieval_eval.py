"""The runner scores image-text streams by retrieval: one matrix per score, the scenario's
gallery, shared test sets embedded once, evaluation-only tasks, CTP's mAP@K."""

import numpy as np
import pytest
import torch

from cl import Runner, Strategy, create_backbone
from cl.core.retrieval import image_text_recall, multimodal_map_at_k
from cl.core.retrieval_eval import recall_scores, score_names
from cl.core.selection import Protocol
from cl.errors import ProtocolError
from streams.imagetext.tasks import image_text_stream, image_text_task


class FrozenClip(Strategy):
    """Embeds with the frozen backbone; never trains (records what it was given)."""

    inputs = "images"
    needs_text = True

    def __init__(self):
        self.given, self.image_calls = [], 0

    def train_task(self, data, ctx):
        self.given.append(None if data.dataset is None else len(data.dataset))

    def predict(self, inputs, label_space, ctx):
        raise AssertionError("an image-text stream is scored by retrieval, never by predict")

    def embed_images(self, images, ctx):
        self.image_calls += len(images)
        return ctx.backbone.encode_images(images)

    def embed_texts(self, texts, ctx):
        return ctx.backbone.encode_texts(texts)


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("cl-tiny-vit")


def _embed(backbone, data):
    data = data.with_transform(backbone.preprocess)
    with torch.no_grad():
        images = backbone.encode_images(torch.stack([data[i][0] for i in range(len(data))]))
        texts = backbone.encode_texts(list(data.caption_list))
    return images.numpy(), texts.numpy()


def test_recall_scores_from_ranks_equal_image_text_recall():
    rng = np.random.default_rng(0)
    S = rng.normal(size=(7, 14))
    owner = np.repeat(np.arange(7), 2)
    i2t = np.array([sum(S[i, c] > S[i, owner == i].max() for c in np.flatnonzero(owner != i))
                    for i in range(7)])
    t2i = np.array([sum(S[k, c] > S[owner[c], c] for k in range(7) if k != owner[c])
                    for c in range(14)])
    assert recall_scores(i2t, t2i) == pytest.approx(image_text_recall(S, owner))
    assert score_names(True)[-4:] == ("mean_recall", "map@1", "map@5", "map@10")


def test_task_incremental_scores_are_each_test_set_against_itself(tmp_path, backbone,
                                                                  caption_stream):
    stream = caption_stream(2, n_train=4, n_test=6)
    strategy = FrozenClip()
    res = Runner(stream, strategy, backbone, out_dir=tmp_path, progress=False).run().results
    assert res["score"] == "mean_recall" and "map@1" not in res["scores"]
    assert set(res["scores"]) == {"i2t_recall@1", "i2t_recall@5", "i2t_recall@10", "t2i_recall@1",
                                  "t2i_recall@5", "t2i_recall@10", "i2t_mean_recall",
                                  "t2i_mean_recall", "mean_recall"}
    for j, task in enumerate(stream):
        img, txt = _embed(backbone, task.load_test())
        expected = image_text_recall(img @ txt.T, task.load_test().caption_to_image)
        for name, value in expected.items():
            assert res["zero_shot_scores"][name][j] == pytest.approx(value)
            assert [row[j] for row in res["scores"][name]] == pytest.approx([value, value])
    assert res["accuracy_matrix"] == res["scores"]["mean_recall"]  # the primary score
    assert res["metrics"] == pytest.approx(res["score_metrics"]["mean_recall"], nan_ok=True)
    assert res["score_metrics"]["i2t_recall@1"]["backward_transfer"] == pytest.approx(0.0)
    assert strategy.given == [4, 4]
    csv = (tmp_path / "score_matrices.csv").read_text().splitlines()
    assert csv[0] == "score,after_task,task,value" and len(csv) == 1 + 9 * 3 * 2


def test_class_incremental_gallery_is_the_union_of_seen_test_sets(tmp_path, backbone,
                                                                  caption_stream):
    stream = caption_stream(3, n_train=4, n_test=5, scenario="class-incremental")
    res = Runner(stream, FrozenClip(), backbone, out_dir=tmp_path, progress=False).run().results
    tests = [t.load_test() for t in stream]
    emb = [_embed(backbone, d) for d in tests]
    for row, trained in ((None, None), (0, 0), (2, 2)):
        for j in range(3):
            seen = range(max(j, -1 if trained is None else trained) + 1)
            images = np.concatenate([emb[i][0] for i in seen])
            texts = np.concatenate([emb[i][1] for i in seen])
            owner = np.concatenate([tests[i].caption_to_image + 5 * i for i in seen])
            # scores of the union, restricted to task j's queries: brute force over the union
            S = images @ texts.T
            mine_img, mine_cap = np.arange(5) + 5 * j, np.flatnonzero(owner // 5 == j)
            i2t = np.array([(S[i, owner != i] >= S[i, owner == i].max()).sum() for i in mine_img])
            t2i = np.array([(np.delete(S[:, c], owner[c]) >= S[owner[c], c]).sum()
                            for c in mine_cap])
            expected = recall_scores(i2t, t2i)
            got = res["zero_shot_scores"] if row is None else {
                k: m[row] for k, m in res["scores"].items()}
            for name, value in expected.items():
                assert got[name][j] == pytest.approx(value), (row, j, name)


def test_a_shared_test_set_is_embedded_once_and_an_evaluation_only_task_is_not_trained(
        tmp_path, backbone, caption_stream):
    base = caption_stream(2, n_train=4, n_test=6)
    shared = base[0].load_test
    tasks = [image_text_task("coco", base[0].load_train, shared, test_key="A", trained=False),
             image_text_task("flickr-1", base[1].load_train, base[1].load_test, test_key="B"),
             image_text_task("flickr-2", base[1].load_train, base[1].load_test, test_key="B")]
    strategy = FrozenClip()
    res = Runner(image_text_stream("modx-like", tasks), strategy, backbone, out_dir=tmp_path,
                 progress=False).run().results
    assert strategy.given == [None, 4, 4]  # the evaluation-only task gave no data
    assert strategy.image_calls == 4 * (6 + 6)  # 4 rows, two distinct test sets of 6 images
    assert res["scores"]["mean_recall"][2][1] == res["scores"]["mean_recall"][2][2]


def test_map_at_k_ranks_each_task_queries_against_the_seen_galleries(tmp_path, backbone,
                                                                    caption_stream):
    stream = caption_stream(2, n_train=4, n_test=4, scenario="class-incremental", categories=True)
    res = Runner(stream, FrozenClip(), backbone, out_dir=tmp_path, progress=False).run().results
    assert {"map@1", "map@5", "map@10"} <= set(res["scores"])

    def items(data):
        img, _ = _embed(backbone, data)
        first = [c[0] for c in data.captions]
        txt = backbone.encode_texts(first).detach().numpy()
        v = img / np.linalg.norm(img, axis=1, keepdims=True) + txt / np.linalg.norm(
            txt, axis=1, keepdims=True)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    sets = [stream[i].metadata["load_query_gallery"]() for i in range(2)]
    query = items(sets[0][0])
    gallery = np.concatenate([items(sets[i][1]) for i in range(2)])
    labels = [c for i in range(2) for c in sets[i][1].categories]
    ids = [x for i in range(2) for x in sets[i][1].ids]
    expected = multimodal_map_at_k(query @ gallery.T, sets[0][0].categories, labels, 5,
                                   query_ids=sets[0][0].ids, gallery_ids=ids)
    assert res["scores"]["map@5"][1][0] == pytest.approx(expected, abs=1e-6)


def test_wrong_strategies_and_options_are_refused(tmp_path, backbone, caption_stream):
    stream = caption_stream(2, n_train=4, n_test=4)
    import strategies

    with pytest.raises(ProtocolError, match="embed_images"):
        Runner(stream, strategies.get("nmc"), backbone, out_dir=tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="hp_trials"):
        Runner(stream, FrozenClip(), backbone, out_dir=tmp_path / "b", progress=False,
               protocol=Protocol(hp_trials=2))
