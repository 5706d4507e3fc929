"""Backbones: real open_clip models (the tiny ``cl-tiny-vit`` config), offline resolution."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from cl.models.backbones import OpenCLIPBackbone, PixelsBackbone, create_backbone
from cl.models.weights import available_backbones, resolve


@pytest.fixture(scope="module")
def tiny() -> OpenCLIPBackbone:
    backbone = create_backbone("cl-tiny-vit")
    assert isinstance(backbone, OpenCLIPBackbone)
    return backbone


def _images(n: int = 4, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)) for _ in range(n)]


def _batch(backbone: OpenCLIPBackbone, images: list[Image.Image]) -> torch.Tensor:
    return torch.stack([backbone.preprocess(im) for im in images])


def test_tiny_config_is_a_real_frozen_open_clip_model(tiny: OpenCLIPBackbone) -> None:
    assert "cl-tiny-vit" in open_clip.list_models()
    assert isinstance(tiny.model, open_clip.CLIP)
    assert not tiny.model.training
    assert not any(p.requires_grad for p in tiny.model.parameters())
    assert tiny.embed_dim == 32 and tiny.has_text and tiny.normalize
    x = tiny.encode_images(_batch(tiny, _images()))
    t = tiny.encode_texts(["a photo of a 3.", "a photo of a 7."])
    assert x.shape == (4, 32) and t.shape == (2, 32)
    torch.testing.assert_close(x.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(t.norm(dim=1), torch.ones(2))
    assert tiny.tokenizer(["a"]).shape == (1, 16)  # the config's context length


def test_random_init_is_reproducible_so_caches_carry_across_runs(tiny: OpenCLIPBackbone) -> None:
    again = create_backbone("cl-tiny-vit")
    assert again.fingerprint == tiny.fingerprint
    batch = _batch(tiny, _images())
    torch.testing.assert_close(again.encode_images(batch), tiny.encode_images(batch))


def test_normalize_false_gives_raw_embeddings() -> None:
    raw = create_backbone("cl-tiny-vit", normalize=False)
    x = raw.encode_images(_batch(raw, _images()))
    assert not torch.allclose(x.norm(dim=1), torch.ones(4))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_local_checkpoint_round_trip_gives_identical_embeddings(
    tiny: OpenCLIPBackbone, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".safetensors":
        tiny.save_checkpoint(path)
    else:
        torch.save(tiny.model.state_dict(), path)
    loaded = create_backbone(f"cl-tiny-vit:{path}")
    batch = _batch(tiny, _images())
    assert torch.equal(loaded.encode_images(batch), tiny.encode_images(batch))
    assert torch.equal(loaded.encode_texts(["a cat"]), tiny.encode_texts(["a cat"]))
    assert loaded.fingerprint == tiny.fingerprint  # same weights, same cache key


def test_saved_checkpoint_is_plain_open_clip(tiny: OpenCLIPBackbone, tmp_path: Path) -> None:
    path = tiny.save_checkpoint(tmp_path / "plain.safetensors")
    model = open_clip.create_model("cl-tiny-vit", pretrained=str(path)).eval()
    batch = _batch(tiny, _images())
    with torch.no_grad():
        ref = model.encode_image(batch, normalize=True)
    torch.testing.assert_close(tiny.encode_images(batch), ref)
    with pytest.raises(ValueError, match="safetensors"):
        tiny.save_checkpoint(tmp_path / "plain.pt")


def test_fingerprint_follows_weight_changes(tmp_path: Path) -> None:
    backbone = create_backbone("cl-tiny-vit")
    before = backbone.fingerprint
    with torch.no_grad():
        backbone.model.visual.proj.add_(0.01)
    assert backbone.refresh_fingerprint() != before
    assert backbone.fingerprint != before
    backbone.save_checkpoint(tmp_path / "changed.safetensors")
    assert create_backbone(f"cl-tiny-vit:{tmp_path / 'changed.safetensors'}").fingerprint == (
        backbone.fingerprint
    )


def test_grayscale_and_rgba_images_are_converted(tiny: OpenCLIPBackbone) -> None:
    rgb = _images(1)[0]
    grey = tiny.preprocess(rgb.convert("L"))
    rgba = tiny.preprocess(rgb.convert("RGBA"))
    assert grey.shape == rgba.shape == (3, 32, 32)
    torch.testing.assert_close(rgba, tiny.preprocess(rgb))
    assert tiny.encode_images(torch.stack([grey, rgba])).shape == (2, 32)


def test_unknown_model_lists_close_names() -> None:
    with pytest.raises(ValueError, match=r"Unknown open_clip model 'ViT-B-61'.*ViT-B-16"):
        create_backbone("ViT-B-61")


def test_unknown_tag_lists_valid_tags() -> None:
    with pytest.raises(ValueError, match=r"Unknown pretrained tag 'nope' for 'ViT-B-32'.*openai"):
        create_backbone("ViT-B-32:nope")


def test_missing_checkpoint_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_backbone(f"cl-tiny-vit:{tmp_path / 'missing.safetensors'}")


def test_checkpoint_of_other_architecture_names_the_shapes(
    tiny: OpenCLIPBackbone, tmp_path: Path
) -> None:
    # the tiny model with a 16-d instead of 32-d joint embedding: another architecture
    state = tiny.model.state_dict()
    state["visual.proj"] = state["visual.proj"][:, :16].contiguous()
    state["text_projection"] = state["text_projection"][:, :16].contiguous()
    path = tmp_path / "other.safetensors"
    save_file(state, str(path), metadata={"open_clip_model": "cl-tiny-vit-16"})
    with pytest.raises(ValueError, match=r"shape mismatch: text_projection: checkpoint \(64, 16\) "
                                         r"vs model \(64, 32\).*saved from 'cl-tiny-vit-16'"):
        create_backbone(f"cl-tiny-vit:{path}")


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "unsafe.pt"
    torch.save({"state": Path("not a tensor")}, path)
    with pytest.raises(ValueError, match="weights_only"):
        create_backbone(f"cl-tiny-vit:{path}")


def test_pretrained_tag_not_cached_fails_without_downloading(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"never downloads.*ViT-B-16:/path/to/weights"):
        create_backbone("ViT-B-16:openai", cache_dir=tmp_path)


def _fake_hub_file(cache: Path, repo: str, name: str, data: bytes) -> Path:
    """Lay out one file the way huggingface_hub caches it (refs/main → snapshot)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    path = root / "snapshots" / commit / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_pretrained_tag_resolves_to_cached_file_with_its_config(tmp_path: Path) -> None:
    # ViT-B-16:openai lives at timm/vit_base_patch16_clip_224.openai and uses QuickGELU
    path = _fake_hub_file(tmp_path, "timm/vit_base_patch16_clip_224.openai",
                          "open_clip_model.safetensors", b"placeholder")
    resolved = resolve("ViT-B-16:openai", cache_dir=tmp_path)
    assert resolved.checkpoint == path
    assert resolved.quick_gelu is True
    assert resolved.preprocess["mean"] == open_clip.OPENAI_DATASET_MEAN


