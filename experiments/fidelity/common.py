"""The fidelity suite's shared pieces: references, their resolution, result rows, source extraction.

A *group* is one module of ``experiments/fidelity/`` (one ledger section of ``docs/fidelity.md``)
defining ``NAME``, ``DESCRIPTION``, ``REFERENCES`` (a tuple of :class:`PyPI` / :class:`Git`) and
``run(refs) -> list[Row]``. ``run.py`` discovers the groups, resolves their references with a
:class:`Refs`, runs them and prints or writes the rows. The repository holds no upstream code:
references are obtained at run time and their own source is executed.

Where a reference comes from:

* :class:`PyPI` ``(dist, version)``: the venv's installed distribution when it is exactly that
  version (the offline path CI takes); otherwise
  ``~/.cache/cl/fidelity-refs/pypi/DIST-VERSION``, installed there with
  ``pip install --no-deps --target`` when missing (``run.py`` then puts that directory first on
  ``sys.path`` before anything imports the package).
* :class:`Git` ``(repo, commit)``: ``DIR/OWNER/REPO`` for each ``--refs DIR`` (its ``HEAD`` must be
  the pinned commit), then ``~/.cache/cl/fidelity-refs/OWNER/REPO@COMMIT``, then a ``git clone``
  into that cache directory when fetching is allowed. When none works, :class:`MissingReference`
  names the repository, the commit and the command that fetches it.

  A ``DIR/OWNER/REPO`` that is not a git checkout but holds a file ``CL_SNAPSHOT`` is a
  *snapshot*: the repository's files as read elsewhere (e.g. from a public code index) at one
  commit. Its first line is that commit (40 hex digits), the following lines say where the files
  came from. It is accepted when the commit is the pinned one, and :attr:`Refs.used` (hence the
  printed and recorded output) says it was a snapshot, not a git checkout, with that provenance.
"""

from __future__ import annotations

import ast
import importlib.metadata
import math
import os
import subprocess
import sys
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("CL_FIDELITY_CACHE", Path.home() / ".cache" / "cl" / "fidelity-refs"))
SNAPSHOT = "CL_SNAPSHOT"  # marks a DIR/OWNER/REPO that holds files at a commit, not a checkout


class MissingReference(RuntimeError):
    """A reference is not available here; the message says how to fetch it."""


@dataclass(frozen=True)
class PyPI:
    """A PyPI distribution at an exact version, e.g. ``PyPI("scikit-learn", "1.9.1")``."""

    dist: str
    version: str

    @property
    def label(self) -> str:
        return f"{self.dist} {self.version} (PyPI)"

    def cache_dir(self, cache: Path = CACHE) -> Path:
        return cache / "pypi" / f"{self.dist}-{self.version}"

    def fetch_command(self, cache: Path = CACHE) -> str:
        return (f"python -m pip install --no-deps --target {self.cache_dir(cache)} "
                f"'{self.dist}=={self.version}'")


@dataclass(frozen=True)
class Git:
    """A GitHub repository at a pinned commit, e.g. ``Git("mrflogs/ICLR24", "560fe21…")``."""

    repo: str
    commit: str

    def __post_init__(self) -> None:
        if self.repo.count("/") != 1:
            raise ValueError(f"Git repo must be 'OWNER/REPO', got {self.repo!r}.")
        if len(self.commit) != 40 or any(c not in "0123456789abcdef" for c in self.commit):
            raise ValueError(f"Git commit must be 40 lowercase hex digits, got {self.commit!r}.")

    @property
    def label(self) -> str:
        return f"{self.repo} @ {self.commit}"

    def cache_dir(self, cache: Path = CACHE) -> Path:
        return cache / f"{self.repo}@{self.commit}"

    def fetch_command(self, cache: Path = CACHE) -> str:
        d = self.cache_dir(cache)
        return (f"git clone -q https://github.com/{self.repo} {d} && "
                f"git -C {d} checkout -q {self.commit}")


Reference = PyPI | Git


