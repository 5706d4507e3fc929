"""Resolve an open_clip backbone spec to an architecture and a local weights file.

cl never downloads weights. A spec is resolved the way open_clip resolves it
(model name → pretrained tag → file), but only against files already on this
machine: open_clip's own download caches (the Hugging Face hub cache and
``~/.cache/clip``) or a path the user gives. Everything else is a clear error.

Spec forms
----------
``MODEL``
    open_clip architecture with random weights (seeded, so runs agree), or the
    weights cl ships for it as package data (``cl/models/pretrained/MODEL.safetensors``:
    ``toy-clip``, pretrained on the toy world by ``experiments/toy_clip/pretrain.py``).
``MODEL:TAG``
    a pretrained tag of ``open_clip.list_pretrained()`` whose file is cached locally.
``MODEL:/path/to/weights.safetensors`` (or ``.pt``, ``.pth``, ``.bin``)
    a local checkpoint, loaded with ``weights_only=True`` or safetensors.
``hf-hub:ORG/NAME``
    an open_clip repository already in the local Hugging Face cache.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).parent / "model_configs"
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
TINY_MODELS: tuple[str, ...] = tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a backbone's architecture and weights come from.

    Attributes
    ----------
    model : str
        Name to give ``open_clip.create_model`` (a built-in or registered config,
        or ``local-dir:DIR`` for a cached hub repository).
    checkpoint : Path or None
        Local weights file; ``None`` means random initialisation.
    quick_gelu : bool
        Whether the weights were trained with QuickGELU (from the tag's config).
    preprocess : dict
        Preprocessing overrides of the tag (mean, std, interpolation, resize_mode).
    """

    model: str
    checkpoint: Path | None
    quick_gelu: bool = False
    preprocess: dict[str, Any] = field(default_factory=dict)


def open_clip_architectures() -> list[str]:
    """open_clip's built-in architecture names, read from its config folder (no import)."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "model_configs"
    return sorted(p.stem for p in folder.glob("*.json"))


def available_backbones(*, tags: bool = False) -> list[str]:
    """Backbone specs for ``cl list backbones``.

    ``pixels``, cl's offline configs, the spec forms, and open_clip's
    architectures (random weights); with ``tags``, every ``MODEL:TAG`` of
    ``open_clip.list_pretrained()`` (imports open_clip, hence torch).
    """
    specs = ["pixels", "pixels:SIZE", *TINY_MODELS, "MODEL:/path/to/weights.safetensors",
             "hf-hub:ORG/NAME"]
    if tags:
        import open_clip

        return [*specs, *open_clip.list_pretrained(as_str=True)]
    return [*specs, *open_clip_architectures()]


def register_model_configs() -> None:
    """Make cl's tiny test configs (``cl-tiny-vit``...) known to open_clip (idempotent)."""
    import open_clip

    if not set(TINY_MODELS) <= set(open_clip.list_models()):
        open_clip.add_model_config(CONFIG_DIR)


def _hf_cached(repo: str, filename: str, cache_dir: str | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, cache_dir=cache_dir)
    return Path(found) if isinstance(found, str) else None


