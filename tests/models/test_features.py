"""Feature extraction through the on-disk cache, with a real tiny open_clip model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import platformdirs
import pytest
import torch
from torch.utils.data import Subset

from cl.cli import main
from cl.models.backbones import OpenCLIPBackbone, create_backbone
from cl.models.features import FeatureCache, cache_root, extract
from streams.arrays import ArrayImageDataset


class Counting:
    """Counts calls to a backbone's ``encode_images`` (wrapping the real method)."""

    def __init__(self, backbone: OpenCLIPBackbone) -> None:
        self.calls = 0
        self.images = 0
        real = backbone.encode_images

        def counted(batch: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            self.images += batch.shape[0]
            return real(batch)

        backbone.encode_images = counted  # type: ignore[method-assign]


@pytest.fixture()
def backbone() -> OpenCLIPBackbone:
    return create_backbone("cl-tiny-vit")


@pytest.fixture(scope="module")
def dataset() -> ArrayImageDataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 20, 24, 3), dtype=np.uint8)
    return ArrayImageDataset(images, rng.integers(0, 4, 40))


def _extract(backbone, dataset, cache: Path, split: str = "train", **kw):
    return extract(backbone, dataset, key="toy/task0", split=split, batch_size=16,
                   progress=False, cache_dir=cache, **kw)


def test_features_match_a_bare_model_loop(backbone, dataset, tmp_path) -> None:
    feats = _extract(backbone, dataset, tmp_path)
    batch = torch.stack([backbone.preprocess(dataset[i][0]) for i in range(len(dataset))])
    with torch.no_grad():
        ref = backbone.model.encode_image(batch, normalize=True)
    torch.testing.assert_close(feats.X, ref)
    assert feats.X.dtype == torch.float32 and feats.y.dtype == torch.int64
    assert feats.y.tolist() == [dataset[i][1] for i in range(len(dataset))]


def test_second_extraction_never_calls_the_backbone(backbone, dataset, tmp_path) -> None:
    counter = Counting(backbone)
    first = _extract(backbone, dataset, tmp_path)
    assert counter.calls == 3 and counter.images == 40
    second = _extract(backbone, dataset, tmp_path)
    assert counter.calls == 3  # zero new calls
    assert torch.equal(first.X, second.X) and torch.equal(first.y, second.y)
    # a fresh backbone object with the same weights also hits the cache
    again = create_backbone("cl-tiny-vit")
    fresh = Counting(again)
    assert torch.equal(_extract(again, dataset, tmp_path).X, first.X) and fresh.calls == 0


def test_manifest_records_size_and_checksum(backbone, dataset, tmp_path) -> None:
    _extract(backbone, dataset, tmp_path)
    [entry] = FeatureCache(tmp_path).entries()
    data = Path(entry["path"])
    assert entry["bytes"] == data.stat().st_size
    assert entry["n"] == 40 and entry["dim"] == 32
    assert entry["key"]["backbone"] == backbone.fingerprint
    assert entry["key"]["dataset"] == "toy/task0" and entry["key"]["split"] == "train"
    leftovers = [p.name for p in data.parent.iterdir() if p.suffix not in (".json", ".safetensors")]
    assert leftovers == []  # atomic writes leave no temporary files


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest"])
def test_corrupt_cache_is_detected_and_rebuilt(backbone, dataset, tmp_path, damage) -> None:
    first = _extract(backbone, dataset, tmp_path)
    [entry] = FeatureCache(tmp_path).entries()
    data = Path(entry["path"])
    raw = bytearray(data.read_bytes())
    if damage == "truncate":
        data.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        raw[-5] ^= 0xFF  # same size, different content
        data.write_bytes(bytes(raw))
    else:
        data.with_suffix(".json").write_text("{not json")
    counter = Counting(backbone)
    with pytest.warns(RuntimeWarning, match="corrupt.*rebuilding"):
        rebuilt = _extract(backbone, dataset, tmp_path)
    assert counter.calls == 3
    assert torch.equal(rebuilt.X, first.X)
    _extract(backbone, dataset, tmp_path)  # now clean: no warning, no call
    assert counter.calls == 3


def test_key_covers_split_subset_weights_and_normalisation(backbone, dataset, tmp_path) -> None:
    counter = Counting(backbone)
    _extract(backbone, dataset, tmp_path)
    _extract(backbone, dataset, tmp_path, split="test")
    assert counter.calls == 6
    sub = _extract(backbone, Subset(dataset, [3, 1, 4]), tmp_path)
    assert counter.calls == 7 and len(sub) == 3
    other = _extract(backbone, Subset(dataset, [3, 1, 5]), tmp_path)
    assert counter.calls == 8 and not torch.equal(sub.X, other.X)
    with torch.no_grad():
        backbone.model.visual.proj.mul_(2.0)
    backbone.refresh_fingerprint()
    _extract(backbone, dataset, tmp_path)
    assert counter.calls == 11  # new weights: features recomputed
    raw = create_backbone("cl-tiny-vit", normalize=False)
    assert not torch.allclose(_extract(raw, dataset, tmp_path).X.norm(dim=1), torch.ones(40))
    assert len(FeatureCache(tmp_path).entries()) == 6


def test_cache_directory_resolution(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("CL_CACHE_DIR")
    assert cache_root() == Path(platformdirs.user_cache_dir("cl"))


def test_env_cache_dir_is_used_and_use_cache_false_writes_nothing(
    backbone, dataset, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "env"))
    extract(backbone, dataset, key="toy/task0", split="train", progress=False)
    assert len(FeatureCache(tmp_path / "env").entries()) == 1
    extract(backbone, dataset, key="toy/other", split="train", progress=False, use_cache=False)
    assert len(FeatureCache(tmp_path / "env").entries()) == 1


def test_empty_dataset_is_an_error(backbone, tmp_path) -> None:
    empty = ArrayImageDataset(np.zeros((0, 8, 8), np.uint8), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="toy/task0 \\[train\\] is empty"):
        _extract(backbone, empty, tmp_path)


def test_cache_ls_and_clear_commands(backbone, dataset, tmp_path, capsys) -> None:
    _extract(backbone, dataset, tmp_path)
    _extract(backbone, dataset, tmp_path, split="test")
    assert main(["cache", "ls", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 entries" in out and "toy/task0 [train]" in out and "40x32" in out
    assert main(["cache", "clear", "--cache-dir", str(tmp_path)]) == 0
    assert "removed 4 files" in capsys.readouterr().out
    assert FeatureCache(tmp_path).entries() == []