def _git_head(path: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                             text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def installed_version(dist: str) -> str | None:
    """The venv's version of distribution ``dist`` (without a local ``+…`` label), or None."""
    try:
        return importlib.metadata.version(dist).split("+")[0]  # 2.14.1+cu130 is torch 2.14.1
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass
class Refs:
    """Resolves references to directories.

    Parameters
    ----------
    dirs : sequence of Path
        Directories holding ``OWNER/REPO`` checkouts or snapshots (``--refs``), searched first.
    cache : Path
        The cache of fetched references (``~/.cache/cl/fidelity-refs``).
    fetch : bool
        Try ``git clone`` / ``pip install --target`` for a reference found nowhere.
    """

    dirs: tuple[Path, ...] = ()
    cache: Path = CACHE
    fetch: bool = False
    used: dict[Reference, str] = field(default_factory=dict)

    def path(self, ref: Reference) -> Path:
        """The directory holding ``ref``: a checkout root, or the ``site-packages`` it imports from.

        Raises
        ------
        MissingReference
            When the reference is nowhere and cannot be fetched; the message names it and
            the command that fetches it.
        """
        if isinstance(ref, PyPI):
            return self._pypi(ref)
        if isinstance(ref, Git):
            return self._git(ref)
        raise TypeError(f"a reference is common.PyPI or common.Git, got {ref!r}.")

    def _pypi(self, ref: PyPI) -> Path:
        if installed_version(ref.dist) == ref.version:
            dist = importlib.metadata.distribution(ref.dist)
            self.used[ref] = "installed in the running environment"
            return Path(dist.locate_file(""))
        target = self._pip_target(ref)
        if target is not None:
            if str(target) not in sys.path:
                raise MissingReference(
                    f"{ref.label}: the environment has {ref.dist} "
                    f"{installed_version(ref.dist)}; {target} holds the pinned version but must "
                    "come first on sys.path before the package is imported (run the group "
                    "through experiments/fidelity/run.py, which does that).")
            self.used[ref] = f"pip --target {target}"
            return target
        raise MissingReference(
            f"{ref.label} is not available: the environment has {ref.dist} "
            f"{installed_version(ref.dist)}. Fetch it with: {ref.fetch_command(self.cache)}")

    def _git(self, ref: Git) -> Path:
        for d in self.dirs:
            checkout = Path(d) / ref.repo
            if checkout.is_dir() and not (checkout / ".git").exists() and (
                    checkout / SNAPSHOT).is_file():
                return self._snapshot(ref, checkout)
            if checkout.is_dir():
                head = _git_head(checkout)
                if head != ref.commit:
                    raise MissingReference(
                        f"{checkout} is at {head}, not the pinned {ref.commit}: run "
                        f"git -C {checkout} checkout {ref.commit}")
                self.used[ref] = str(checkout)
                return checkout
        cached = ref.cache_dir(self.cache)
        if not (cached.is_dir() and _git_head(cached) == ref.commit) and self.fetch:
            subprocess.run(["bash", "-c", ref.fetch_command(self.cache)], check=False)
        if cached.is_dir() and _git_head(cached) == ref.commit:
            self.used[ref] = str(cached)
            return cached
        where = ", ".join(str(Path(d) / ref.repo) for d in self.dirs) or "no --refs DIR"
        raise MissingReference(
            f"{ref.label} is not available (looked in {where} and {cached}). "
            f"Fetch it with: {ref.fetch_command(self.cache)}  (or pass --refs DIR holding "
            f"{ref.repo} at that commit)")

    def _snapshot(self, ref: Git, path: Path) -> Path:
        """``path`` when its ``CL_SNAPSHOT`` names the pinned commit (recorded as a snapshot)."""
        lines = (path / SNAPSHOT).read_text().splitlines()
        commit = lines[0].strip() if lines else ""
        if commit != ref.commit:
            raise MissingReference(
                f"{path} is a snapshot (its {SNAPSHOT}) of commit {commit or '(none)'}, not the "
                f"pinned {ref.commit}: replace it by the files at {ref.commit}, or pass --refs "
                f"DIR holding a git checkout of {ref.repo} at that commit")
        provenance = " ".join(line.strip() for line in lines[1:] if line.strip())
        self.used[ref] = (f"snapshot (not a git checkout): {provenance or 'provenance not stated'}"
                          f" [{path}]")
        return path

    def pypi_paths(self, refs: Iterable[Reference]) -> list[Path]:
        """Cache directories of the PyPI references the environment lacks (to go on ``sys.path``).

        Fetches them when allowed; references neither installed nor fetchable are left out
        (their groups then report :class:`MissingReference`).
        """
        paths = []
        for ref in refs:
            if isinstance(ref, PyPI) and installed_version(ref.dist) != ref.version:
                target = self._pip_target(ref)
                if target is not None:
                    paths.append(target)
        return paths

    def _pip_target(self, ref: PyPI) -> Path | None:
        """The complete ``pip install --no-deps --target`` directory of ``ref`` (installed now
        when fetching is allowed), or None."""
        target = ref.cache_dir(self.cache)
        if not (target / ".complete").exists() and self.fetch:
            cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                   str(target), f"{ref.dist}=={ref.version}"]
            if subprocess.run(cmd, check=False).returncode == 0:
                (target / ".complete").touch()
        return target if (target / ".complete").exists() else None


