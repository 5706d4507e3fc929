"""Image folders as datasets and streams.

An *image folder* is ``ROOT/<class name>/<image files>`` (torchvision's
``ImageFolder`` layout). A *task folder* holds ``train/`` and ``test/`` image
folders with the same class sub-folders, or a single image folder that is split
into train/test (stratified, seeded).

Listing files is metadata: building a stream from folders lists directories but
opens no image. Images are opened when a dataset item is read; a file that
cannot be decoded raises ``ValueError`` naming the file.

Colour modes. Every image is converted to RGB when read (``PIL.Image.convert("RGB")``:
grey replicated to three channels, palettes expanded, alpha dropped, CMYK converted),
as torchvision's ``ImageFolder`` loader does. A folder whose images are *not all of one
mode* is refused when a split is loaded (:func:`check_modes` reads each file's header,
not its pixels), naming the modes with a file of each, unless the stream's
``allow_mixed_modes`` option is set: then they are converted as above with one warning
per folder. (ImageNet-R, a known mix of greyscale and colour JPEGs, allows them.)
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from streams.core import DEFAULT_TEMPLATES, Scenario, Stream, Task

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
)


def list_classes(root: str | os.PathLike[str]) -> tuple[str, ...]:
    """Sorted names of the class sub-folders of ``root``.

    Raises
    ------
    FileNotFoundError
        ``root`` does not exist or is not a directory.
    ValueError
        ``root`` has no class sub-folder.
    """
    path = Path(root)
    if not path.is_dir():
        raise FileNotFoundError(
            f"image folder {str(path)!r} does not exist; expected ROOT/<class>/<images>."
        )
    classes = tuple(sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not classes:
        raise ValueError(
            f"image folder {str(path)!r} has no class sub-folders; expected ROOT/<class>/<images>."
        )
    return classes


def split_classes(root: str | os.PathLike[str], what: str = "image folder") -> tuple[str, ...]:
    """Class names of a folder with ``train/`` and ``test/`` image folders: the train
    folder's, which must be the test folder's too.

    Raises
    ------
    ValueError
        A class folder exists on one side only (named): only in ``test/`` it could never be
        predicted, only in ``train/`` never be evaluated.
    """
    root = Path(root)
    train, test = list_classes(root / "train"), list_classes(root / "test")
    for side, other, only, why in (("test", "train", sorted(set(test) - set(train)), "predicted"),
                                   ("train", "test", sorted(set(train) - set(test)), "evaluated")):
        if only:
            raise ValueError(
                f"{what} {str(root)!r}: class folder(s) {only[:5]} are in {side}/ but not in "
                f"{other}/, so they could never be {why}; add them to {other}/ or remove them."
            )
    return train


def list_images(
    root: str | os.PathLike[str], class_names: Sequence[str] | None = None
) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """Image files of an image folder with their local labels.

    Parameters
    ----------
    root : path
        ``ROOT/<class>/<images>``.
    class_names : sequence of str, optional
        Folder names in label order; default: every class folder, sorted. A
        name without a folder raises ``ValueError``.

    Returns
    -------
    paths : list of Path, length N
    labels : np.ndarray, shape (N,), int64
    class_names : tuple of str
    """
    found = list_classes(root)
    names = tuple(class_names) if class_names is not None else found
    missing = [c for c in names if c not in found]
    if missing:
        raise ValueError(
            f"class names {missing[:5]} have no folder under {str(root)!r}; "
            f"folders there: {list(found[:10])}."
        )
    paths: list[Path] = []
    labels: list[int] = []
    empty = []
    for label, name in enumerate(names):
        files = sorted(
            p for p in (Path(root) / name).rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        paths.extend(files)
        labels.extend([label] * len(files))
        if not files:
            empty.append(name)
    if not paths:
        raise ValueError(
            f"image folder {str(root)!r} has no images (extensions: {', '.join(IMAGE_EXTENSIONS)})."
        )
    if empty:
        raise ValueError(
            f"class folder(s) {empty[:5]} under {str(root)!r} hold no images (extensions: "
            f"{', '.join(IMAGE_EXTENSIONS)}); a class needs images in every split. Add images or "
            "remove the folder."
        )
    return paths, np.asarray(labels, dtype=np.int64), names


_WARNED_MODES: set[str] = set()
"""Folders whose mixed colour modes were already reported in this process (warned once)."""


def check_modes(paths: Sequence[Path], root: str | os.PathLike[str], *, allow: bool,
                option: str = "stream.allow_mixed_modes") -> dict[str, int]:
    """Colour modes of the image files ``paths`` of folder ``root`` (headers only).

    Returns
    -------
    dict
        Mode -> number of files (``{"RGB": 120}``).

    Raises
    ------
    ValueError
        The files are of several modes and ``allow`` is false; the message names each mode
        with an example file and the option that allows them (then converted to RGB, warned
        once per folder).
    """
    modes: Counter[str] = Counter()
    example: dict[str, Path] = {}
    for path in paths:
        try:
            with Image.open(path) as img:
                mode = img.mode
        except (UnidentifiedImageError, OSError):
            continue  # reported, naming the file, when it is read
        modes[mode] += 1
        example.setdefault(mode, path)
    if len(modes) > 1:
        found = ", ".join(f"{m} ({n} file{'s' if n > 1 else ''}, e.g. {str(example[m])!r})"
                          for m, n in modes.most_common())
        text = (f"image folder {str(root)!r} mixes colour modes: {found}; every image is "
                "converted to RGB (grey replicated, palettes expanded, alpha dropped)")
        if not allow:
            raise ValueError(f"{text}. Set {option}=true to accept that, or convert the files "
                             "to one mode.")
        if str(root) not in _WARNED_MODES:
            _WARNED_MODES.add(str(root))
            warnings.warn(f"{text} ({option}=true).", UserWarning, stacklevel=2)
    return dict(modes)


class ImageFileDataset(Dataset):
    """Image files with local labels, opened lazily as RGB PIL images.

    Parameters
    ----------
    paths : sequence of path, length N
    labels : array-like of int, shape (N,)

    Attributes
    ----------
    targets : list of int
        The labels (torchvision convention, read by avalanche and the splitters).
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]], labels: Sequence[int] | np.ndarray) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} image paths but {len(labels)} labels.")
        self.paths = [Path(p) for p in paths]
        self.targets = [int(v) for v in labels]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path = self.paths[index]
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(
                f"cannot read image file {str(path)!r} ({err.__class__.__name__}: {err}); "
                "remove or replace it."
            ) from err
        return image, self.targets[index]