def _hf_weights(repo: str, filename: str | None, cache_dir: str | None) -> Path | None:
    """First cached weights file of ``repo``, safetensors preferred (as open_clip does)."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    names = [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME] if not filename else [filename]
    if filename and filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    for name in names:
        path = _hf_cached(repo, name, cache_dir)
        if path is not None:
            return path
    return None


def _hub_cache_dir(cache_dir: str | None) -> str:
    from huggingface_hub import constants

    return cache_dir or constants.HF_HUB_CACHE


def _not_local(spec: str, looked: list[str], model: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"Pretrained weights {spec!r} are not on this machine (looked in: {'; '.join(looked)}) "
        "and cl never downloads weights. Either download them once with open_clip, e.g. "
        f"`python -c \"import open_clip; open_clip.create_model('{model}', "
        f"pretrained='{spec.partition(':')[2]}')\"`, or point at a local file: "
        f"'{model}:/path/to/weights.safetensors'."
    )


def _resolve_tag(model: str, tag: str, spec: str, cache_dir: str | None) -> ResolvedWeights:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model)
        valid = f"valid tags: {', '.join(tags)}" if tags else "open_clip has no pretrained tags for it"
        raise ValueError(
            f"Unknown pretrained tag {tag!r} for {model!r} ({valid}). "
            f"A local checkpoint works too: '{model}:/path/to/weights.safetensors'."
        )
    extra = {
        "quick_gelu": bool(cfg.get("quick_gelu", False)),
        "preprocess": {k: cfg[k] for k in _PREPROCESS_KEYS if k in cfg},
    }
    looked: list[str] = []
    if cfg.get("file"):
        path = Path(cfg["file"]).expanduser()
        if path.is_file():
            return ResolvedWeights(model, path, **extra)
        looked.append(str(path))
    if cfg.get("hf_hub"):
        # open_clip's convention: 'org/name/' (default file) or 'org/name/file.bin'
        repo, filename = os.path.split(cfg["hf_hub"])
        path = _hf_weights(repo, filename or None, cache_dir)
        if path is not None:
            return ResolvedWeights(model, path, **extra)
        looked.append(f"Hugging Face cache {_hub_cache_dir(cache_dir)} (repo {repo})")
    if cfg.get("url"):
        path = Path(cache_dir or "~/.cache/clip").expanduser() / os.path.basename(cfg["url"])
        if path.is_file():
            return ResolvedWeights(model, path, **extra)
        looked.append(str(path))
    raise _not_local(spec, looked, model)


def _resolve_hub(repo: str, spec: str, cache_dir: str | None) -> ResolvedWeights:
    config = _hf_cached(repo, "open_clip_config.json", cache_dir)
    weights = _hf_weights(repo, None, cache_dir)
    if config is None or weights is None:
        missing = "open_clip_config.json" if config is None else "open_clip weights"
        raise FileNotFoundError(
            f"{spec!r}: {missing} not found in the local Hugging Face cache "
            f"{_hub_cache_dir(cache_dir)}, and cl never downloads weights. Download the "
            f"repository once (`hf download {repo}`), pass cache_dir= where it lives, or "
            "point at a local file: 'MODEL:/path/to/weights.safetensors'."
        )
    return ResolvedWeights(f"local-dir:{config.parent}", weights)


def _looks_like_path(rest: str) -> bool:
    return (
        "/" in rest
        or "\\" in rest
        or rest.startswith(("~", "."))
        or rest.lower().endswith(CHECKPOINT_SUFFIXES)
    )


def resolve(spec: str, *, cache_dir: str | os.PathLike[str] | None = None) -> ResolvedWeights:
    """Resolve an open_clip spec (see module docstring) without touching the network.

    Parameters
    ----------
    spec : str
    cache_dir : path or None
        Where open_clip downloads were stored (its ``cache_dir``); default: the
        Hugging Face hub cache and ``~/.cache/clip``.

    Raises
    ------
    ValueError
        Unknown model name (close names listed) or unknown tag (valid tags listed).
    FileNotFoundError
        Missing checkpoint file, or pretrained weights that are not cached locally.
    """
    import open_clip

    register_model_configs()
    cache = None if cache_dir is None else str(cache_dir)
    if spec.startswith("hf-hub:"):
        repo = spec[len("hf-hub:"):].strip("/")
        if repo.count("/") != 1:
            raise ValueError(f"hf-hub spec must be 'hf-hub:ORG/NAME', got {spec!r}.")
        return _resolve_hub(repo, spec, cache)
    model, _, rest = spec.partition(":")
    models = open_clip.list_models()
    if model not in models:
        close = difflib.get_close_matches(model, models, n=5, cutoff=0.5)
        hint = f" Close names: {', '.join(close)}." if close else ""
        raise ValueError(
            f"Unknown open_clip model {model!r}.{hint} See open_clip.list_models() for all "
            f"{len(models)} architectures; tiny offline configs: {', '.join(TINY_MODELS)}."
        )
    if not rest:
        shipped = PRETRAINED_DIR / f"{model}.safetensors"
        return ResolvedWeights(model, shipped if shipped.is_file() else None)
    if _looks_like_path(rest):
        path = Path(rest).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"Checkpoint file {str(path)!r} of backbone {spec!r} does not exist; "
                "give the path of a .safetensors/.pt file saved from this architecture."
            )
        if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
            raise ValueError(
                f"Checkpoint {str(path)!r} has suffix {path.suffix!r}; "
                f"expected one of {', '.join(CHECKPOINT_SUFFIXES)}."
            )
        return ResolvedWeights(model, path)
    return _resolve_tag(model, rest, spec, cache)
