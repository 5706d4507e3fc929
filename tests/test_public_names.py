"""Public names import the way the docs spell them, without making `import cl` heavy."""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: ``from cl.x import a, b`` / ``from streams.x import (a, b)`` in a snippet or example
IMPORT = re.compile(r"^[ \t]*from ((?:cl|strategies|streams)(?:\.\w+)*) import "
                    r"(\([^)]*\)|[\w, \t]+)$", re.MULTILINE)


def _example_sources() -> dict[str, str]:
    """Python of every docs snippet (README.md, docs/*.md) and of experiments/examples/."""
    sources = {}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        blocks = re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)
        sources[path.name] = "\n".join(blocks)
    for path in sorted((ROOT / "experiments" / "examples").glob("*.py")):
        sources[f"experiments/examples/{path.name}"] = path.read_text()
    return sources


def _imported_names() -> list[tuple[str, str, str]]:
    """(where, module, name) of every library name a docs example imports."""
    found = []
    for where, code in _example_sources().items():
        for module, names in IMPORT.findall(code):
            for name in names.strip("()").replace("\n", ",").split(","):
                name = name.split(" as ")[0].strip()
                if name:
                    found.append((where, module, name))
    return found


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True).stdout


def test_cl_metrics_is_a_module_whose_names_import_without_torch():
    out = _run("import sys\n"
               "import cl\n"
               "print('cl.metrics' in sys.modules)\n"
               "from cl.metrics import recall_at_k, average_accuracy, summarize\n"
               "import cl.metrics\n"
               "print(cl.metrics.recall_at_k is recall_at_k, 'torch' in sys.modules)")
    assert out.split() == ["False", "True", "False"]


def test_cl_metrics_holds_the_core_definitions():
    import cl
    import cl.core.metrics as core
    from cl import metrics
    from cl.metrics import recall_at_k

    assert cl.metrics is metrics and set(metrics.__all__) == set(core.__all__)
    assert all(getattr(metrics, n) is getattr(core, n) for n in core.__all__)
    similarity = np.array([[0.9, 0.1], [0.7, 0.3]])  # query 1's positive ranks second
    assert recall_at_k(similarity, [[0], [1]], k=1) == pytest.approx(0.5)
    assert recall_at_k(similarity, [[0], [1]], k=2) == pytest.approx(1.0)


def test_the_data_loader_of_the_docs_is_public():
    from cl.runtime import data

    assert "loader" in data.__all__ and data.loader.__doc__


def test_every_name_a_docs_example_imports_is_public_and_documented():
    """Public: in its module's ``__all__`` (or a submodule); documented: a docstring."""
    names = _imported_names()
    assert ("own_strategies.md", "cl.core.strategy", "Context") in names
    assert ("experiments/examples/image_strategy.py", "cl.runtime.data", "loader") in names
    private = []
    for where, module, name in names:
        mod = importlib.import_module(module)
        if importlib.util.find_spec(f"{module}.{name}") if hasattr(mod, "__path__") else False:
            continue
        obj = getattr(mod, name, None)
        if name not in getattr(mod, "__all__", ()) or obj is None or (
                callable(obj) and not (obj.__doc__ or "").strip()):
            private.append(f"{where}: from {module} import {name}")
    assert not private, "examples import names that are not public and documented:\n" + \
        "\n".join(private)
