"""Accelerator mechanisms: bf16 autocast, channels-last, ``torch.compile``, loader settings, and
JPEG decoding on the device.

Each is a small function the training loop (:mod:`strategies.adaptation.base`) and feature
extraction (:func:`cl.models.features.extract`) call; each does nothing where it does not
help:

- :func:`autocast`: bf16 autocast on CUDA (mixed precision as open_clip trains with
  ``--precision amp_bf16``); disabled on CPU, where bf16 matrix products are slower than
  float32 on CPUs without AMX.
- :func:`channels_last`: NHWC memory format for models with convolutions (ResNet towers,
  ``RN50``) on CUDA, where cuDNN's tensor-core kernels want it; a ViT has one convolution
  (the patch embedding) and is left alone.
- :func:`compile_module` / :func:`uncompile_module`: ``nn.Module.compile`` (the module's
  forward is compiled in place, its parameters and ``state_dict`` keys unchanged) and its
  undoing, so a compiled tower can be merged, exported or checkpointed as usual.
- :func:`loader_options`: pinned host memory when batches go to a GPU, persistent workers
  when a loader is iterated more than once with workers.
- :func:`decode_jpegs` / :class:`DeviceTransform`: ``torchvision.io.decode_jpeg`` on the
  device (nvJPEG on CUDA) and the backbone's resize, crop and normalisation as tensor
  operations there, for extraction from JPEG files
  (``extract(..., decode="device")``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn


def autocast(device: torch.device, enabled: bool = True) -> Any:
    """bf16 autocast on CUDA when ``enabled``; a context doing nothing otherwise."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def has_convolutions(model: nn.Module) -> bool:
    """Whether ``model`` holds a 2-d convolution other than a ViT's single patch embedding."""
    return sum(isinstance(m, nn.Conv2d) for m in model.modules()) > 1


def channels_last(model: nn.Module, device: torch.device) -> bool:
    """Put ``model`` in channels-last memory format when it helps (CUDA, convolutional);
    returns whether it did (then feed it ``x.contiguous(memory_format=torch.channels_last)``)."""
    if device.type != "cuda" or not has_convolutions(model):
        return False
    model.to(memory_format=torch.channels_last)
    return True


def compile_module(module: nn.Module, mode: str | None = None) -> nn.Module:
    """Compile ``module``'s forward in place with ``torch.compile`` (``mode``: ``None``,
    ``"reduce-overhead"``, ``"max-autotune"``); returns ``module``.

    Raises
    ------
    ValueError
        ``mode`` is not one torch.compile knows.
    """
    modes = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    if mode not in modes:
        raise ValueError(f"compile mode {mode!r} is not one of {modes[1:]} (or None).")
    module.compile(mode=mode)
    return module


def uncompile_module(module: nn.Module) -> nn.Module:
    """Undo :func:`compile_module` (eager forward again); returns ``module``."""
    module._compiled_call_impl = None  # what nn.Module.compile sets
    return module


def is_compiled(module: nn.Module) -> bool:
    """Whether ``module``'s forward is compiled (:func:`compile_module`)."""
    return getattr(module, "_compiled_call_impl", None) is not None


def loader_options(num_workers: int, device: torch.device | None = None, *,
                   persistent: bool = False) -> dict[str, Any]:
    """``DataLoader`` keyword arguments: ``pin_memory`` when batches go to CUDA (``device``
    CUDA, or ``None`` and CUDA available), ``persistent_workers`` when ``persistent`` and
    there are workers (a loader iterated every epoch keeps its worker processes)."""
    cuda = device.type == "cuda" if device is not None else torch.cuda.is_available()
    return {"pin_memory": cuda, "persistent_workers": persistent and num_workers > 0}


# -- JPEG decoding on the device -------------------------------------------------------------
JPEG_EXTENSIONS = (".jpg", ".jpeg", ".JPG", ".JPEG")


def jpeg_files(dataset: Any) -> tuple[list[str], list[int]] | None:
    """Paths and labels of a dataset of JPEG files (an
    :class:`~streams.folders.ImageFileDataset` or a ``Subset`` of one); ``None`` otherwise."""
    from torch.utils.data import Subset

    indices = None
    while isinstance(dataset, Subset):
        indices = [dataset.indices[i] for i in (indices or range(len(dataset)))]
        dataset = dataset.dataset
    paths, labels = getattr(dataset, "paths", None), getattr(dataset, "targets", None)
    if paths is None or labels is None:
        return None
    picked = indices if indices is not None else range(len(paths))
    out_paths = [os.fspath(paths[i]) for i in picked]
    if not all(p.endswith(JPEG_EXTENSIONS) for p in out_paths):
        return None
    return out_paths, [int(labels[i]) for i in picked]


def decode_jpegs(paths: Sequence[str], device: torch.device) -> list[torch.Tensor]:
    """Decode JPEG files on ``device`` (nvJPEG on CUDA) into RGB uint8 tensors (3, H, W)."""
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    data = [read_file(p) for p in paths]
    return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))


class DeviceTransform:
    """An open_clip evaluation transform (resize the shorter side, centre crop, normalise)
    applied to uint8 image tensors on their device.

    Parameters
    ----------
    preprocess : torchvision ``Compose``
        The backbone's ``preprocess``: its ``Resize``, ``CenterCrop`` and ``Normalize``
        steps are read (a colour conversion and ``ToTensor`` are implied).

    Raises
    ------
    ValueError
        The transform has other steps, which cannot run on the device.
    """

    def __init__(self, preprocess: Any) -> None:
        from torchvision import transforms as T

        steps = getattr(preprocess, "transforms", None)
        if steps is None:
            raise ValueError("decode='device' needs a torchvision Compose preprocess (open_clip "
                             f"backbones); got {type(preprocess).__name__}. Use decode='cpu'.")
        self.size = self.crop = self.mean = self.std = None
        self.interpolation = T.InterpolationMode.BICUBIC
        for step in steps:
            if isinstance(step, T.Resize):
                self.size, self.interpolation = step.size, step.interpolation
            elif isinstance(step, T.CenterCrop):
                self.crop = step.size
            elif isinstance(step, T.Normalize):
                self.mean, self.std = step.mean, step.std
            elif not any(word in type(step).__name__.lower() for word in ("totensor", "convert")):
                raise ValueError(f"decode='device' cannot run preprocessing step {step!r} on the "
                                 "device; use decode='cpu'.")

    def __call__(self, images: list[torch.Tensor]) -> torch.Tensor:
        """(N, 3, h, w) float32 batch of uint8 (3, H, W) images."""
        from torchvision.transforms.v2 import functional as F

        out = []
        for img in images:
            if self.size is not None:
                img = F.resize(img, self.size, interpolation=self.interpolation, antialias=True)
            if self.crop is not None:
                img = F.center_crop(img, list(self.crop))
            out.append(img)
        batch = torch.stack(out).float().div_(255.0)
        if self.mean is not None:
            batch = F.normalize(batch, list(self.mean), list(self.std))
        return batch


__all__ = ["DeviceTransform", "autocast", "channels_last", "compile_module", "decode_jpegs",
           "has_convolutions", "is_compiled", "jpeg_files", "loader_options", "uncompile_module"]