@dataclass(frozen=True)
class Row:
    """One ledger row: ours vs the reference on identical inputs.

    ``max_abs`` / ``max_rel`` are the largest absolute / relative differences (relative to the
    reference's largest magnitude; NaN when not meaningful), or a count where ``compared`` says
    so (e.g. prediction disagreements). The row passes when the value named by ``tol_on`` is at
    most ``tol``. ``note`` carries what the figure depends on (condition numbers, dtype of the
    reference run).
    """

    method: str
    compared: str
    max_abs: float
    max_rel: float = math.nan
    dtype: str = "float64"
    tol: float = 0.0
    tol_on: str = "abs"
    note: str = ""

    def __post_init__(self) -> None:
        if self.tol_on not in ("abs", "rel"):
            raise ValueError(f"Row.tol_on must be 'abs' or 'rel', got {self.tol_on!r}.")

    @property
    def value(self) -> float:
        return float(self.max_abs if self.tol_on == "abs" else self.max_rel)

    @property
    def passed(self) -> bool:
        return not math.isnan(self.value) and self.value <= self.tol


def max_diff(ours: Any, ref: Any) -> tuple[float, float]:
    """(max |ours − ref|, that ÷ max |ref|) of two array-likes of one shape, in float64."""
    import numpy as np

    a = np.asarray(_numpy(ours), dtype=np.float64)
    b = np.asarray(_numpy(ref), dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"compared arrays differ in shape: ours {a.shape}, reference {b.shape}.")
    if a.size == 0:
        return 0.0, 0.0
    d = float(np.max(np.abs(a - b)))
    scale = float(np.max(np.abs(b)))
    return d, (d / scale if scale > 0 else (0.0 if d == 0 else math.inf))


def _numpy(x: Any) -> Any:
    if hasattr(x, "detach"):
        return x.detach().cpu().double().numpy()
    return x


def fmt(x: float) -> str:
    """A difference as the ledger prints it: ``0``, ``3.6e-12``, ``12``, ``nan``."""
    if isinstance(x, float) and math.isnan(x):
        return "–"
    if x == 0:
        return "0"
    if float(x).is_integer() and abs(x) < 1e6:
        return str(int(x))
    return f"{x:.1e}"


# ----------------------------------------------------------------------------- source extraction


def _select(tree: ast.Module, name: str) -> ast.stmt:
    """The top-level definition ``name`` or ``Class.method`` of a parsed module."""
    head, _, tail = name.partition(".")
    for node in tree.body:
        targets = ([t.id for t in node.targets if isinstance(t, ast.Name)]
                   if isinstance(node, ast.Assign) else [getattr(node, "name", None)])
        if head in targets:
            if not tail:
                return node
            for sub in getattr(node, "body", []):
                if getattr(sub, "name", None) == tail:
                    return sub
    raise KeyError(f"{name!r} is not a top-level definition of the reference source.")


