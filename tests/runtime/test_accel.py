"""Accelerator mechanisms: compile (against eager), channels-last, loader options, JPEG decode on
the device for feature extraction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import streams
from cl.core.runner import Runner
from cl.models.backbones import create_backbone
from cl.models.features import extract
from cl.runtime import accel
from streams.folders import ImageFileDataset


def test_loader_options_pin_for_cuda_and_keep_workers_only_when_asked():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert accel.loader_options(0, cpu, persistent=True) == {"pin_memory": False,
                                                              "persistent_workers": False}
    assert accel.loader_options(2, cuda, persistent=True) == {"pin_memory": True,
                                                               "persistent_workers": True}
    assert accel.loader_options(2, cuda)["persistent_workers"] is False


def test_channels_last_only_for_convolutional_models_on_cuda():
    convnet = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3))
    vit_like = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.Linear(8, 8))
    assert accel.has_convolutions(convnet) and not accel.has_convolutions(vit_like)
    assert accel.channels_last(convnet, torch.device("cpu")) is False
    assert convnet[0].weight.is_contiguous()  # left as it was


def test_compile_is_undone_and_keeps_the_state_dict():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    keys = list(model.state_dict())
    accel.compile_module(model)
    assert accel.is_compiled(model) and list(model.state_dict()) == keys
    accel.uncompile_module(model)
    assert not accel.is_compiled(model)
    with pytest.raises(ValueError, match="compile mode 'fast'"):
        accel.compile_module(model, mode="fast")


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    """clip-finetune on toy-clip, two steps: torch.compile'd tower gives eager's weights (CPU,
    inductor; ~30 s of compilation)."""
    weights = {}
    for compiled in (False, True):
        stream = streams.get("toy-mtil")[:1]
        backbone = create_backbone("toy-clip")
        strategy = streams_strategy(compile=compiled)
        runner = Runner(stream, strategy, backbone, out_dir=tmp_path / str(compiled),
                        progress=False)
        ctx = runner.context(0)
        strategy.before_task(ctx)
        strategy.train_task(runner.task_data(0), ctx)
        assert not accel.is_compiled(backbone.model.visual)  # undone after the task
        weights[compiled] = {k: v.clone() for k, v in backbone.model.state_dict().items()}
        assert ctx.counters["train_flops"] > 0
    for key, value in weights[False].items():
        torch.testing.assert_close(weights[True][key], value, rtol=1e-4, atol=1e-5, msg=key)


def streams_strategy(**options):
    import strategies

    return strategies.get("clip-finetune", iterations=2, batch_size=8, warmup=1, lr=1e-4,
                          encoders="vision", **options)


def _jpeg_folder(tmp_path, n=6):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        path = tmp_path / f"img{i}.jpg"
        Image.fromarray(small).resize((80, 60), Image.BICUBIC).save(path, quality=95)
        paths.append(path)
    return ImageFileDataset(paths, [i % 2 for i in range(n)])


def test_jpeg_decode_on_the_device_matches_the_pil_pipeline(tmp_path):
    backbone = create_backbone("toy-clip")
    data = _jpeg_folder(tmp_path)
    common = {"key": "jpegs", "split": "train", "batch_size": 4, "progress": False,
              "cache_dir": tmp_path / "cache"}
    pil = extract(backbone, data, **common)
    dev = extract(backbone, data, decode="device", **common)
    assert torch.equal(dev.y, pil.y)
    cosine = nn.functional.cosine_similarity(dev.X, pil.X)
    assert cosine.min() > 0.99  # same images; resize kernels differ in the last bits
    assert not torch.equal(dev.X, pil.X)  # so each decode path has its own cache entry
    assert torch.equal(extract(backbone, data, decode="device", **common).X, dev.X)


def test_jpeg_decode_on_the_device_refuses_what_is_not_a_jpeg_folder(tmp_path):
    backbone = create_backbone("toy-clip")
    digits = streams.get("split-digits")[0].load_train()
    with pytest.raises(ValueError, match="decode='device' decodes JPEG files.*decode='cpu'"):
        extract(backbone, digits, key="d", split="train", decode="device", progress=False,
                cache_dir=tmp_path)
    with pytest.raises(ValueError, match="decode must be 'cpu' or 'device', got 'gpu'"):
        extract(backbone, digits, key="d", split="train", decode="gpu", cache_dir=tmp_path)
