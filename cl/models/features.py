"""Backbone features of a task split, cached on disk.

:func:`extract` runs the backbone over a dataset once, under
``torch.inference_mode()`` (and bf16 autocast on CUDA), and stores the
embeddings with their labels in the feature cache. The cache key is
everything that determines the features: the backbone fingerprint (model +
hash of the weights actually loaded), whether embeddings are normalised, the
dataset identity (``task.key``), the split, the preprocessing transform, the
dataset length and any ``Subset`` indices. A second call with the same key
loads from disk and never touches the backbone.

Each entry is two files in ``<cache_dir>/features/``: ``<digest>.safetensors``
(``X`` (N, D) float32, ``y`` (N,) int64) and ``<digest>.json``, a manifest with
the key, the data file's size and SHA-256. Both are written atomically, data
first, so a manifest always describes a complete file. A data file whose size
or checksum disagrees with its manifest is reported with a warning and rebuilt.
Files are created with the umask's permissions (a cache can be shared by a
group); temporary files a killed writer left are removed by the next store
once a day old (younger ones may be another process's write in progress).

Cache directory: the ``cache_dir`` argument, else ``$CL_CACHE_DIR``, else
``platformdirs.user_cache_dir("cl")``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from cl.models.backbones import Backbone
from cl.runtime.data import Preprocessed, loader
from cl.runtime.io import atomic_write, atomic_write_json, refuse_link, remove_temporaries

FORMAT_VERSION = 1
#: Temporary files older than this (seconds) in the cache were left by killed writers.
STALE_SECONDS = 24 * 3600
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


@dataclass(frozen=True)
class Features:
    """Embeddings of one task split.

    Attributes
    ----------
    X : torch.Tensor, shape (N, D), float32
    y : torch.Tensor, shape (N,), int64
        Local labels (indices into the task's class names).
    """

    X: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.X.shape[0])


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$CL_CACHE_DIR``, else the user cache dir."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("CL_CACHE_DIR")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("cl"))


def transform_identity(transform: Callable[[Any], torch.Tensor]) -> str:
    """``repr`` of a transform with memory addresses removed (stable across runs)."""
    return _ADDRESS.sub("", repr(transform))


def _subset_identity(dataset: Dataset) -> str:
    """Hash of the index chain of nested ``Subset`` views ("" for a plain dataset)."""
    h = hashlib.sha256()
    found = False
    while isinstance(dataset, Subset):
        found = True
        h.update(json.dumps([int(i) for i in dataset.indices]).encode())
        dataset = dataset.dataset
    return h.hexdigest() if found else ""


def cache_key(backbone: Backbone, dataset: Dataset, *, key: str, split: str) -> dict[str, Any]:
    """Everything that determines the features of ``dataset`` (JSON-able)."""
    return {
        "format": FORMAT_VERSION,
        "backbone": backbone.fingerprint,
        "normalize": bool(backbone.normalize),
        "dataset": key,
        "split": split,
        "transform": transform_identity(backbone.preprocess),
        "subset": _subset_identity(dataset),
        "n": len(dataset),  # type: ignore[arg-type]
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


class FeatureCache:
    """The on-disk feature store under ``<root>/features``.

    Parameters
    ----------
    root : path or None
        Cache directory (see :func:`cache_root`).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = cache_root(root)
        self.dir = self.root / "features"

    def paths(self, key: dict[str, Any]) -> tuple[Path, Path]:
        """(data file, manifest) of ``key``."""
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        return self.dir / f"{digest}.safetensors", self.dir / f"{digest}.json"

    def load(self, key: dict[str, Any]) -> Features | None:
        """The cached features of ``key``; ``None`` when absent or corrupt (with a warning)."""
        data, manifest = self.paths(key)
        if not manifest.is_file():
            return None
        try:
            meta = json.loads(manifest.read_text())
            problem = self._problem(meta, key, data)
            if problem is None:
                tensors = safetensors_load(data.read_bytes())
                X, y = tensors["X"], tensors["y"]
                if X.shape != (meta["n"], meta["dim"]) or y.shape != (meta["n"],):
                    problem = f"shapes {tuple(X.shape)}/{tuple(y.shape)} differ from manifest"
                else:
                    return Features(X, y)
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as err:
            problem = f"unreadable ({err})"
        warnings.warn(
            f"Feature cache entry {data} for {key['dataset']} [{key['split']}] is corrupt: "
            f"{problem}; rebuilding it.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None

    @staticmethod
    def _problem(meta: dict[str, Any], key: dict[str, Any], data: Path) -> str | None:
        if meta.get("key") != key:
            return "manifest key differs"
        if not data.is_file():
            return "data file missing"
        size = data.stat().st_size
        if size != meta["bytes"]:
            return f"size {size} bytes, manifest says {meta['bytes']} (truncated?)"
        if _sha256(data) != meta["sha256"]:
            return "checksum mismatch"
        return None

    def store(self, key: dict[str, Any], features: Features, *, backbone_name: str) -> Path:
        """Write ``features`` under ``key`` (data then manifest, both atomic); returns the data path."""
        data, manifest = self.paths(key)
        remove_temporaries(self.dir, older_than=STALE_SECONDS)
        blob = safetensors_save({"X": features.X.contiguous(), "y": features.y.contiguous()})
        atomic_write(data, lambda fh: fh.write(blob), root=self.root)
        atomic_write_json(manifest, root=self.root, obj={
            "key": key,
            "backbone_name": backbone_name,
            "n": int(features.X.shape[0]),
            "dim": int(features.X.shape[1]),
            "file": data.name,
            "bytes": len(blob),
            "sha256": hashlib.sha256(blob).hexdigest(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })
        return data

    def entries(self) -> list[dict[str, Any]]:
        """Manifests of every entry (plus ``"path"``), oldest first; unreadable ones skipped."""
        found = []
        for manifest in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []:
            try:
                meta = json.loads(manifest.read_text())
            except (OSError, ValueError):
                continue
            meta["path"] = str(manifest.with_suffix(".safetensors"))
            found.append(meta)
        return sorted(found, key=lambda m: str(m.get("created", "")))

    def clear(self) -> tuple[int, int]:
        """Delete every cached feature file; returns (files removed, bytes freed).

        A ``features`` directory that is a link planted in the cache is refused (named),
        never emptied."""
        refuse_link(self.dir, root=self.root)
        if not self.dir.is_dir():
            return 0, 0
        files = [p for p in self.dir.iterdir() if p.is_file()]
        freed = sum(p.stat().st_size for p in files)
        shutil.rmtree(self.dir)
        return len(files), freed


def autocast_for(device: torch.device) -> Any:
    """bf16 autocast on CUDA, nothing elsewhere (:func:`cl.runtime.accel.autocast`)."""
    from cl.runtime.accel import autocast

    return autocast(device)


def _extract_on_device(backbone: Backbone, files: tuple[list[str], list[int]], batch_size: int,
                       device: torch.device) -> Features:
    """Features of JPEG ``files`` (paths, labels) decoded and preprocessed on ``device``."""
    from cl.runtime.accel import DeviceTransform, autocast, decode_jpegs

    paths, labels = files
    transform, xs = DeviceTransform(backbone.preprocess), []
    with torch.inference_mode(), autocast(device):
        for s in range(0, len(paths), batch_size):
            batch = transform(decode_jpegs(paths[s : s + batch_size], device))
            xs.append(backbone.encode_images(batch).float().cpu())
    return Features(torch.cat(xs), torch.tensor(labels, dtype=torch.long))


def extract(
    backbone: Backbone,
    dataset: Dataset,
    *,
    key: str,
    split: str,
    batch_size: int = 256,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    name: str | None = None,
    decode: str = "cpu",
) -> Features:
    """Embed every image of ``dataset`` with ``backbone``, through the feature cache.

    Parameters
    ----------
    backbone : Backbone
    dataset : Dataset
        Yields ``(image, local_label)``; a ``torch.utils.data.Subset`` view is
        keyed by its indices.
    key : str
        Identity of the dataset (``task.key``): equal keys must mean equal data.
    split : str
        ``"train"`` or ``"test"``.
    batch_size, num_workers : int
        Data loading.
    device : torch.device or str
        Where batches go (the backbone should already be there).
    progress : bool
        Show a tqdm bar while encoding.
    cache_dir : path or None
        Cache directory (see :func:`cache_root`).
    use_cache : bool
        ``False`` always encodes and writes nothing.
    name : str or None
        What the dataset is, for messages (default ``key``), e.g. ``"task 'x'"``.
    decode : {"cpu", "device"}
        ``"cpu"``: images decoded and preprocessed by the loader (PIL). ``"device"``: a
        dataset of JPEG files is decoded on ``device`` (``torchvision.io.decode_jpeg``,
        nvJPEG on CUDA) and resized, cropped and normalised there
        (:class:`cl.runtime.accel.DeviceTransform`); the resize differs from PIL's in the
        last bits, so these features are cached under their own key.

    Returns
    -------
    Features
        ``X`` (N, D) float32 on CPU and ``y`` (N,) int64; identical tensors on a cache hit.
    """
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError(f"{key} [{split}] is empty: a task needs at least one image per split.")
    if decode not in ("cpu", "device"):
        raise ValueError(f"decode must be 'cpu' or 'device', got {decode!r}.")
    files = None
    if decode == "device":
        from cl.runtime import accel

        files = accel.jpeg_files(dataset)
        if files is None:
            raise ValueError(f"decode='device' decodes JPEG files, but {name or key} [{split}] is "
                             "not a dataset of .jpg files (an image folder); use decode='cpu'.")
        key = f"{key}|decode=device"
    cache = FeatureCache(cache_dir) if use_cache else None
    ckey = cache_key(backbone, dataset, key=key, split=split)
    if cache is not None and (hit := cache.load(ckey)) is not None:
        return hit
    device = torch.device(device)
    if files is not None:
        features = _extract_on_device(backbone, files, batch_size, device)
        if cache is not None:
            cache.store(ckey, features, backbone_name=backbone.name)
        return features
    data = Preprocessed(dataset, backbone.preprocess, where=f"{name or key} [{split}]")
    xs, ys = [], []
    bar = tqdm(loader(data, batch_size=batch_size, num_workers=num_workers), total=-(-n // batch_size),
               desc=f"features {key} [{split}]", unit="batch", disable=not progress, leave=False)
    with torch.inference_mode(), autocast_for(device):
        for images, labels in bar:
            xs.append(backbone.encode_images(images.to(device, non_blocking=True)).float().cpu())
            ys.append(labels.long())
    features = Features(torch.cat(xs), torch.cat(ys))
    if not torch.isfinite(features.X).all():
        raise ValueError(f"features of {key} [{split}] contain NaN or inf.")
    if cache is not None:
        cache.store(ckey, features, backbone_name=backbone.name)
    return features
