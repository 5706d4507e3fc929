"""coco-flickr and p9d protocol definitions: phases, expected paths, loaders on a fake layout."""

import json

import pytest
from PIL import Image

from streams.benchmarks.imagetext_protocols import (
    P9D_INDUSTRIES,
    PROTOCOLS,
    coco_flickr,
    modx_phase_bounds,
    p9d,
)


def _png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (2, 2), (1, 2, 3)).save(path)


def test_modx_phase_bounds_follow_the_reference_formula():
    n = 30_014  # Flickr30K Karpathy train (29,000) + val (1,014)
    assert modx_phase_bounds(n) == [0, 6002, 12005, 18008, 24011, 30014]
    assert modx_phase_bounds(n) == [0] + [int(n / 5 * k) for k in range(1, 6)]
    with pytest.raises(ValueError, match="cannot cut"):
        modx_phase_bounds(3)


def test_protocols_list_phases_paths_and_sources(tmp_path):
    cf, pd = PROTOCOLS["coco-flickr"](), PROTOCOLS["p9d"]()
    assert [p.name for p in cf.phases] == ["coco"] + [f"flickr30k-{k}" for k in range(1, 6)]
    assert len({p.test_key for p in cf.phases}) == 2          # COCO 5K and Flickr30K 1K test sets
    assert all(p.trained for p in cf.phases)
    assert [p.trained for p in coco_flickr("evaluate").phases] == [False] + [True] * 5
    assert pd.phases[0].name == "household" and len(pd.phases) == 9
    assert sum(p.expected_test_pairs for p in pd.phases) == 2846
    assert [p.name for p in p9d("reverse").phases] == [p.name for p in pd.phases][::-1]
    for proto in (cf, pd):
        assert proto.missing(tmp_path) == list(proto.paths)   # empty root: everything missing
        assert "http" in proto.download and "@" in proto.reference
        for phase in proto.phases:
            assert set(phase.needs) <= {p.relative for p in proto.paths}
    with pytest.raises(ValueError, match="order"):
        p9d("shuffled")
    with pytest.raises(ValueError, match="coco_phase"):
        coco_flickr("skip")


def test_coco_flickr_loaders_on_a_fake_layout(tmp_path):
    images = [{"filename": f"{i}.jpg", "split": "train" if i < 8 else ("val" if i < 11 else "test"),
               "sentences": [{"raw": f"f{i} a"}, {"raw": f"f{i} b"}]} for i in range(13)]
    (tmp_path / "flickr30k").mkdir()
    (tmp_path / "flickr30k/dataset_flickr30k.json").write_text(json.dumps({"images": images}))
    for i in range(13):
        _png(tmp_path / f"flickr30k/flickr30k-images/{i}.jpg")
    proto = coco_flickr()
    phases = [proto.phases[k].load_train(tmp_path) for k in range(1, 6)]
    assert [len(p) for p in phases] == [2, 2, 2, 2, 3]         # int(11/5*k): 0 2 4 6 8 11
    assert [i for p in phases for i in p.ids] == [f"{i}.jpg" for i in range(11)]
    test = proto.phases[3].load_test(tmp_path)
    assert test.ids == ("11.jpg", "12.jpg") and test.n_captions == 4
    with pytest.raises(FileNotFoundError, match="captions_train2014.json"):
        proto.phases[0].load_train(tmp_path)
    missing = {p.relative for p in proto.missing(tmp_path)}
    assert "flickr30k/dataset_flickr30k.json" not in missing and "coco/train2014" in missing


def test_p9d_loaders_on_a_fake_layout(tmp_path):
    (household, _), (furnishings, _) = P9D_INDUSTRIES[:2]
    train = {household: {"h1": {"title": "cup", "cate_name": "kitchen"},
                         "h2": {"title": "pan", "cate_name": "kitchen"}},
             furnishings: {"f1": {"title": "lamp", "cate_name": "light"}}}
    test = {"t1": {"title": "mug", "cate_name": "kitchen", "industry_name": household},
            "t2": {"title": "rug", "cate_name": "floor", "industry_name": furnishings}}
    gallery = {"g1": {"title": "bowl", "cate_name": "kitchen", "industry_name": household},
               "g2": {"title": "fork", "cate_name": "cutlery", "industry_name": household}}
    query = {"q1": {"title": "plate", "cate_name": "kitchen", "industry_name": household}}
    json_dir = tmp_path / "p9d/json"
    json_dir.mkdir(parents=True)
    for name, data in (("train", train), ("test", test), ("query", query), ("gallery", gallery)):
        (json_dir / f"{name}.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    for i in ("h1", "h2", "f1"):
        _png(tmp_path / f"p9d/train_images/{i}.jpg")
    for i in ("t1", "t2", "g1", "g2", "q1"):
        _png(tmp_path / f"p9d/gallery_images/{i}.jpg")
    phase = p9d().phases[0]
    tr = phase.load_train(tmp_path)
    assert tr.ids == ("h1", "h2") and tr.captions == (("cup",), ("pan",))
    assert tr.categories == ("kitchen", "kitchen")
    assert phase.load_test(tmp_path).ids == ("t1",)
    q, g = phase.load_query_gallery(tmp_path)
    assert q.ids == ("q1",) and g.categories == ("kitchen", "cutlery")
    assert p9d().missing(tmp_path) == []
    with pytest.raises(ValueError, match="has no item of industry"):
        p9d().phases[2].load_test(tmp_path)
    del test["t2"]["industry_name"]
    (json_dir / "test.json").write_text(json.dumps(test, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ValueError, match="no 'industry_name'"):
        phase.load_test(tmp_path)
