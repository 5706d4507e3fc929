"""The package layout holds: no import cycles (module-level or lazy), and the command line and
the pixels path stay free of heavy libraries."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cl", "strategies", "streams")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks (never executed)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in ast.walk(node):
                if hasattr(child, "lineno"):
                    lines.add(child.lineno)
    return lines


def import_graph() -> dict[str, set[str]]:
    """Module -> project modules it imports, at module level or inside functions.

    ``from a.b import c`` counts as importing ``a.b.c`` when that is a module, else
    ``a.b``; importing ``a.b.c`` also runs the packages ``a`` and ``a.b``, except those
    that contain the importing module (they are already being imported).
    """
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_lines(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        edges = set()
        for target in targets:
            parts = target.split(".")
            edges.add(target)
            edges.update(p for p in (".".join(parts[:i]) for i in range(1, len(parts)))
                         if p not in ancestors)
        graph[name] = {t for t in edges if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_module_level_or_lazy():
    graph = import_graph()
    assert {"cl.core.runner", "strategies.lora.base", "streams.core"} <= set(graph)
    assert "cl.core.strategy" in graph["cl.core.runner"]  # edges are really found
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def _imports_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return set(out.stdout.split())


@pytest.mark.parametrize("code", [
    "import cl.cli",
    "from cl.cli import app; app.build_parser()",
    "import cl, strategies, streams; cl.__version__; strategies.STRATEGIES; streams.STREAMS",
])
def test_command_line_start_imports_no_torch(code):
    assert "torch" not in _imports_after(code)


@pytest.mark.parametrize("argv", [["--help"], ["list", "strategies"], ["list", "streams"],
                                  ["list", "plugins"], ["list", "backbones"]])
def test_listing_imports_no_torch(argv):
    code = ("import sys, contextlib, io\nfrom cl.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    try:\n        main({argv!r})\n    except SystemExit:\n        pass")
    loaded = _imports_after(code)
    assert "torch" not in loaded and "open_clip" not in loaded


def test_report_and_compare_import_no_torch(tmp_path):
    from cl.cli import main

    assert main(["run", "--out", str(tmp_path / "r"), "--no-progress",
                 "--set", "stream.n_tasks=2"]) == 0
    code = ("import contextlib, io\nfrom cl.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['report', {str(tmp_path / 'r')!r}]) == 0\n"
            f"    assert main(['compare', {str(tmp_path / 'r')!r}]) == 0")
    assert "torch" not in _imports_after(code)


def test_the_quickstart_imports_only_what_it_needs(tmp_path):
    """``cl run`` (pixels, nmc): no open_clip, no dynamo (pixels' FLOPs are known: 0), no
    TensorBoard or W&B (no logger asked for), no pyplot (figures are drawn on
    ``matplotlib.figure.Figure``); the run still counts its compute and writes its figures."""
    code = ("from cl.cli import main\n"
            f"assert main(['run', '--out', {str(tmp_path / 'r')!r}, '--no-progress', "
            "'--set', 'stream.n_tasks=2']) == 0")
    loaded = _imports_after(code)
    assert "torch" in loaded  # the run itself does use torch
    assert "open_clip" not in loaded and "transformers" not in loaded and "timm" not in loaded
    assert "torch._dynamo" not in loaded and "torch._inductor" not in loaded
    assert not {"wandb", "tensorboard", "torch.utils.tensorboard"} & loaded
    assert "matplotlib.pyplot" not in loaded and (tmp_path / "r" / "accuracy_matrix.png").is_file()
    compute = json.loads((tmp_path / "r" / "results.json").read_text())["compute"]
    assert [c["train_flops"] for c in compute] == [0.0, 0.0]
    assert all(c["backbone_forwards"] > 0 for c in compute)