def extract_source(path: str | Path, names: Iterable[str],
                   replace: Mapping[str, str] | None = None) -> str:
    """The source text of the definitions ``names`` (``"f"``, ``"Cls"``, ``"Cls.method"``).

    ``replace`` maps exact substrings of the extracted text to their substitutes; each must
    occur, so a changed reference fails loudly instead of running unpatched. Every
    replacement a group uses is listed in its docstring.
    """
    text = Path(path).read_text()
    tree = ast.parse(text)
    parts = []
    for name in names:
        node = _select(tree, name)
        seg = ast.get_source_segment(text, node, padded=True) or ""
        if node.col_offset:  # a method: dedent to module level
            import textwrap

            seg = textwrap.dedent(" " * node.col_offset + seg.lstrip())
        decorators = "".join(
            "@" + (ast.get_source_segment(text, d) or "") + "\n" for d in
            getattr(node, "decorator_list", []))
        parts.append(decorators + seg)
    src = "\n\n".join(parts)
    for old, new in (replace or {}).items():
        if old not in src:
            raise ValueError(f"replacement target {old!r} not found in {path} ({list(names)}).")
        src = src.replace(old, new)
    return src


def load_source(path: str | Path, names: Iterable[str], replace: Mapping[str, str] | None = None,
                namespace: dict[str, Any] | None = None) -> types.SimpleNamespace:
    """Execute the reference definitions ``names`` of ``path`` and return them.

    Parameters
    ----------
    path : path to a reference source file
    names : top-level function/class/assignment names, or ``"Class.method"`` (bound to nothing:
        a plain function taking ``self``)
    replace : exact substring substitutions on the extracted text (see :func:`extract_source`)
    namespace : the globals the code runs in (its imports and stand-ins); a fresh dict if None

    Returns
    -------
    types.SimpleNamespace
        Attribute ``n.split(".")[-1]`` for each name, plus ``globals`` (the namespace).
    """
    names = list(names)
    glb: dict[str, Any] = {} if namespace is None else namespace
    glb.setdefault("__name__", f"fidelity_ref_{Path(path).stem}")
    code = compile(extract_source(path, names, replace), f"{path} [extracted: {', '.join(names)}]",
                   "exec")
    exec(code, glb)  # noqa: S102 - the reference's own source, fetched at its pinned commit
    out = {n.split(".")[-1]: glb[n.split(".")[-1]] for n in names}
    return types.SimpleNamespace(**out, globals=glb)


def run_statements(path: str | Path, first: str, last: str, namespace: dict[str, Any],
                   replace: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Execute the reference's lines from the first one containing ``first`` through the next
    one containing ``last`` (a block inside a loop or function, dedented), in ``namespace``.

    ``replace`` as in :func:`extract_source`. Returns ``namespace`` (the block's variables).
    """
    import textwrap

    lines = Path(path).read_text().splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if first in line)
        stop = next(i for i in range(start, len(lines)) if last in lines[i])
    except StopIteration:
        raise ValueError(f"{path} has no block from {first!r} to {last!r}.") from None
    src = textwrap.dedent("\n".join(lines[start:stop + 1]))
    for old, new in (replace or {}).items():
        if old not in src:
            raise ValueError(f"replacement target {old!r} not found in {path} lines "
                             f"{start + 1}-{stop + 1}.")
        src = src.replace(old, new)
    code = compile(src, f"{path} [lines {start + 1}-{stop + 1}]", "exec")
    exec(code, namespace)  # noqa: S102 - the reference's own source at its pinned commit
    return namespace


def import_file(path: str | Path, name: str) -> types.ModuleType:
    """Import the reference file ``path`` unmodified as module ``name``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def toy_features(stream_name: str, backbone_name: str = "toy-clip") -> tuple[Any, Any, dict]:
    """A toy stream, its backbone, and the cached features of every task's train and test split.

    Returns
    -------
    (stream, backbone, features)
        ``features[(t, split)]`` is :func:`cl.models.features.extract`'s result for task ``t``.
    """
    import streams
    from cl.models.backbones import create_backbone
    from cl.models.features import extract

    stream = streams.get(stream_name)
    backbone = create_backbone(backbone_name)
    feats = {(t, split): extract(backbone, stream[t].load(split), key=stream[t].key, split=split,
                                 progress=False)
             for t in range(len(stream)) for split in ("train", "test")}
    return stream, backbone, feats
