"""The coco-flickr and p9d streams: image-text tasks over the protocols' files, where each is
expected, `cl streams check`, and a whole run over a fake P9D layout."""

import json

import pytest
from PIL import Image

import streams
from cl.cli import main
from streams.benchmarks.imagetext_protocols import P9D_INDUSTRIES


def _png(path, colour=(1, 2, 3)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


def _flickr(root, n=13):
    images = [{"filename": f"{i}.jpg", "split": "train" if i < 8 else ("val" if i < 11 else "test"),
               "sentences": [{"raw": f"f{i} a"}, {"raw": f"f{i} b"}]} for i in range(n)]
    (root / "flickr30k").mkdir(parents=True)
    (root / "flickr30k/dataset_flickr30k.json").write_text(json.dumps({"images": images}))
    for i in range(n):
        _png(root / f"flickr30k/flickr30k-images/{i}.jpg", (i * 10, 0, 0))


def test_registered_streams_are_image_text_with_expected_paths(tmp_path):
    cf = streams.get("coco-flickr", data_root=str(tmp_path))
    assert cf.kind == "image-text" and cf.scenario == "task-incremental" and len(cf) == 6
    assert all(t.class_names == () for t in cf)
    assert cf[0].metadata["expected_path"] == str(tmp_path / "coco")
    assert cf[1].metadata["test_key"] == cf[5].metadata["test_key"] != cf[0].metadata["test_key"]
    pd = streams.get("p9d", data_root=str(tmp_path))
    assert pd.scenario == "class-incremental" and len(pd) == 9
    assert callable(pd[0].metadata["load_query_gallery"])
    assert pd.eval_tasks(1, 4) == (0, 1, 2, 3, 4)  # CTP: the union of the seen test sets


def test_streams_check_lists_what_is_missing_and_an_evaluation_only_phase_needs_its_test_set(
        tmp_path, capsys):
    _flickr(tmp_path)
    assert main(["streams", "check", "coco-flickr", "--data-root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "5 of 6 tasks available" in out and "captions_train2014.json" in out
    # evaluation only: the COCO phase needs its Karpathy test set, not COCO train
    (tmp_path / "coco/val2014").mkdir(parents=True)
    (tmp_path / "coco/dataset_coco.json").write_text(json.dumps({"images": []}))
    stream = streams.get("coco-flickr", coco_phase="evaluate", data_root=str(tmp_path))
    assert stream[0].metadata["trained"] is False
    assert main(["streams", "check", "coco-flickr", "--data-root", str(tmp_path),
                 "--set", "coco_phase=evaluate"]) == 0
    train = streams.get("coco-flickr", data_root=str(tmp_path))
    assert train[0].metadata["data_check"]()[0] is False  # training on COCO needs train2014
    assert len(train[3].load_train()) == 2 and train[3].load_test().n_captions == 4


def _p9d(root):
    train, test, query, gallery = {}, {}, {}, {}
    for k, (key, _) in enumerate(P9D_INDUSTRIES):
        train[key] = {f"tr{k}-{i}": {"title": f"item {k} {i}", "cate_name": f"c{k}-{i % 2}"}
                      for i in range(8)}
        for i in range(3):
            test[f"te{k}-{i}"] = {"title": f"test {k} {i}", "cate_name": f"c{k}-{i % 2}",
                                  "industry_name": key}
            query[f"q{k}-{i}"] = {"title": f"query {k} {i}", "cate_name": f"c{k}-{i % 2}",
                                  "industry_name": key}
            gallery[f"g{k}-{i}"] = {"title": f"gallery {k} {i}", "cate_name": f"c{k}-{i % 2}",
                                    "industry_name": key}
    (root / "p9d/json").mkdir(parents=True)
    for name, data in (("train", train), ("test", test), ("query", query), ("gallery", gallery)):
        (root / f"p9d/json/{name}.json").write_text(json.dumps(data, ensure_ascii=False),
                                                   encoding="utf-8")
    for i, item in enumerate(i for items in train.values() for i in items):
        _png(root / f"p9d/train_images/{item}.jpg", (i * 3 % 255, 40, 80))
    for i, item in enumerate([*test, *query, *gallery]):
        _png(root / f"p9d/gallery_images/{item}.jpg", (0, i * 5 % 255, 200))


@pytest.mark.slow
def test_ctp_runs_over_a_fake_p9d_layout_with_map_scores(tmp_path):
    _p9d(tmp_path / "data")
    assert main(["streams", "check", "p9d", "--data-root", str(tmp_path / "data")]) == 0
    out = tmp_path / "run"
    assert main(["run", "--config", "experiments/imagetext/ctp-p9d.toml", "--data-root",
                 str(tmp_path / "data"), "--backbone", "cl-tiny-vit", "--device", "cpu",
                 "--set", "strategy.epochs=1", "--set", "strategy.batch_size=4",
                 "--set", "strategy.queue_size=16", "--set", "num_workers=0",
                 "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert {"map@1", "map@5", "map@10", "i2t_recall@1", "t2i_recall@1"} <= set(res["scores"])
    assert res["score_metrics"]["map@1"]["backward_transfer"] is not None
