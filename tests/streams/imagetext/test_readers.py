"""Image-text sources read from real files: PNGs, CSV/JSONL/COCO/Karpathy JSON, tar shards."""

import io
import json

import numpy as np
import pytest
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader

from streams.imagetext.dataset import ImageTextDataset, collate_pairs
from streams.imagetext.readers import read_coco_captions, read_csv, read_jsonl, read_karpathy
from streams.imagetext.shards import iter_shards, read_shards

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def _png(path, color):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 4), color).save(path)
    return path


def _png_bytes(color):
    buf = io.BytesIO()
    Image.new("RGB", (6, 4), color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def images(tmp_path):
    return [_png(tmp_path / "imgs" / f"{i}.png", c) for i, c in enumerate(COLORS)]


def test_csv_groups_captions_per_image_and_resolves_relative_paths(tmp_path, images):
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text("image,caption,cat\nimgs/0.png,a red square,red\nimgs/1.png,green,grn\n"
                        "imgs/0.png,\"red, again\",red\nimgs/2.png,blue,blu\n", encoding="utf-8")
    ds = read_csv(csv_file, category_column="cat")
    assert len(ds) == 3 and ds.n_captions == 4
    assert ds.captions[0] == ("a red square", "red, again")
    assert ds.caption_list == ("a red square", "red, again", "green", "blue")
    assert ds.caption_to_image.tolist() == [0, 0, 1, 2]
    assert ds.ids == ("imgs/0.png", "imgs/1.png", "imgs/2.png")
    assert ds.categories == ("red", "grn", "blu")
    image, caps = ds[2]
    assert image.getpixel((0, 0)) == COLORS[2] and caps == ["blue"]
    sized = ds.with_transform(lambda im: np.asarray(im).shape)
    assert sized[0][0] == (4, 6, 3)


def test_csv_root_option_and_errors_name_the_problem(tmp_path, images):
    other = tmp_path / "elsewhere" / "pairs.tsv"
    other.parent.mkdir()
    other.write_text("path\ttext\n0.png\tred\n", encoding="utf-8")
    ds = read_csv(other, root=tmp_path / "imgs", image_column="path", caption_column="text",
                  delimiter="\t")
    assert ds.images == (tmp_path / "imgs" / "0.png",)
    with pytest.raises(ValueError, match=r"no column 'caption'; it has: 'path', 'text'"):
        read_csv(other, root=tmp_path / "imgs", image_column="path", delimiter="\t")
    with pytest.raises(FileNotFoundError, match=r"1 of 1 images .*elsewhere.*0\.png"):
        read_csv(other, image_column="path", caption_column="text", delimiter="\t")
    with pytest.raises(FileNotFoundError, match="CSV file"):
        read_csv(tmp_path / "nope.csv")


def test_jsonl_with_caption_lists_and_errors(tmp_path, images):
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"image": "imgs/1.png", "caption": ["green", "lime"]}) + "\n\n"
                 + json.dumps({"image": str(images[0]), "caption": "red"}) + "\n", encoding="utf-8")
    ds = read_jsonl(f)
    assert ds.captions == (("green", "lime"), ("red",))
    assert ds.images[1] == images[0]          # absolute path kept
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"img": "imgs/1.png", "caption": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no key \(line 1\) 'image'; it has: 'img', 'caption'"):
        read_jsonl(bad)
    bad.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: not valid JSON"):
        read_jsonl(bad)


