"""Backbones: frozen encoders that turn images (and, for VLMs, texts) into embeddings.

Specs understood by :func:`create_backbone`:

``pixels`` / ``pixels:SIZE``
    Flattened pixels scaled to [0, 1] (optionally resized to SIZE×SIZE grey),
    no text tower. The offline quickstart's backbone.
``MODEL``, ``MODEL:TAG``, ``MODEL:/path/to/weights.safetensors``, ``hf-hub:ORG/NAME``
    A frozen open_clip CLIP model (:class:`OpenCLIPBackbone`), resolved offline
    by :mod:`cl.models.weights`. ``MODEL`` alone is random init (seed 0), e.g. the
    tiny test config ``cl-tiny-vit``, unless cl ships weights for it:
    ``toy-clip`` loads ``cl/models/pretrained/toy-clip.safetensors`` (docs/toy_world.md).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_save

from cl.errors import OptionError
from cl.models.weights import resolve
from cl.runtime.io import atomic_write

__all__ = ["Backbone", "OpenCLIPBackbone", "PixelsBackbone", "create_backbone"]


class Backbone:
    """Interface every backbone implements.

    Attributes
    ----------
    name : str
        The spec it was created from.
    fingerprint : str
        Stable identity of the weights actually loaded (cache key).
    embed_dim : int or None
        Embedding size D (``None`` until known, for ``pixels`` without SIZE).
    has_text : bool
        Whether :meth:`encode_texts` is available.
    normalize : bool
        Whether embeddings are L2-normalised.
    preprocess : callable
        Image (PIL) → tensor transform of the model's evaluation pipeline.
    """

    name: str
    fingerprint: str
    embed_dim: int | None
    has_text: bool = False
    normalize: bool = False
    preprocess: Callable[[Any], torch.Tensor]

    def encode_images(self, batch: torch.Tensor) -> torch.Tensor:
        """Embeddings of a preprocessed batch (N, C, H, W) → (N, D)."""
        raise NotImplementedError

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Embeddings of M texts → (M, D); ``TypeError`` when there is no text tower."""
        raise TypeError(
            f"Backbone {self.name!r} has no text tower; use a VLM backbone such as "
            "'ViT-B-16:openai' or 'cl-tiny-vit'."
        )

    def to(self, device: torch.device | str) -> Backbone:
        """Move to ``device``; returns self."""
        return self

    def analytic_flops(self, image_shape: tuple[int, ...]) -> int | None:
        """FLOPs of encoding one image of ``image_shape`` (C, H, W) when known without running
        the model; ``None``: count them (:func:`cl.core.compute.flops_per_image`)."""
        return None


def _pixels_preprocess(size: int | None) -> Callable[[Any], torch.Tensor]:
    def preprocess(image: Any) -> torch.Tensor:
        if isinstance(image, torch.Tensor):
            tensor = image.float()
            if tensor.dim() == 2:
                tensor = tensor.unsqueeze(0)
        else:
            if not isinstance(image, Image.Image):
                image = Image.fromarray(image)
            if image.mode not in ("L", "RGB"):
                image = image.convert("RGB")
            if size is not None:
                image = image.convert("L").resize((size, size), Image.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32) / 255.0   # as torchvision's to_tensor
            tensor = torch.from_numpy(np.ascontiguousarray(
                pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)))
        return tensor

    return preprocess


class PixelsBackbone(Backbone):
    """Flattened, [0, 1]-scaled pixels as features (no learning, no text tower).

    Parameters
    ----------
    size : int or None
        Resize images to ``size``×``size`` grey first; ``None`` keeps them as they
        are (all images of a stream must then share one shape).
    """

    def __init__(self, size: int | None = None) -> None:
        if size is not None and size <= 0:
            raise ValueError(f"pixels size must be positive, got {size}.")
        self.size = size
        self.name = "pixels" if size is None else f"pixels:{size}"
        self.fingerprint = self.name
        self.embed_dim = None if size is None else size * size
        self.preprocess = _pixels_preprocess(size)

    def analytic_flops(self, image_shape: tuple[int, ...]) -> int:
        """0: flattening pixels is a reshape, no arithmetic."""
        return 0

    def encode_images(self, batch: torch.Tensor) -> torch.Tensor:
        flat = batch.reshape(batch.shape[0], -1).float()
        if self.embed_dim is None:
            self.embed_dim = flat.shape[1]
        elif flat.shape[1] != self.embed_dim:
            raise ValueError(
                f"pixels backbone got images of {flat.shape[1]} values after seeing "
                f"{self.embed_dim}; images differ in size. Use 'pixels:SIZE' to resize."
            )
        return flat