def image_folder(
    root: str | os.PathLike[str], class_names: Sequence[str] | None = None
) -> ImageFileDataset:
    """Dataset over ``ROOT/<class>/<images>``, labels in ``class_names`` order (default sorted)."""
    paths, labels, _ = list_images(root, class_names)
    return ImageFileDataset(paths, labels)


def stratified_split(
    labels: np.ndarray, test_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a per-class seeded train/test split.

    Each class keeps ``round(test_size * n_c)`` test items, at least one when
    it has two or more items and never all of them.

    Returns
    -------
    train_idx, test_idx : np.ndarray of int64, sorted
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}.")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = round(test_size * len(idx))
        k = min(max(k, 1 if len(idx) > 1 else 0), len(idx) - 1)
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def folder_task(
    name: str,
    root: str | os.PathLike[str],
    *,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    year: int | None = None,
    test_size: float = 0.2,
    seed: int = 0,
    key: str | None = None,
    allow_mixed_modes: bool = False,
) -> Task:
    """A task over a task folder (``root/{train,test}/<class>/*`` or ``root/<class>/*``).

    Class names are the train folder's class sub-folders. Without ``train/`` and
    ``test/`` sub-folders the images are split with :func:`stratified_split`.
    ``allow_mixed_modes``: see the module docstring (refused by default).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"task folder {str(root)!r} does not exist.")
    has_splits = (root / "train").is_dir() and (root / "test").is_dir()
    if has_splits:
        classes = split_classes(root, "task folder")

        def _side(side: str) -> Dataset:
            paths, labels, _ = list_images(root / side, classes)
            check_modes(paths, root / side, allow=allow_mixed_modes, option="allow_mixed_modes")
            return ImageFileDataset(paths, labels)

        def load_train() -> Dataset:
            return _side("train")

        def load_test() -> Dataset:
            return _side("test")
    else:
        classes = list_classes(root)

        def _split(which: int) -> Dataset:
            paths, labels, _ = list_images(root, classes)
            check_modes(paths, root, allow=allow_mixed_modes, option="allow_mixed_modes")
            idx = stratified_split(labels, test_size, seed)[which]
            return ImageFileDataset([paths[i] for i in idx], labels[idx])

        def load_train() -> Dataset:
            return _split(0)

        def load_test() -> Dataset:
            return _split(1)

    ident = key or f"folder:{root.resolve()}" + ("" if has_splits else f"?test_size={test_size}&seed={seed}")
    return Task(
        name=name, class_names=classes, load_train=load_train, load_test=load_test, key=ident,
        year=year, templates=tuple(templates),
        metadata={"expected_path": str(root), "source": "image-folder"},
    )


def from_folders(
    roots: Sequence[str | os.PathLike[str]],
    *,
    name: str = "folders",
    scenario: Scenario = "task-incremental",
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    years: Sequence[int] | None = None,
    test_size: float = 0.2,
    seed: int = 0,
    allow_mixed_modes: bool = False,
) -> Stream:
    """A stream with one task per task folder, in the given order.

    Parameters
    ----------
    roots : sequence of path, length T
        Task folders (see :func:`folder_task`); the task name is the folder name.
    name : str
        Stream name.
    scenario : {"task-incremental", "class-incremental", "task-agnostic", "domain-incremental"}
    templates : sequence of str
        Prompt templates shared by every task.
    years : sequence of int, length T, optional
        With years, the stream is chronological (stable sort by year).
    test_size, seed : float, int
        Split of folders without ``train/``/``test/``.
    allow_mixed_modes : bool
        Accept folders of several colour modes (converted to RGB, one warning per folder);
        refused by default (see the module docstring).
    """
    if isinstance(roots, (str, os.PathLike)):
        raise TypeError("roots must be a list of task folders, not a single path.")
    if years is not None and len(years) != len(roots):
        raise ValueError(f"{len(years)} years for {len(roots)} folders; give one year per folder.")
    tasks = [
        folder_task(Path(r).name, r, templates=templates, year=None if years is None else int(years[i]),
                    test_size=test_size, seed=seed, allow_mixed_modes=allow_mixed_modes)
        for i, r in enumerate(roots)
    ]
    if years is not None:
        return Stream.chronological(name, tasks, scenario)
    return Stream(name, tuple(tasks), scenario)