def test_coco_captions_json(tmp_path, images):
    ann = {"images": [{"id": 7, "file_name": "1.png"}, {"id": 3, "file_name": "0.png"}],
           "annotations": [{"image_id": 3, "caption": "red one"}, {"image_id": 7, "caption": "green"},
                           {"image_id": 3, "caption": "red two"}]}
    f = tmp_path / "captions.json"
    f.write_text(json.dumps(ann), encoding="utf-8")
    ds = read_coco_captions(f, tmp_path / "imgs")
    assert ds.ids == ("7", "3")                        # order of "images"
    assert ds.captions == (("green",), ("red one", "red two"))
    assert ds[1][0].getpixel((0, 0)) == COLORS[0]
    ann["annotations"].append({"image_id": 99, "caption": "?"})
    f.write_text(json.dumps(ann), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown image_id 99"):
        read_coco_captions(f, tmp_path / "imgs")
    ann["annotations"] = ann["annotations"][:1]
    f.write_text(json.dumps(ann), encoding="utf-8")
    with pytest.raises(ValueError, match=r"1 images have no caption \(ids \[7\]\)"):
        read_coco_captions(f, tmp_path / "imgs")


def test_karpathy_splits_and_filepath(tmp_path, images):
    _png(tmp_path / "val2014" / "x.png", (9, 9, 9))
    data = {"images": [
        {"filename": "0.png", "split": "train", "sentences": [{"raw": "r1"}, {"raw": "r2"}]},
        {"filename": "x.png", "filepath": "val2014", "split": "test", "sentences": [{"raw": "gray"}]},
        {"filename": "2.png", "split": "val", "sentences": [{"raw": "b"}]},
    ]}
    f = tmp_path / "dataset_x.json"
    f.write_text(json.dumps(data), encoding="utf-8")
    train = read_karpathy(f, tmp_path / "imgs", splits=("train", "val"))
    assert train.ids == ("0.png", "2.png") and train.captions == (("r1", "r2"), ("b",))
    test = read_karpathy(f, tmp_path, splits=("test",))
    assert test.images == (tmp_path / "val2014" / "x.png",)
    with pytest.raises(ValueError, match=r"no split \['restval'\]"):
        read_karpathy(f, tmp_path, splits=("restval",))


def _write_shards(tmp_path, n_shards=2, per_shard=3, caption_key="txt"):
    for s in range(n_shards):
        with wds.TarWriter(str(tmp_path / f"shard-{s:03d}.tar")) as sink:
            for i in range(per_shard):
                color = COLORS[(s * per_shard + i) % 3]
                sink.write({"__key__": f"s{s}-{i}", "png": _png_bytes(color),
                            caption_key: f"caption {s}.{i}\n\nsecond {s}.{i}\n"})


def test_tar_shards_read_whole_and_streamed(tmp_path):
    _write_shards(tmp_path)
    ds = read_shards("shard-{000..001}.tar", root=tmp_path)
    assert len(ds) == 6 and ds.ids[0] == "s0-0" and ds.ids[-1] == "s1-2"
    assert ds.captions[4] == ("caption 1.1", "second 1.1")     # blank line dropped
    assert ds.caption_to_image.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [ds[i][0].getpixel((1, 1)) for i in range(6)] == COLORS * 2
    streamed = list(iter_shards([str(tmp_path / "shard-000.tar"), str(tmp_path / "shard-001.tar")]))
    assert [c for _, c in streamed] == [list(c) for c in ds.captions]
    assert streamed[1][0].getpixel((0, 0)) == COLORS[1]


def test_tar_shards_stream_through_a_dataloader_with_workers(tmp_path):
    _write_shards(tmp_path, n_shards=4, per_shard=2)
    loader = DataLoader(iter_shards("shard-{000..003}.tar", root=tmp_path), batch_size=None,
                        num_workers=2)
    keys = sorted(c[0] for _, c in loader)             # each shard read by exactly one worker
    assert keys == sorted(f"caption {s}.{i}" for s in range(4) for i in range(2))


def test_tar_shard_errors_name_missing_shards_and_members(tmp_path):
    _write_shards(tmp_path, n_shards=1, caption_key="caption")
    with pytest.raises(FileNotFoundError, match=r"1 of 2 shards are missing: .*shard-001\.tar"):
        read_shards("shard-{000..001}.tar", root=tmp_path)
    with pytest.raises(ValueError, match=r"no 'txt' member; it has \['caption', 'png'\]"):
        read_shards(str(tmp_path / "shard-000.tar"))
    assert read_shards(str(tmp_path / "shard-000.tar"), caption_key="caption").n_captions == 6
    with pytest.raises(ValueError, match=r"no image among \['jpg'\]"):
        read_shards(str(tmp_path / "shard-000.tar"), caption_key="caption", image_keys=("jpg",))


def test_dataset_validation_and_subset(tmp_path, images):
    ds = ImageTextDataset(images, (("r",), ("g1", "g2"), ("b",)), categories=("x", "y", "x"))
    assert ds.ids == ("0", "1", "2")
    sub = ds.subset([2, 1])
    assert sub.captions == (("b",), ("g1", "g2")) and sub.ids == ("2", "1")
    assert sub.categories == ("x", "y") and sub.caption_to_image.tolist() == [0, 1, 1]
    with pytest.raises(IndexError, match=r"\[3\]"):
        ds.subset([3])
    with pytest.raises(ValueError, match="has no caption"):
        ImageTextDataset(images[:1], ((),))
    with pytest.raises(ValueError, match="empty or non-string caption"):
        ImageTextDataset(images[:1], (("  ",),))
    with pytest.raises(ValueError, match="3 images but"):
        ImageTextDataset(images, (("a",),))
    with pytest.raises(ValueError, match="unique"):
        ImageTextDataset(images[:2], (("a",), ("b",)), ids=("k", "k"))


def test_collate_keeps_each_images_captions_together(tmp_path, images):
    import torch

    ds = ImageTextDataset(images, (("r",), ("g1", "g2"), ("b",)),
                          transform=lambda im: torch.from_numpy(np.array(im)).permute(2, 0, 1))
    x, caps = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_pairs)))
    assert x.shape == (3, 3, 4, 6) and x[1, 1, 0, 0].item() == 255
    assert caps == [["r"], ["g1", "g2"], ["b"]]
    pil, _ = collate_pairs([ds.with_transform(None)[0]])
    assert isinstance(pil, list) and pil[0].getpixel((0, 0)) == COLORS[0]
