"""The fidelity suite itself: every PyPI-referenced group passes against its reference, offline;
a deliberately wrong method fails its group; missing git references are skipped with the command
that fetches them; ``--help`` lists every group."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_PY = ROOT / "experiments" / "fidelity" / "run.py"


def load_suite():
    """``experiments/fidelity/run.py`` as a module (loaded once by ``conftest.py``)."""
    return sys.modules["fidelity_run"]


GROUPS = load_suite().discover()
COMMON = load_suite().load_common()


def _kinds(module) -> set[type]:
    return {type(r) for r in module.REFERENCES}


PYPI_GROUPS = [n for n, m in GROUPS.items() if _kinds(m) == {COMMON.PyPI}]
GIT_GROUPS = [n for n, m in GROUPS.items() if COMMON.Git in _kinds(m)]


def test_help_lists_one_name_per_group():
    out = subprocess.run([sys.executable, str(RUN_PY), "--help"], capture_output=True, text=True,
                         check=True).stdout
    listed = [line.split()[0] for line in out.split("groups:\n", 1)[1].splitlines() if line.strip()]
    assert listed == list(GROUPS)
    assert len(PYPI_GROUPS) >= 4 and len(GIT_GROUPS) >= 6


@pytest.mark.parametrize("name", PYPI_GROUPS)
def test_pypi_group_matches_its_reference(name, suite):
    module = GROUPS[name]
    out = suite.run_group(module, COMMON.Refs())
    if out.error.startswith("missing PyPI reference"):
        pytest.fail(f"{out.error}\nThe pinned version is the one the ledger quotes: install it, "
                    "or update the pin and rerun experiments/fidelity/run.py --markdown.")
    assert not out.error, out.error
    bad = [(r.method, r.compared, r.value, r.tol) for r in out.rows if not r.passed]
    assert not bad, f"{name}: rows beyond their tolerance: {bad}"


def test_wrong_gda_shrinkage_fails_its_group(suite, monkeypatch, capsys):
    """GDA's shrinkage off by 1 %: the sklearn-heads group reports failing rows, run.py exits 1."""
    from strategies.estimators.gda import GDA

    right = GDA._shrunk_covariance

    def off_by_one_percent(self):
        if isinstance(self.shrinkage, float):
            saved = self.shrinkage
            self.shrinkage = saved * 1.01
            try:
                return right(self)
            finally:
                self.shrinkage = saved
        return right(self)

    monkeypatch.setattr(GDA, "_shrunk_covariance", off_by_one_percent)
    assert suite.main(["sklearn-heads"]) == 1
    out = capsys.readouterr().out
    assert "FAIL `GDA(shrinkage=0.1" in out and "FAILED sklearn-heads" in out


def test_wrong_nmc_normalisation_fails_its_group(suite, monkeypatch):
    from strategies.estimators.nmc import NMC

    monkeypatch.setattr(NMC, "_transform", lambda self, X: X)  # normalize=True ignored
    out = suite.run_group(GROUPS["sklearn-heads"], COMMON.Refs())
    failed = {r.method for r in out.rows if not r.passed}
    assert failed == {'`NMC(metric="euclidean", normalize=True)`'}


def test_missing_git_references_are_skipped_with_their_fetch_commands(suite, tmp_path, capsys):
    """What CI prints: every git group skipped, naming its repository, commit and fetch command."""
    argv = [*GIT_GROUPS, "--refs", str(tmp_path / "refs"), "--cache", str(tmp_path / "cache")]
    assert suite.main(argv) == 0
    out = capsys.readouterr().out
    for name in GIT_GROUPS:  # a group stops at its first missing reference
        first = next(r for r in GROUPS[name].REFERENCES if isinstance(r, COMMON.Git))
        assert f"skipped {name}: {first.label} is not available" in out
        assert f"Fetch it with: {first.fetch_command(tmp_path / 'cache')}" in out
    assert suite.main([GIT_GROUPS[0], "--refs", str(tmp_path), "--cache", str(tmp_path),
                       "--require-all"]) == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", GIT_GROUPS)
def test_git_group_matches_its_reference(name, suite):
    """Runs where the references are available: ``CL_FIDELITY_REFS=DIR[:DIR…]`` holding
    ``OWNER/REPO`` checkouts, or the cache ``run.py --fetch`` fills; skipped otherwise, with the
    command that fetches them."""
    dirs = tuple(Path(p) for p in os.environ.get("CL_FIDELITY_REFS", "").split(os.pathsep) if p)
    out = suite.run_group(GROUPS[name], COMMON.Refs(dirs=dirs))
    if out.skipped:
        pytest.skip(out.skipped)
    assert not out.error, out.error
    bad = [(r.method, r.compared, r.value, r.tol) for r in out.rows if not r.passed]
    assert not bad, f"{name}: rows beyond their tolerance: {bad}"


