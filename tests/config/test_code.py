"""A config cannot make cl call arbitrary code: specs are located and parsed before any import,
and only subclasses of cl.Strategy / cl.Plugin are ever called."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import strategies
from cl.config import code
from cl.config.registry import Registry
from cl.errors import ProtocolError
from strategies import loading


@pytest.mark.parametrize("spec, kind, match", [
    ("os:system", "strategy", r"os.py defines no 'system'"),
    ("os:system", "plugin", r"os.py defines no 'system'"),
    ("subprocess:run", "strategy", r"names the function run\(\)"),
    ("shutil:rmtree", "plugin", r"names the function rmtree\(\)"),
    ("builtins:exec", "strategy", r"module 'builtins' has no Python source"),
    ("pathlib:Path", "strategy", r"is the class Path, not a subclass of cl.Strategy"),
    ("collections:OrderedDict", "plugin", r"not a subclass of cl.Plugin"),
    ("json.decoder:JSONDecoder", "strategy", r"not a subclass of cl.Strategy"),
    ("no_such_package.sub:Thing", "strategy", r"cannot import module 'no_such_package.sub'"),
])
def test_code_that_is_not_a_strategy_is_refused_before_it_runs(spec, kind, match):
    with pytest.raises((ValueError, ProtocolError), match=match):
        loading.load_code(spec, kind)


def test_a_module_is_not_imported_unless_its_source_defines_the_class(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "lab"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .impl import Method\n")
    (pkg / "impl.py").write_text("from cl import Strategy\n\nclass Method(Strategy):\n"
                                 "    def train_task(self, d, c): pass\n"
                                 "    def predict(self, x, s, c): pass\n")
    (pkg / "noisy.py").write_text("import sys\nsys.modules['lab_noisy_ran'] = True\n"
                                  "def helper():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ValueError, match="names the function helper"):
        loading.load_code("lab.noisy:helper")
    with pytest.raises(ValueError, match="defines no 'Other'"):
        loading.load_code("lab.noisy:Other")
    assert "lab_noisy_ran" not in sys.modules and "lab.noisy" not in sys.modules
    assert loading.load_code("lab:Method").__name__ == "Method"  # re-exported by the package
    assert loading.load_code("lab.impl:Method").__module__ == "lab.impl"


def test_static_options_read_simple_annotations_without_running_the_file(tmp_path):
    file = tmp_path / "m.py"
    file.write_text(
        "raise SystemExit('this file must not run')\n"
        "from typing import Literal, Optional\n"
        "class M:\n"
        "    def __init__(self, *, a: float = 1.0, n: 'int' = 2, mode: Literal['x', 'y'] = 'x',\n"
        "                 cap: Optional[int] = None, names: list[str] | None = None, obj: dict = {}):\n"
        "        pass\n"
        "class Open:\n"
        "    def __init__(self, **kwargs):\n"
        "        pass\n")
    spec = f"{file}:M"
    assert "options checked from source" in loading.check_code_options(
        spec, {"a": 2, "n": 3, "mode": "y", "cap": "none", "names": ["p"], "obj": 5})
    for options, match in [({"nn": 1}, "has no option 'nn'; Did you mean 'n'"),
                           ({"a": "x"}, "option 'a' expects a number"),
                           ({"a": float("nan")}, "option 'a' must be a finite number"),
                           ({"n": 1.5}, "option 'n' expects an integer"),
                           ({"mode": "z"}, r"must be one of \['x', 'y'\]"),
                           ({"cap": 1.5}, "option 'cap' expects int | NoneType")]:
        with pytest.raises((ValueError, TypeError), match=match):
            loading.check_code_options(spec, options)
    assert "checked when the run starts" in loading.check_code_options(f"{file}:Open", {"z": 1})


def test_syntax_and_import_errors_name_file_and_line(tmp_path):
    (tmp_path / "syn.py").write_text("x = 1\nclass A(\n")
    with pytest.raises(ValueError, match=r"syn.py:2: syntax error in strategy code"):
        strategies.get(f"{tmp_path}/syn.py:A")
    (tmp_path / "imp.py").write_text("from cl import Strategy\n\n1 / 0\nclass A(Strategy):\n"
                                     "    pass\n")
    with pytest.raises(ValueError, match=r"imp.py:3: importing .* failed: ZeroDivisionError"):
        strategies.get(f"{tmp_path}/imp.py:A")


def test_file_specs_are_stored_absolute(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "m.py").write_text("")
    (tmp_path / "m.py").write_text("")
    monkeypatch.chdir(tmp_path)
    assert code.normalize("m.py:M") == f"{tmp_path / 'm.py'}:M"
    assert code.normalize("m.py:M", (tmp_path / "run",)) == f"{tmp_path / 'run' / 'm.py'}:M"
    assert code.normalize("pkg.mod:M") == "pkg.mod:M" and code.normalize("nmc") == "nmc"
    assert code.normalize("avalanche:EWC") == "avalanche:EWC"


def test_registries_spell_their_plurals():
    assert Registry("strategy").plural == "strategies" and Registry("key").plural == "keys"
    with pytest.raises(ValueError, match=r"Unknown strategy 'finetun'. Did you mean 'finetune'\? "
                                         r"Valid strategies"):
        strategies.get("finetun")


def test_the_examples_are_found_from_their_path():
    ridge = Path(__file__).resolve().parents[2] / "experiments" / "examples" / "ridge_strategy.py"
    assert code.fingerprint(f"{ridge}:RidgeStrategy")["sha256"] == code.sha256_file(ridge)