def test_hf_hub_spec_loads_from_local_cache(tiny: OpenCLIPBackbone, tmp_path: Path) -> None:
    repo = "someorg/tiny-clip"
    config = {"model_cfg": open_clip.get_model_config("cl-tiny-vit"), "preprocess_cfg": {}}
    _fake_hub_file(tmp_path, repo, "open_clip_config.json", json.dumps(config).encode())
    tiny.save_checkpoint(tmp_path / "w.safetensors")
    _fake_hub_file(tmp_path, repo, "open_clip_model.safetensors",
                   (tmp_path / "w.safetensors").read_bytes())
    hub = create_backbone(f"hf-hub:{repo}", cache_dir=tmp_path)
    batch = _batch(tiny, _images())
    assert torch.equal(hub.encode_images(batch), tiny.encode_images(batch))
    with pytest.raises(FileNotFoundError, match="never downloads"):
        create_backbone("hf-hub:someorg/absent", cache_dir=tmp_path)


def test_pixels_backbone_has_no_text_tower() -> None:
    pixels = create_backbone("pixels:8")
    assert isinstance(pixels, PixelsBackbone) and not pixels.has_text
    with pytest.raises(TypeError, match="no text tower"):
        pixels.encode_texts(["a"])


def test_available_backbones_lists_tiny_configs_and_pretrained_tags() -> None:
    names = available_backbones()
    assert {"pixels", "cl-tiny-vit", "ViT-B-16", "hf-hub:ORG/NAME"} <= set(names)
    assert "ViT-B-16:openai" in available_backbones(tags=True)