def test_load_source_applies_only_existing_replacements(tmp_path):
    src = tmp_path / "ref.py"
    src.write_text("import math\n\nclass A:\n    def f(self, x):\n        return math.sqrt(x)\n\n"
                   "def g(x):\n    return 2 * x\n")
    ns = COMMON.load_source(src, ["g", "A.f"], replace={"2 * x": "3 * x"},
                            namespace={"math": __import__("math")})
    assert ns.g(2) == 6 and ns.f(None, 9) == 3.0
    with pytest.raises(ValueError, match="not found"):
        COMMON.load_source(src, ["g"], replace={"4 * x": "x"})
    with pytest.raises(KeyError, match="'h'"):
        COMMON.load_source(src, ["h"])


def _git_repo(path: Path) -> str:
    """A one-commit git repository at ``path``; returns its commit."""
    path.mkdir(parents=True)
    (path / "ref.py").write_text("def f(x):\n    return x + 1\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["init", "-q"], ["add", "ref.py"], ["commit", "-q", "-m", "ref"]):
        subprocess.run(["git", "-C", str(path), *cmd], check=True, env=env)
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


def test_git_references_resolve_from_refs_dirs_then_the_cache(tmp_path):
    commit = _git_repo(tmp_path / "refs" / "owner" / "repo")
    ref = COMMON.Git("owner/repo", commit)
    refs = COMMON.Refs(dirs=(tmp_path / "refs",), cache=tmp_path / "cache")
    assert refs.path(ref) == tmp_path / "refs" / "owner" / "repo"
    assert COMMON.load_source(refs.path(ref) / "ref.py", ["f"]).f(1) == 2
    wrong = COMMON.Git("owner/repo", "0" * 40)
    with pytest.raises(COMMON.MissingReference, match=f"is at {commit}, not the pinned 0000"):
        refs.path(wrong)
    made = _git_repo(tmp_path / "made")
    cached = COMMON.Git("other/repo", made)
    (tmp_path / "cache" / "other").mkdir(parents=True)
    (tmp_path / "made").rename(tmp_path / "cache" / f"other/repo@{made}")
    assert COMMON.Refs(cache=tmp_path / "cache").path(cached) == cached.cache_dir(tmp_path / "cache")
    absent = COMMON.Git("other/repo", "1" * 40)
    with pytest.raises(COMMON.MissingReference, match="Fetch it with: git clone -q "
                       "https://github.com/other/repo .*checkout -q 1111"):
        COMMON.Refs(cache=tmp_path / "cache").path(absent)
    with pytest.raises(ValueError, match="40 lowercase hex"):
        COMMON.Git("owner/repo", "abc")


def test_a_snapshot_at_the_pinned_commit_resolves_and_is_labelled(tmp_path, suite):
    """``DIR/OWNER/REPO`` holding files and ``CL_SNAPSHOT`` (no git checkout): accepted at the
    pinned commit and recorded as a snapshot; at another commit refused, naming both commits."""
    commit, other = "ab" * 20, "cd" * 20
    snap = tmp_path / "refs" / "owner" / "repo"
    snap.mkdir(parents=True)
    (snap / "ref.py").write_text("def f(x):\n    return x + 1\n")
    (snap / "CL_SNAPSHOT").write_text(f"{commit}\nfiles read from the public code index at this "
                                      "commit;\nnot a git checkout\n")
    ref = COMMON.Git("owner/repo", commit)
    refs = COMMON.Refs(dirs=(tmp_path / "refs",), cache=tmp_path / "cache")
    assert refs.path(ref) == snap
    assert COMMON.load_source(refs.path(ref) / "ref.py", ["f"]).f(1) == 2
    assert refs.used[ref].startswith("snapshot (not a git checkout): files read from the public "
                                     "code index at this commit; not a git checkout")
    module = type("Group", (), {"NAME": "g", "DESCRIPTION": "d", "REFERENCES": (ref,)})
    assert "(files of that commit, not a git checkout)" in suite.table(module, [], refs.used)
    with pytest.raises(COMMON.MissingReference, match=f"snapshot .* of commit {commit}, not the "
                       f"pinned {other}"):
        refs.path(COMMON.Git("owner/repo", other))


def test_pypi_reference_is_the_installed_version_or_says_how_to_install_it(tmp_path):
    import sklearn

    here = COMMON.installed_version("scikit-learn")
    assert COMMON.Refs().path(COMMON.PyPI("scikit-learn", here)) == Path(
        sklearn.__file__).parents[1]
    other = COMMON.PyPI("scikit-learn", "0.0.1")
    with pytest.raises(COMMON.MissingReference, match=r"pip install --no-deps --target .*"
                       r"scikit-learn-0\.0\.1 'scikit-learn==0\.0\.1'"):
        COMMON.Refs(cache=tmp_path).path(other)
