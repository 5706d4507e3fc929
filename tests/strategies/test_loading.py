"""Strategies from user code: a file path, a module path and an installed entry point,
each run end to end offline exactly as a user would (``cl run --strategy ...``)."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import strategies
from cl.cli import main
from strategies import loading

EXAMPLES = Path(__file__).resolve().parents[2] / "experiments" / "examples"


def run_cli(out: Path, *args: str) -> dict:
    code = main(["run", "--out", str(out), "--no-progress", *args])
    assert code == 0
    return json.loads((out / "results.json").read_text())


@pytest.fixture
def ridge_file(tmp_path: Path) -> Path:
    """The ridge example copied to a directory outside the package."""
    target = tmp_path / "user_code" / "my_ridge.py"
    target.parent.mkdir()
    shutil.copy(EXAMPLES / "ridge_strategy.py", target)
    return target


def test_ridge_example_from_a_file_path(tmp_path, ridge_file):
    results = run_cli(tmp_path / "run", "--strategy", f"{ridge_file}:RidgeStrategy",
                      "--set", "strategy.alpha=0.1")
    # the label is the class name, as for the same class run from Python; the config keeps the spec
    assert results["strategy"] == "RidgeStrategy"
    assert results["config"]["strategy"]["name"] == f"{ridge_file}:RidgeStrategy"
    assert results["status"] == "completed"
    A = np.array(results["accuracy_matrix"])
    # closed-form ridge on the statistics of all tasks so far: accurate and barely forgetting
    assert results["metrics"]["average_accuracy"] >= 0.85
    assert results["metrics"]["forgetting"] < 0.1
    assert A.shape == (5, 5)


def test_image_example_from_a_file_path(tmp_path):
    user = tmp_path / "elsewhere"
    user.mkdir()
    file = shutil.copy(EXAMPLES / "image_strategy.py", user / "image_strategy.py")
    results = run_cli(tmp_path / "run", "--strategy", f"{file}:SmallCNN",
                      "--set", "strategy.epochs=2")
    A = np.array(results["accuracy_matrix"])
    assert np.diag(A).mean() > 0.8  # it learns each task from images
    assert results["compute"][0]["trainable_parameters"] > 0
    assert results["compute"][0]["examples_seen"] > 0


def test_strategy_from_a_module_path(tmp_path, monkeypatch, ridge_file):
    pkg = tmp_path / "site" / "lab_methods"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    shutil.copy(ridge_file, pkg / "ridge.py")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    strategy = strategies.get("lab_methods.ridge:RidgeStrategy", alpha=2.0)
    assert type(strategy).__module__ == "lab_methods.ridge" and strategy.alpha == 2.0
    results = run_cli(tmp_path / "run", "--strategy", "lab_methods.ridge:RidgeStrategy")
    assert results["metrics"]["average_accuracy"] >= 0.85


def _install_distribution(site: Path, ridge_file: Path) -> None:
    """A real installed distribution (``*.dist-info`` on sys.path) with a ``cl.strategies``
    entry point, as ``pip install`` of a package declaring one would leave it."""
    shutil.copy(ridge_file, site / "cl_ridge_ext.py")
    info = site / "cl_ridge_ext-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cl-ridge-ext\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[cl.strategies]\nuser-ridge = cl_ridge_ext:RidgeStrategy\n")


def test_strategy_from_an_entry_point(tmp_path, monkeypatch, ridge_file):
    site = tmp_path / "site"
    site.mkdir()
    _install_distribution(site, ridge_file)
    assert "user-ridge" not in strategies.available()
    monkeypatch.syspath_prepend(str(site))
    assert "user-ridge" in strategies.available()
    assert {"finetune", "nmc"} <= set(strategies.available())
    _, options = loading.describe("user-ridge")
    assert options == {"alpha": "float = 1.0"}
    results = run_cli(tmp_path / "run", "--strategy", "user-ridge", "--set", "strategy.alpha=0.5")
    assert results["strategy"] == "user-ridge"
    assert results["metrics"]["average_accuracy"] >= 0.85


# -- options are validated against the constructor ---------------------------------
def test_unknown_option_lists_valid_ones(ridge_file):
    with pytest.raises(ValueError, match=r"no option 'lambda'.*valid options: alpha"):
        strategies.get(f"{ridge_file}:RidgeStrategy", **{"lambda": 1.0})


def test_mistyped_option_names_key_and_type(tmp_path, ridge_file, capsys):
    with pytest.raises(TypeError, match=r"option 'alpha' expects a number, got 'big'"):
        strategies.get(f"{ridge_file}:RidgeStrategy", alpha="big")
    code = main(["run", "--out", str(tmp_path / "r"), "--no-progress",
                 "--strategy", f"{ridge_file}:RidgeStrategy", "--set", "strategy.alpha=big"])
    assert code == 2
    assert "alpha" in capsys.readouterr().err


# -- bad input ------------------------------------------------------------------------
def test_missing_file(tmp_path):
    missing = tmp_path / "nope.py"
    with pytest.raises(FileNotFoundError, match="nope.py.*does not exist"):
        strategies.get(f"{missing}:Anything")


def test_missing_class_lists_classes_in_file(ridge_file):
    with pytest.raises(ValueError, match=r"defines no 'Ridge'.*RidgeStrategy"):
        strategies.get(f"{ridge_file}:Ridge")


def test_class_without_predict_names_the_missing_method(tmp_path):
    file = tmp_path / "half.py"
    file.write_text(
        "from cl.core.strategy import Strategy\n\n"
        "class Half(Strategy):\n"
        "    def train_task(self, data, ctx):\n"
        "        pass\n\n"
        "class Duck:\n"
        "    inputs = 'features'\n"
    )
    with pytest.raises(TypeError, match=r"Half does not implement the strategy protocol: missing predict"):
        strategies.get(f"{file}:Half")
    with pytest.raises(TypeError, match=r"'.*half.py:Duck' is the class Duck, not a subclass of "
                                        r"cl.Strategy"):
        strategies.get(f"{file}:Duck")


def test_unknown_module_and_unknown_name():
    with pytest.raises(ValueError, match="cannot import module 'no_such_pkg.mod'"):
        strategies.get("no_such_pkg.mod:Thing")
    with pytest.raises(ValueError, match=r"Unknown strategy 'ridge'.*finetune.*path/to/file.py:ClassName"):
        strategies.get("ridge")


def test_file_strategy_reloads_after_edit(tmp_path):
    file = tmp_path / "edited.py"
    source = (EXAMPLES / "ridge_strategy.py").read_text()
    file.write_text(source)
    first = strategies.get(f"{file}:RidgeStrategy")
    file.write_text(source.replace("alpha: float = 1.0", "alpha: float = 3.0"))
    os.utime(file, ns=(1, 10**18))  # a different modification time, as an editor leaves it
    assert strategies.get(f"{file}:RidgeStrategy").alpha == 3.0
    assert first.alpha == 1.0