def _state_hash(model: torch.nn.Module) -> str:
    """Hash of a module's structure (``repr``) and every tensor of its state dict."""
    h = hashlib.blake2b(repr(model).encode(), digest_size=12)
    for key, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{key}|{t.dtype}|{tuple(tensor.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _checkpoint_shapes(checkpoint: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes stored in a checkpoint (safetensors header, or a weights-only load)."""
    if checkpoint.suffix == ".safetensors":
        with safe_open(str(checkpoint), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    from open_clip.factory import load_state_dict

    return {k: tuple(v.shape) for k, v in load_state_dict(str(checkpoint)).items()}


def _mismatch(err: Exception, checkpoint: Path, arch: str) -> ValueError:
    """A readable error for a checkpoint that does not fit ``arch`` (first differing shapes)."""
    import open_clip

    with torch.device("meta"):  # shapes only: no memory, no init compute
        model = open_clip.create_model(arch, device="meta")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = _checkpoint_shapes(checkpoint)
    diffs = [f"{k}: checkpoint {found[k]} vs model {expected[k]}"
             for k in expected if k in found and found[k] != expected[k]]
    diffs += [f"missing {k}" for k in expected if k not in found]
    diffs += [f"unexpected {k}" for k in found if k not in expected]
    saved_from = _saved_arch(checkpoint)
    hint = f" The file was saved from {saved_from!r}." if saved_from and saved_from != arch else ""
    shown = "; ".join(diffs[:3]) + (f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else "")
    return ValueError(
        f"Checkpoint {str(checkpoint)!r} does not fit open_clip architecture {arch!r}: "
        f"shape mismatch: {shown or err}.{hint} Name the architecture the checkpoint "
        "was saved from: 'ARCH:/path/to/checkpoint'."
    )


def _saved_arch(checkpoint: Path) -> str | None:
    """Architecture recorded by :meth:`OpenCLIPBackbone.save_checkpoint`, if any."""
    if checkpoint.suffix != ".safetensors":
        return None
    try:
        with safe_open(str(checkpoint), framework="pt") as f:
            return (f.metadata() or {}).get("open_clip_model")
    except (OSError, SafetensorError):  # unreadable header: the load itself reports it
        return None


class OpenCLIPBackbone(Backbone):
    """A frozen open_clip CLIP model: image and text towers, L2-normalised embeddings.

    Build it with :func:`create_backbone`. Weights never require grad and the
    model stays in eval mode; strategies that adapt it (LoRA) change
    ``model`` in place and must then call :meth:`refresh_fingerprint`.

    Parameters
    ----------
    spec : str
        The spec it came from (``cl-tiny-vit``, ``ViT-B-16:openai``...).
    arch : str
        open_clip architecture name (what :meth:`save_checkpoint` records).
    model : open_clip.CLIP
    tokenizer : callable
        open_clip tokenizer, ``list[str] -> LongTensor (M, context_length)``.
    preprocess : callable
        The model's evaluation transform (resize, crop, RGB conversion, normalise).
    normalize : bool
        L2-normalise embeddings (default, as CLIP zero-shot does).

    Attributes
    ----------
    fingerprint : str
        ``"<arch>@<hash>"``: hash of the module structure and all weights, so
        the same weights loaded from different files share cached features.
    embed_dim : int
        Joint embedding size D.
    """

    has_text = True

    def __init__(
        self,
        spec: str,
        arch: str,
        model: torch.nn.Module,
        tokenizer: Callable[[list[str]], torch.Tensor],
        preprocess: Callable[[Any], torch.Tensor],
        *,
        normalize: bool = True,
    ) -> None:
        self.name = spec
        self.arch = arch
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.normalize = normalize
        self.embed_dim = int(model.visual.output_dim)
        self.refresh_fingerprint()

    @property
    def device(self) -> torch.device:
        """Device of the model's weights."""
        return next(self.model.parameters()).device

    def refresh_fingerprint(self) -> str:
        """Recompute :attr:`fingerprint` from the current weights (call after changing them)."""
        self.fingerprint = f"{self.arch}@{_state_hash(self.model)}"
        return self.fingerprint

    def encode_images(self, batch: torch.Tensor) -> torch.Tensor:
        """Image embeddings, (N, 3, H, W) preprocessed batch → (N, D)."""
        if batch.dim() != 4:
            raise ValueError(
                f"encode_images expects a preprocessed batch (N, 3, H, W), got shape "
                f"{tuple(batch.shape)}; apply backbone.preprocess to each image first."
            )
        return self.model.encode_image(batch.to(self.device), normalize=self.normalize)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Text embeddings of M strings → (M, D)."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("encode_texts takes a list of strings.")
        tokens = self.tokenizer(list(texts)).to(self.device)
        return self.model.encode_text(tokens, normalize=self.normalize)

    def to(self, device: torch.device | str) -> OpenCLIPBackbone:
        self.model.to(device)
        return self

    def save_checkpoint(self, path: str | os.PathLike[str]) -> Path:
        """Save the weights as a plain open_clip safetensors checkpoint (atomic write).

        ``create_backbone(f"{arch}:{path}")`` loads it back; so does
        ``open_clip.create_model(arch, pretrained=path)``.
        """
        target = Path(path)
        if target.suffix != ".safetensors":
            raise ValueError(f"save_checkpoint writes safetensors; name the file *.safetensors, "
                             f"got {str(target)!r}.")
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.model.state_dict().items()}
        data = safetensors_save(state, metadata={"format": "pt", "open_clip_model": self.arch})
        atomic_write(target, lambda fh: fh.write(data))
        return target


def _create_openclip(
    spec: str, device: torch.device | str, cache_dir: str | os.PathLike[str] | None,
    normalize: bool,
) -> OpenCLIPBackbone:
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    resolved = resolve(spec, cache_dir=cache_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # random-init specs give the same weights in every run
        try:
            model = open_clip.create_model(
                resolved.model,
                pretrained=None if resolved.checkpoint is None else str(resolved.checkpoint),
                force_quick_gelu=resolved.quick_gelu,
                force_preprocess_cfg=resolved.preprocess or None,
                pretrained_text=False,  # never fetch default tower weights from the hub
                weights_only=True,
            )
        except pickle.UnpicklingError as err:
            raise ValueError(
                f"Checkpoint {str(resolved.checkpoint)!r} holds more than tensors and cl loads "
                "only weights_only=True checkpoints; re-save it as safetensors "
                "(safetensors.torch.save_file(state_dict, path))."
            ) from err
        except (RuntimeError, AssertionError) as err:  # torch's / open_clip's shape checks
            if resolved.checkpoint is None:
                raise
            raise _mismatch(err, resolved.checkpoint, resolved.model) from err
    arch = spec if spec.startswith("hf-hub:") else resolved.model
    preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    tokenizer = open_clip.get_tokenizer(resolved.model)
    return OpenCLIPBackbone(spec, arch, model, tokenizer, preprocess, normalize=normalize).to(device)


def create_backbone(
    spec: str,
    *,
    device: torch.device | str = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    normalize: bool = True,
) -> Backbone:
    """Build a backbone from its spec string (see module docstring).

    Parameters
    ----------
    spec : str
    device : torch.device or str
    cache_dir : path or None
        Where open_clip stored downloaded weights (default: its usual caches).
    normalize : bool
        L2-normalise open_clip embeddings.

    Raises
    ------
    ValueError
        Unknown spec, model or tag (valid choices listed); checkpoint that does
        not fit the architecture.
    FileNotFoundError
        Missing checkpoint file, or pretrained weights not available offline.
    """
    if not isinstance(spec, str) or not spec:
        raise OptionError(f"backbone spec must be a non-empty string, got {spec!r}.")
    if spec == "pixels" or spec.startswith("pixels:"):
        _, _, size = spec.partition(":")
        if size and not size.isdigit():
            raise ValueError(f"pixels spec takes an integer size, got {spec!r} (e.g. 'pixels:32').")
        return PixelsBackbone(int(size) if size else None).to(device)
    return _create_openclip(spec, device, cache_dir, normalize)
