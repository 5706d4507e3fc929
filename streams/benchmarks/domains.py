"""``domain-digits``: an offline domain-incremental stream from scikit-learn's digits.

Every session (task) holds the same ten classes 0–9; what changes from session
to session is the image statistics, as in the domain-incremental benchmarks
(Rotated/Permuted MNIST, van de Ven & Tolias 2019, "Three scenarios for
continual learning"; CORe50 NI, Lomonaco & Maltoni 2017). The 1,797 digits are
split once into train/test as :mod:`streams.benchmarks.digits` does; the train
split is then cut into one stratified, disjoint part per session (new
instances each session, as in NI), and each session's images, train and test,
go through its domain's transform:

``original``
    the images as they are;
``inverted``
    ``255 − x``;
``low-contrast``
    ``0.35·x + 140``: grey, washed-out digits;
``rotated``
    a quarter turn counter-clockwise;
``noisy``
    ``x + ε``, ``ε ~ N(0, 45²)`` per pixel, clipped to [0, 255]
    (noise drawn from ``numpy.random.default_rng([seed, session])``).

A task's test split is the whole test split under its session's transform, so
``A[t, j]`` is the accuracy on domain ``j`` after training through session ``t``
and forgetting measures what earlier domains lose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from streams.arrays import ArrayImageDataset
from streams.benchmarks.digits import TEMPLATES
from streams.core import Stream, Task
from streams.folders import stratified_split


@cache
def _split(seed: int, test_size: float) -> tuple[np.ndarray, ...]:
    """``x_train, x_test, y_train, y_test``: the digits (N, 8, 8) in 0..255, stratified split."""
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return tuple(train_test_split(images, digits.target, test_size=test_size, random_state=seed,
                                  stratify=digits.target))


def _noisy(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return x + 45.0 * rng.standard_normal(x.shape)


#: domain name -> transform of float images (N, 8, 8) in [0, 255] (rng for stochastic ones)
DOMAINS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "original": lambda x, rng: x,
    "inverted": lambda x, rng: 255.0 - x,
    "low-contrast": lambda x, rng: 0.35 * x + 140.0,
    "rotated": lambda x, rng: np.rot90(x, k=1, axes=(1, 2)),
    "noisy": _noisy,
}


def _apply(domain: str, images: np.ndarray, seed: int, session: int, split: str) -> np.ndarray:
    rng = np.random.default_rng([seed, session, 0 if split == "train" else 1])
    out = DOMAINS[domain](images.astype(np.float64), rng)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _session_parts(labels: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """Disjoint, stratified index sets of the train split, one per session (shape (N_s,))."""
    parts, rest = [], np.arange(len(labels))
    for s in range(n - 1):
        keep, take = stratified_split(labels[rest], 1.0 / (n - s), seed + s)
        parts.append(rest[take])
        rest = rest[keep]
    parts.append(rest)
    return parts


def domain_digits(
    *,
    domains: Sequence[str] = ("original", "inverted", "low-contrast", "rotated", "noisy"),
    seed: int = 0,
    test_size: float = 0.3,
) -> Stream:
    """scikit-learn digits as a domain-incremental stream: one session per domain.

    Parameters
    ----------
    domains : sequence of str
        Session order; names from :data:`DOMAINS` (each at most once).
    seed : int
        Seed of the train/test split, of the session parts and of the noise.
    test_size : float
        Fraction of each class held out for testing, in (0, 1).
    """
    domains = tuple(domains)
    unknown = [d for d in domains if d not in DOMAINS]
    if not domains or unknown or len(set(domains)) != len(domains):
        raise ValueError(f"domains must be distinct names from {list(DOMAINS)}, got {list(domains)}.")
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}.")
    ident = f"domain-digits(seed={seed},test_size={test_size},domains={list(domains)})"
    classes = tuple(str(c) for c in range(10))

    def load(session: int, split: str) -> ArrayImageDataset:
        x_tr, x_te, y_tr, y_te = _split(seed, test_size)
        if split == "train":
            idx = _session_parts(y_tr, len(domains), seed)[session]
            x, y = x_tr[idx], y_tr[idx]
        else:
            x, y = x_te, y_te
        return ArrayImageDataset(_apply(domains[session], x, seed, session, split), y)

    tasks = tuple(
        Task(
            name=f"session-{s}-{domain}",
            class_names=classes,
            load_train=lambda s=s: load(s, "train"),
            load_test=lambda s=s: load(s, "test"),
            key=f"{ident}/session{s}",
            templates=TEMPLATES,
            metadata={"domain": domain, "session": s},
        )
        for s, domain in enumerate(domains)
    )
    return Stream("domain-digits", tasks, "domain-incremental", {"domains": list(domains)})
