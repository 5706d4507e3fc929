"""Every Python snippet in README.md and docs/*.md runs as written, and the README's examples
give the numbers they promise."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


def _image_folders(root: Path) -> None:
    """The folders docs/streams.md's snippet reads: data/{birds,cars}/<class>/*.png."""
    rng = np.random.default_rng(0)
    for task, classes in (("birds", ("crow", "owl")), ("cars", ("suv", "van"))):
        for c in classes:
            (root / "data" / task / c).mkdir(parents=True)
            for i in range(10):
                pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / "data" / task / c / f"{i}.png")


SETUP = {"streams.md": _image_folders}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_python_snippet_runs(doc, tmp_path, monkeypatch):
    blocks = python_blocks(doc)
    monkeypatch.chdir(tmp_path)
    SETUP.get(doc.name, lambda root: None)(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(blocks):  # blocks of one page share a namespace, in order
        try:
            exec(compile(block, f"{doc.name} python block {i}", "exec"), namespace)  # noqa: S102
            error = None
        except Exception as exc:  # noqa: BLE001 - reported with the snippet below
            error = exc
        assert error is None, f"{doc.name} python block {i} raised {error!r}:\n{block}"


def test_docs_have_snippets_to_run():
    counts = {doc.name: len(python_blocks(doc)) for doc in DOCS}
    assert counts["README.md"] >= 3 and sum(counts.values()) >= 10


def test_readme_api_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(python_blocks(ROOT / "README.md")[0], namespace)  # noqa: S102 - the Runner example
    assert namespace["result"].results["metrics"]["average_accuracy"] > 0.9
    assert (tmp_path / "runs" / "gda-digits" / "results.json").exists()


def test_readme_metrics_example_gives_the_numbers_in_its_comment():
    namespace: dict = {}
    exec(python_blocks(ROOT / "README.md")[1], namespace)  # noqa: S102
    out = namespace["metrics"].summarize(namespace["A"], namespace["z"])
    # hand-computed from A = [[.9, .1], [.7, .8]], z = [.5, .2]
    assert out["average_accuracy"] == pytest.approx(0.75)
    assert out["forgetting"] == pytest.approx(0.2)                 # 0.9 − 0.7
    assert out["backward_transfer"] == pytest.approx(-0.2)
    assert out["forward_transfer"] == pytest.approx(0.1 - 0.2)      # A[0, 1] − z[1]
    assert out["average_incremental_accuracy"] == pytest.approx((0.9 + 0.75) / 2)


def test_readme_own_strategy_example_runs(tmp_path):
    namespace: dict = {}
    exec(python_blocks(ROOT / "README.md")[2], namespace)  # noqa: S102 - the Centroids strategy
    import streams
    from cl import Runner, create_backbone

    result = Runner(streams.get("split-digits"), namespace["Centroids"](), create_backbone("pixels"),
                    out_dir=tmp_path / "run", progress=False).run()
    A = result.tracker.matrix
    assert A[-1].mean() > 0.85 and not np.isnan(A).any()
