"""Every bad input is a clear error: a table of cases across command-line flags, TOML configs,
streams and folders, user strategies and plugins, and run directories.

Each ``cl`` case runs ``cl.cli.main`` in-process and asserts the exit status and that
stderr names the offending value; each Python-API case asserts the exception type and
message. No case may run code a config names (a ``MARKER`` file would appear).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import streams
from cl.cli import main
from cl.core.results import RESULTS_FILE
from cl.core.runner import Runner
from cl.models.backbones import create_backbone
from cl.runtime.integrity import seal
from strategies.adaptation.finetune import CLIPFinetune
from strategies.heads.nmc import NMCStrategy
from streams.arrays import ArrayImageDataset
from streams.core import Stream, Task

FAST = ["--set", "stream.n_tasks=2", "--no-progress"]

STRATEGIES = '''
import numpy as np
import torch
from cl import Plugin, Strategy


class Base(Strategy):
    """Class means on features."""

    def __init__(self, *, alpha: float = 1.0, mode: str = "a"):
        self.alpha, self.means = alpha, {}

    def train_task(self, data, ctx):
        for c in data.targets.unique().tolist():
            self.means[c] = data.features[data.targets == c].mean(0)

    def predict(self, inputs, label_space, ctx):
        out = torch.zeros(len(inputs), len(label_space))
        for i, c in enumerate(label_space.class_ids):
            if c in self.means:
                out[:, i] = -(inputs - self.means[c]).norm(dim=1)
        return out


class NumpyLogits(Base):
    def predict(self, inputs, label_space, ctx):
        return super().predict(inputs, label_space, ctx).numpy()


class WrongShape(Base):
    def predict(self, inputs, label_space, ctx):
        return torch.zeros(len(inputs), len(label_space) + 1)


class ListLogits(Base):
    def predict(self, inputs, label_space, ctx):
        return [[0.0] * len(label_space)] * len(inputs)


class NanLogits(Base):
    def predict(self, inputs, label_space, ctx):
        return torch.full((len(inputs), len(label_space)), float("nan"))


class PosInfLogits(Base):
    def predict(self, inputs, label_space, ctx):
        return torch.full((len(inputs), len(label_space)), float("inf"))


class NegInfRow(Base):
    def predict(self, inputs, label_space, ctx):
        return torch.full((len(inputs), len(label_space)), float("-inf"))


class LambdaState(Base):
    def state_dict(self):
        return {"fn": lambda x: x}


class ObjectArrayState(Base):
    def state_dict(self):
        return {"names": np.array(["a", None], dtype=object)}


class ModuleState(Base):
    def state_dict(self):
        return {"net": torch.nn.Linear(2, 2)}


class BoolKeyState(Base):
    def state_dict(self):
        return {True: 1}


class RecordsObject(Base):
    def train_task(self, data, ctx):
        super().train_task(data, ctx)
        ctx.record("model", object())


class RecordsInf(Base):
    def train_task(self, data, ctx):
        super().train_task(data, ctx)
        ctx.record("loss", float("inf"))


class Half(Strategy):
    def train_task(self, data, ctx):
        pass


class Misnamed(Base):
    def after_tsak(self, ctx):
        pass


class PixelInputs(Base):
    inputs = "pixels"


class NotAStrategy:
    def train_task(self, data, ctx):
        pass

    def predict(self, inputs, label_space, ctx):
        pass


def make():
    return Base()


class Counting(Plugin):
    def __init__(self, *, every: int = 1):
        self.every = every


class NotAPlugin:
    pass
'''

MINIMAL = "from cl import Strategy\n\nclass S(Strategy):\n    pass\n"


@pytest.fixture(scope="module")
def d(tmp_path_factory) -> Path:
    """Files the cases refer to as ``{d}``: user code, configs, image folders, run directories."""
    root = tmp_path_factory.mktemp("bad")
    (root / "user.py").write_text(STRATEGIES)
    (root / "syntax.py").write_text("import torch\n\nclass Broken(:\n    pass\n")
    (root / "raising.py").write_text("import torch\nundefined_name_here\n" + MINIMAL)
    (root / "side_effect.py").write_text(
        f"from pathlib import Path\nPath({str(root / 'MARKER')!r}).write_text('ran')\n" + MINIMAL)
    (root / "notes.txt").write_text("not python")
    touch = f"touch {root / 'MARKER'}"
    configs = {
        "os_system": f'[stream]\nname = "split-digits"\nn_tasks = 2\n\n[strategy]\nname = "os:system"\ncommand = "{touch}"\n',
        "os_system_plugin": f'[stream]\nname = "split-digits"\nn_tasks = 2\n\n[plugins."os:system"]\ncommand = "{touch}"\n',
        "subprocess": f'[strategy]\nname = "subprocess:Popen"\nargs = "{touch}"\nshell = true\n',
        "eval": '[strategy]\nname = "builtins:eval"\nsource = "1"\n',
        "bad_toml": "seed = \n",
        "typo_key": "sed = 3\n",
        "seed_str": 'seed = "zero"\n',
        "name_int": "[strategy]\nname = 5\n",
        "plugins_flat": "[plugins]\nreplay = 5\n",
        "plugins_str": 'plugins = "replay"\n',
        "stream_int": "stream = 5\n",
        "stream_unknown": '[stream]\nname = "nope"\n',
        "n_tasks_str": '[stream]\nname = "split-digits"\nn_tasks = "five"\n',
        "lr_nan": '[strategy]\nname = "finetune"\nlr = nan\n',
        "lr_inf": '[strategy]\nname = "finetune"\nlr = inf\n',
        "epochs_list": '[strategy]\nname = "finetune"\nepochs = [1, 2]\n',
        "batch_zero": "batch_size = 0\n",
        "workers_neg": "num_workers = -3\n",
        "device_tpu": 'device = "tpu"\n',
        "missing_file": '[strategy]\nname = "/nonexistent/dir/method.py:Method"\n',
        "replay_str": '[plugins.replay]\nmemory_size = "lots"\n',
        "replay_neg": '[plugins.replay]\nmemory_size = -1\n',
        "folder_missing": f'[stream]\nname = "split-folder"\nroot = "{root / "nowhere"}"\n',
    }
    for name, text in configs.items():
        (root / f"{name}.toml").write_text(text)
    evil = root / "evil_run"
    evil.mkdir()
    (evil / "config.toml").write_text(configs["os_system"])
    _image_folders(root)
    return root


def _png(path: Path, size: int = 8, mode: str = "L", value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size, size), value).save(path)


def _image_folders(root: Path) -> None:
    """Image folders for the split-folder stream, each broken in one way."""
    for c in "abcd":
        for i in range(4):
            _png(root / "good" / c / f"{i}.png", value=40 * i + ord(c) % 7)
    (root / "no_classes").mkdir()
    (root / "no_classes" / "loose.png").write_bytes(b"")
    for c in "abc":
        _png(root / "empty_class" / c / "0.png")
        _png(root / "empty_class" / c / "1.png")
    (root / "empty_class" / "d").mkdir()
    for c in "ab":
        (root / "no_images" / c).mkdir(parents=True)
        (root / "no_images" / c / "readme.txt").write_text("x")
    for c in "abcd":
        for i in range(3):
            _png(root / "sizes" / c / f"{i}.png", size=8 if c != "b" or i else 9)
            _png(root / "corrupt" / c / f"{i}.png")
    (root / "corrupt" / "a" / "0.png").write_bytes(b"not a png at all")
    for c in "abcd":  # one RGB image among greyscale ones
        for i in range(3):
            _png(root / "mixed_modes" / c / f"{i}.png", mode="RGB" if (c, i) == ("b", 1) else "L")
    for side in ("train", "test"):  # class 'z' only in test/, class 'y' only in train/
        for c in "ab":
            _png(root / "split_test_only" / side / c / "0.png")
            _png(root / "split_test_only" / side / c / "1.png")
            _png(root / "split_train_only" / side / c / "0.png")
            _png(root / "split_train_only" / side / c / "1.png")
    _png(root / "split_test_only" / "test" / "z" / "0.png")
    _png(root / "split_train_only" / "train" / "y" / "0.png")


def _cfg(name: str) -> list[str]:
    return ["run", "--config", f"{{d}}/{name}.toml"]


def _user(cls: str, *extra: str) -> list[str]:
    return ["run", "--strategy", f"{{d}}/user.py:{cls}", *FAST, *extra]


# (id, argv after "cl", exit status, regex that stderr must match)
CLI_CASES: list[tuple[str, list[str], int, str]] = [
    # -- command-line flags -------------------------------------------------------------
    ("stream-unknown", ["run", "--stream", "nope"], 2, r"Unknown stream 'nope'.*Valid streams: .*split-digits"),
    ("stream-typo", ["run", "--stream", "split-digit"], 2, r"'split-digit'.*Did you mean 'split-digits'"),
    ("strategy-unknown", ["run", "--strategy", "nope"], 2, r"Unknown strategy 'nope'.*Valid strategies"),
    ("strategy-typo", ["run", "--strategy", "finetun"], 2, r"'finetun'.*Did you mean 'finetune'"),
    ("backbone-unknown", ["run", "--backbone", "nope", *FAST], 2, r"'nope'"),
    ("backbone-pixels-zero", ["run", "--backbone", "pixels:0", *FAST], 2, r"pixels size must be positive, got 0"),
    ("device-unknown", ["run", "--device", "quantum", "--dry-run"], 2, r"unknown device 'quantum'"),
    ("seed-not-int", ["run", "--seed", "abc"], 2, r"invalid int value: 'abc'"),
    ("set-unknown-key", ["run", "--set", "colour=red"], 2, r"unknown config key 'colour'; valid keys: .*seed"),
    ("set-key-typo", ["run", "--set", "seeed=1"], 2, r"'seeed'; Did you mean 'seed'"),
    ("set-seed-float", ["run", "--set", "seed=1.5"], 2, r"'seed' expects an integer, got 1.5"),
    ("set-seed-word", ["run", "--set", "seed=abc"], 2, r"'seed' expects an integer, got 'abc'"),
    ("set-batch-zero", ["run", "--set", "batch_size=0"], 2, r"'batch_size' must be >= 1, got 0"),
    ("set-batch-negative", ["run", "--set", "batch_size=-5"], 2, r"'batch_size' must be >= 1, got -5"),
    ("set-workers-negative", ["run", "--set", "num_workers=-3"], 2, r"'num_workers' must be >= 0, got -3"),
    ("set-no-equals", ["run", "--set", "novalue"], 2, r"expects key=value, got 'novalue'"),
    ("set-no-key", ["run", "--set", "=3"], 2, r"expects key=value, got '=3'"),
    ("set-section-typo", ["run", "--set", "sttrategy.lr=1"], 2, r"unknown section 'sttrategy'; Did you mean 'strategy'"),
    ("set-device-int", ["run", "--set", "device=5"], 2, r"'device' expects a string, got 5"),
    ("set-skip-word", ["run", "--set", "skip_missing=yes"], 2, r"'skip_missing' expects true or false, got 'yes'"),
    ("set-log-string", ["run", "--set", "log=tensorboard"], 2, r"'log' expects a list, got 'tensorboard'"),
    ("set-backbone-unknown", ["run", "--set", "backbone=nope", *FAST], 2, r"'nope'"),
    ("set-strategy-name", ["run", "--set", "strategy.name=nope"], 2, r"Unknown strategy 'nope'"),
    ("log-unknown", ["run", "--log", "carrier-pigeon", *FAST], 2, r"unknown logger 'carrier-pigeon'"),
    ("config-missing", ["run", "--config", "{d}/nope.toml"], 2, r"config file '.*nope.toml' does not exist"),
    ("resume-missing", ["run", "--resume", "{d}/no_run"], 2, r"--resume '.*no_run': no config.toml there"),
    ("out-under-file", ["run", "--out", "{d}/notes.txt/run", *FAST], 2, r"'.*notes.txt/run' is not writable"),
    # -- strategy options -----------------------------------------------------------------
    ("ft-epochs-word", ["run", "--strategy", "finetune", "--set", "strategy.epochs=abc"], 2, r"option 'epochs' expects an integer, got 'abc'"),
    ("ft-epochs-zero", ["run", "--strategy", "finetune", "--set", "strategy.epochs=0", "--dry-run"], 2, r"epochs must be positive, got 0"),
    ("ft-epochs-negative", ["run", "--strategy", "finetune", "--set", "strategy.epochs=-1", "--dry-run"], 2, r"epochs must be positive, got -1"),
    ("ft-epochs-bool", ["run", "--strategy", "finetune", "--set", "strategy.epochs=true"], 2, r"option 'epochs' expects an integer, got True"),
    ("ft-epochs-float", ["run", "--strategy", "finetune", "--set", "strategy.epochs=1.5"], 2, r"option 'epochs' expects an integer, got 1.5"),
    ("ft-lr-nan", ["run", "--strategy", "finetune", "--set", "strategy.lr=nan"], 2, r"option 'lr' must be a finite number, got nan"),
    ("ft-lr-inf", ["run", "--strategy", "finetune", "--set", "strategy.lr=inf"], 2, r"option 'lr' must be a finite number, got inf"),
    ("ft-lr-neg-inf", ["run", "--strategy", "finetune", "--set", "strategy.lr=-inf"], 2, r"option 'lr' must be a finite number, got -inf"),
    ("ft-momentum-nan", ["run", "--strategy", "finetune", "--set", "strategy.momentum=nan"], 2, r"option 'momentum' must be a finite number, got nan"),
    ("ft-lr-word", ["run", "--strategy", "finetune", "--set", "strategy.lr=fast"], 2, r"option 'lr' expects a number, got 'fast'"),
    ("ft-hidden-negative", ["run", "--strategy", "finetune", "--set", "strategy.hidden=-1", "--dry-run"], 2, r"hidden must be >= 0, got -1"),
    ("ft-hidden-huge", ["run", "--strategy", "finetune", "--set", "strategy.hidden=100000000000", "--out", "{d}/huge", *FAST], 2, r"out of memory .*strategy.hidden=100000000000"),
    ("ft-unknown-option", ["run", "--strategy", "finetune", "--set", "strategy.colour=1"], 2, r"has no option 'colour'; valid options: .*epochs"),
    ("ft-option-typo", ["run", "--strategy", "finetune", "--set", "strategy.epoch=3"], 2, r"no option 'epoch'; Did you mean 'epochs'"),
    ("nmc-metric", ["run", "--set", "strategy.metric=manhattan"], 2, r"option 'metric' must be one of \['cosine', 'euclidean'\], got 'manhattan'"),
    ("nmc-normalize-word", ["run", "--set", "strategy.normalize=maybe"], 2, r"option 'normalize' expects true or false, got 'maybe'"),
    ("nmc-val-fraction-nan", ["run", "--set", "strategy.val_fraction=nan"], 2, r"option 'val_fraction' must be a finite number, got nan"),
    ("nmc-alpha-grid-str", ["run", "--set", "strategy.alpha_grid=big"], 2, r"option 'alpha_grid' expects list.* \| NoneType, got 'big'"),
    ("nmc-alpha-grid-nan", ["run", "--set", "strategy.alpha_grid=[1.0, nan]"], 2, r"option 'alpha_grid'\[1\] must be a finite number, got nan"),
    # -- stream options -------------------------------------------------------------------
    ("digits-n-tasks-3", ["run", "--set", "stream.n_tasks=3"], 2, r"n_tasks must divide 10 \(1, 2, 5 or 10\), got 3"),
    ("digits-n-tasks-0", ["run", "--set", "stream.n_tasks=0"], 2, r"n_tasks must divide 10 .*got 0"),
    ("digits-n-tasks-word", ["run", "--set", "stream.n_tasks=abc"], 2, r"option 'n_tasks' expects an integer, got 'abc'"),
    ("digits-test-size-1", ["run", "--set", "stream.test_size=1.5"], 2, r"test_size must be in \(0, 1\), got 1.5"),
    ("digits-test-size-nan", ["run", "--set", "stream.test_size=nan"], 2, r"option 'test_size' must be a finite number, got nan"),
    ("digits-unknown-option", ["run", "--set", "stream.colour=1"], 2, r"has no option 'colour'"),
    ("digits-option-typo", ["run", "--set", "stream.n_task=2"], 2, r"no option 'n_task'; Did you mean 'n_tasks'"),
    # -- plugins ----------------------------------------------------------------------------
    ("plugin-unknown", ["run", "--plugin", "nope"], 2, r"Unknown plugin 'nope'"),
    ("plugin-typo", ["run", "--set", "plugins.replya.memory_size=5"], 2, r"Unknown plugin 'replya'. Did you mean 'replay'"),
    ("plugin-no-option", ["run", "--set", "plugins.replay=5"], 2, r"--set plugins.replay: use plugins.NAME.OPTION=value"),
    ("plugin-option-word", ["run", "--set", "plugins.replay.memory_size=abc"], 2, r"option 'memory_size' expects an integer, got 'abc'"),
    ("plugin-option-negative", ["run", "--set", "plugins.replay.memory_size=-1", "--dry-run"], 2, r"memory_size must be a positive number of examples, got -1"),
    ("plugin-unknown-option", ["run", "--set", "plugins.replay.colour=1"], 2, r"plugin 'replay' has no option 'colour'"),
    ("plugin-file-not-plugin", ["run", "--plugin", "{d}/user.py:NotAPlugin", *FAST], 2, r"is the class NotAPlugin, not a subclass of cl.Plugin"),
    ("plugin-file-syntax", ["run", "--plugin", "{d}/syntax.py:Broken"], 2, r"syntax.py:3: syntax error"),
    ("plugin-os-system", ["run", "--plugin", "os:system"], 2, r"'os' .*no 'system'|os:system"),
    # -- TOML configs ---------------------------------------------------------------------
    ("toml-invalid", _cfg("bad_toml"), 2, r"bad_toml.toml' is not valid TOML"),
    ("toml-key-typo", _cfg("typo_key"), 2, r"unknown config key 'sed'; Did you mean 'seed'"),
    ("toml-seed-string", _cfg("seed_str"), 2, r"'seed' expects an integer, got 'zero'"),
    ("toml-strategy-name-int", _cfg("name_int"), 2, r"strategy.name expects a string, got 5"),
    ("toml-plugins-flat", _cfg("plugins_flat"), 2, r"\[plugins.NAME\] tables expected, got \{'replay': 5\}"),
    ("toml-plugins-string", _cfg("plugins_str"), 2, r"\[plugins.NAME\] tables expected, got 'replay'"),
    ("toml-stream-int", _cfg("stream_int"), 2, r"'stream' expects a string, got 5"),
    ("toml-stream-unknown", _cfg("stream_unknown"), 2, r"Unknown stream 'nope'"),
    ("toml-n-tasks-string", _cfg("n_tasks_str"), 2, r"option 'n_tasks' expects an integer, got 'five'"),
    ("toml-lr-nan", _cfg("lr_nan"), 2, r"option 'lr' must be a finite number, got nan"),
    ("toml-lr-inf", _cfg("lr_inf"), 2, r"option 'lr' must be a finite number, got inf"),
    ("toml-epochs-list", _cfg("epochs_list"), 2, r"option 'epochs' expects an integer, got \[1, 2\]"),
    ("toml-batch-zero", _cfg("batch_zero"), 2, r"'batch_size' must be >= 1, got 0"),
    ("toml-workers-negative", _cfg("workers_neg"), 2, r"'num_workers' must be >= 0, got -3"),
    ("toml-device-tpu", [*_cfg("device_tpu"), "--dry-run"], 2, r"unknown device 'tpu'"),
    ("toml-missing-file", _cfg("missing_file"), 2, r"strategy file '/nonexistent/dir/method.py' does not exist"),
    ("toml-replay-string", _cfg("replay_str"), 2, r"option 'memory_size' expects an integer, got 'lots'"),
    ("toml-replay-negative", [*_cfg("replay_neg"), "--dry-run"], 2, r"memory_size must be a positive number of examples, got -1"),
    ("toml-folder-missing", _cfg("folder_missing"), 2, r"image folder '.*nowhere' does not exist"),
    # -- configs that try to run code -------------------------------------------------------
    ("code-os-system", _cfg("os_system"), 2, r"'os'.*no 'system'|os:system"),
    ("code-os-system-dry-run", [*_cfg("os_system"), "--dry-run"], 2, r"os:system|'system'"),
    ("code-os-system-plugin", _cfg("os_system_plugin"), 2, r"os:system|'system'"),
    ("code-os-system-plugin-dry-run", [*_cfg("os_system_plugin"), "--dry-run"], 2, r"os:system|'system'"),
    ("code-subprocess-popen", _cfg("subprocess"), 2, r"subprocess:Popen' is the class Popen, not a subclass of cl.Strategy"),
    ("code-builtins-eval", _cfg("eval"), 2, r"module 'builtins' has no Python source"),
    ("code-os-system-flag", ["run", "--strategy", "os:system", "--set", "strategy.command=touch {d}/MARKER"], 2, r"os:system|'system'"),
    ("code-subprocess-run", ["run", "--strategy", "subprocess:run"], 2, r"names the function run\(\)"),
    ("code-pathlib-path", ["run", "--strategy", "pathlib:Path"], 2, r"is the class Path, not a subclass of cl.Strategy"),
    ("code-no-module", ["run", "--strategy", "no_such_pkg.mod:Thing"], 2, r"cannot import module 'no_such_pkg.mod'"),
    ("code-resume-evil", ["run", "--resume", "{d}/evil_run"], 2, r"os:system|'system'"),
    ("code-export-evil", ["export", "{d}/evil_run", "--to", "{d}/m.safetensors"], 2, r"os:system|'system'"),
    # -- user strategies --------------------------------------------------------------------
    ("user-syntax-error", ["run", "--strategy", "{d}/syntax.py:Broken"], 2, r"syntax.py:3: syntax error in strategy code"),
    ("user-import-error", ["run", "--strategy", "{d}/raising.py:S", *FAST], 2, r"raising.py:2: importing '.*raising.py:S' failed: NameError: name 'undefined_name_here'"),
    ("user-missing-file", ["run", "--strategy", "{d}/nope.py:X"], 2, r"strategy file '.*nope.py' does not exist"),
    ("user-not-python", ["run", "--strategy", "{d}/notes.txt:X"], 2, r"notes.txt"),
    ("user-missing-class", ["run", "--strategy", "{d}/user.py:Nope"], 2, r"defines no 'Nope'.*classes defined there: .*Base"),
    ("user-function", ["run", "--strategy", "{d}/user.py:make"], 2, r"names the function make\(\)"),
    ("user-not-subclass", ["run", "--strategy", "{d}/user.py:NotAStrategy"], 2, r"is the class NotAStrategy, not a subclass of cl.Strategy"),
    ("user-missing-predict", ["run", "--strategy", "{d}/user.py:Half"], 2, r"Half does not implement the strategy protocol: missing predict"),
    ("user-misnamed-hook", ["run", "--strategy", "{d}/user.py:Misnamed"], 2, r"Misnamed.after_tsak .*Did you mean 'after_task'"),
    ("user-bad-inputs", ["run", "--strategy", "{d}/user.py:PixelInputs"], 2, r"inputs must be 'features' or 'images', got 'pixels'"),
    ("user-unknown-option", _user("Base", "--set", "strategy.beta=1"), 2, r"has no option 'beta'; valid options: alpha, mode"),
    ("user-option-word", _user("Base", "--set", "strategy.alpha=big"), 2, r"option 'alpha' expects a number, got 'big'"),
    ("user-option-nan", _user("Base", "--set", "strategy.alpha=nan"), 2, r"option 'alpha' must be a finite number, got nan"),
    ("user-dry-run-unknown-option", _user("Base", "--set", "strategy.beta=1", "--dry-run"), 2, r"has no option 'beta'"),
    ("user-dry-run-option-word", _user("Base", "--set", "strategy.alpha=big", "--dry-run"), 2, r"option 'alpha' expects a number, got 'big'"),
    ("user-predict-numpy", _user("NumpyLogits"), 2, r"NumpyLogits.predict returned a numpy.ndarray of shape \(\d+, 5\); it must return a torch.Tensor"),
    ("user-predict-list", _user("ListLogits"), 2, r"ListLogits.predict returned a builtins.list; it must return a torch.Tensor"),
    ("user-predict-shape", _user("WrongShape"), 2, r"WrongShape.predict returned shape \(\d+, 6\); expected a tensor of shape \(\d+, 5\)"),
    ("user-predict-nan", _user("NanLogits"), 2, r"NanLogits.predict returned NaN logits on task 'digits-0-1-2-3-4'"),
    ("user-predict-pos-inf", _user("PosInfLogits"), 2, r"PosInfLogits.predict returned \+inf logits"),
    ("user-predict-neg-inf-row", _user("NegInfRow"), 2, r"NegInfRow.predict returned a row of only -inf"),
    ("user-state-lambda", _user("LambdaState"), 2, r"LambdaState.state_dict\(\)\['fn'\] holds a function"),
    ("user-state-object-array", _user("ObjectArrayState"), 2, r"ObjectArrayState.state_dict\(\)\['names'\] is a numpy array of dtype object"),
    ("user-state-module", _user("ModuleState"), 2, r"ModuleState.state_dict\(\)\['net'\] holds a torch.nn.modules.linear.Linear"),
    ("user-state-bool-key", _user("BoolKeyState"), 2, r"BoolKeyState.state_dict\(\) has a key True of type bool"),
    ("user-record-object", _user("RecordsObject"), 2, r"ctx.record\('model', <object object"),
    ("user-record-inf", _user("RecordsInf"), 2, r"ctx.record\('loss', inf\)"),
    # -- image folders (split-folder) --------------------------------------------------------
    ("folder-no-classes", ["run", "--stream", "split-folder", "--set", "stream.root={d}/no_classes", "--set", "stream.n_tasks=2"], 2, r"image folder '.*no_classes' has no class sub-folders"),
    ("folder-empty-class", ["run", "--stream", "split-folder", "--set", "stream.root={d}/empty_class", *FAST], 2, r"class folder\(s\) \['d'\] under '.*empty_class' hold no images"),
    ("folder-no-images", ["run", "--stream", "split-folder", "--set", "stream.root={d}/no_images", "--set", "stream.n_tasks=1", "--no-progress"], 2, r"image folder '.*no_images' has no images"),
    ("folder-test-size", ["run", "--stream", "split-folder", "--set", "stream.root={d}/good", "--set", "stream.test_size=0.0", *FAST], 2, r"test_size must be in \(0, 1\), got 0.0"),
    ("folder-corrupt-image", ["run", "--stream", "split-folder", "--set", "stream.root={d}/corrupt", *FAST], 2, r"cannot read image file '.*corrupt/a/0.png'"),
    ("folder-mixed-sizes", ["run", "--stream", "split-folder", "--set", "stream.root={d}/sizes", "--set", "stream.n_tasks=1", "--no-progress"], 2, r"different shapes after preprocessing, \(3, \d, \d\) and \(3, \d, \d\).*pixels:SIZE"),
    ("folder-root-missing", ["run", "--stream", "split-folder", "--set", "stream.root={d}/nowhere"], 2, r"image folder '.*nowhere' does not exist"),
    ("folder-class-only-in-test", ["run", "--stream", "split-folder", "--set", "stream.root={d}/split_test_only", *FAST], 2, r"image folder '.*split_test_only': class folder\(s\) \['z'\] are in test/ but not in train/, so they could never be predicted"),
    ("folder-class-only-in-train", ["run", "--stream", "split-folder", "--set", "stream.root={d}/split_train_only", *FAST], 2, r"class folder\(s\) \['y'\] are in train/ but not in test/, so they could never be evaluated"),
    ("folder-mixed-modes", ["run", "--stream", "split-folder", "--set", "stream.root={d}/mixed_modes", "--set", "stream.n_tasks=1", "--no-progress"], 2, r"image folder '.*mixed_modes' mixes colour modes: L \(11 files.*RGB \(1 file, e.g. '.*b/1.png'\).*Set stream.allow_mixed_modes=true"),
    ("folder-test-size-with-splits", ["run", "--stream", "split-folder", "--set", "stream.root={d}/split_test_only", "--set", "stream.test_size=0.5", *FAST], 2, r"split-folder option 'test_size' splits a single image folder, but '.*' has train/ and test/"),
    ("folder-seed-with-splits", ["run", "--stream", "split-folder", "--set", "stream.root={d}/split_test_only", "--set", "stream.seed=3", *FAST], 2, r"split-folder option 'seed' splits a single image folder"),
    # -- options that make another meaningless or impossible (docs/reliability.md) ------------
    ("rail-fusion-weight-without-fusion", ["run", "--strategy", "rail", "--set", "strategy.fusion=false", "--set", "strategy.fusion_weight=0.5", "--dry-run"], 2, r"rail option 'fusion_weight' \(0.5\) weighs the zero-shot fusion, which fusion=False turns off"),
    ("rail-dual-n-components", ["run", "--strategy", "rail", "--set", "strategy.form=dual", "--set", "strategy.n_components=100", "--dry-run"], 2, r"rail option 'n_components' \(100\) is used by form='primal' only"),
    ("rail-primal-gamma", ["run", "--strategy", "rail", "--set", "strategy.gamma=1.0", "--dry-run"], 2, r"rail option 'gamma' \(1.0\) is used by form='dual' only"),
    ("nmc-alpha-grid-without-ensemble", ["run", "--set", "strategy.alpha_grid=[0.5]", "--dry-run"], 2, r"option 'alpha_grid' only tunes the zero-shot ensemble, which ensemble=False turns off"),
    ("nmc-val-fraction-without-ensemble", ["run", "--set", "strategy.val_fraction=0.3", "--dry-run"], 2, r"option 'val_fraction' only tunes the zero-shot ensemble"),
    ("fecam-rank-without-lowrank", ["run", "--strategy", "fecam", "--set", "strategy.rank=4", "--dry-run"], 2, r"fecam option 'rank' \(4\) is the rank of covariance='lowrank' only"),
    ("fecam-rank-above-dim", ["run", "--strategy", "fecam", "--set", "strategy.covariance=lowrank", "--set", "strategy.rank=64", *FAST], 2, r"fecam option 'rank' \(64\) must be smaller than the feature dimension of backbone 'pixels' \(64\)"),
    ("ranpac-ridge-grid-fixed-ridge", ["run", "--strategy", "ranpac", "--set", "strategy.ridge=1.0", "--set", "strategy.ridge_grid=[1.0]", "--dry-run"], 2, r"ranpac option 'ridge_grid' is searched only with ridge='auto'"),
    ("replay-on-training-free", ["run", "--plugin", "replay", *FAST], 2, r"plugin 'replay' got no training batch in task 0: the strategy does not train in minibatches"),
    ("toy-xtail-shots-above-pool", ["run", "--stream", "toy-xtail", "--set", "stream.n_shots=500", "--dry-run"], 2, r"toy-xtail option 'n_shots' \(500\) is larger than 'n_train' \(100\)"),
    ("contrastive-iterations-and-epochs", ["run", "--stream", "toy-captions", "--strategy", "contrastive-ft", "--backbone", "toy-clip", "--set", "strategy.iterations=5", "--set", "strategy.epochs=2.0", "--dry-run"], 2, r"options 'iterations' \(5\) and 'epochs' \(2.0\) both set the length of training"),
    ("finetune-lr-and-lr-per-task", ["run", "--strategy", "clip-finetune", "--backbone", "toy-clip", "--set", "strategy.lr=0.001", "--set", "strategy.lr_per_task=[0.001, 0.001]", "--dry-run"], 2, r"options 'lr' \(0.001\) and 'lr_per_task' both set the learning rate"),
    ("lora-rank-above-width", ["run", "--stream", "toy-mtil", "--set", "stream.domains=['shapes']", "--set", "stream.n_train=4", "--set", "stream.n_test=2", "--strategy", "lora", "--backbone", "toy-clip", "--set", "strategy.rank=4096", "--set", "strategy.iterations=1", "--no-progress"], 2, r"lora option 'rank' \(4096\) is larger than the width of the adapted layer 'transformer.resblocks.0.attn.q_proj' \(64\).*Set strategy.rank <= 64"),
    ("zscl-no-reference-set", ["run", "--strategy", "zscl", "--backbone", "toy-clip", "--set", "strategy.iterations=1", *FAST], 2, r"zscl needs a reference set, and stream 'split-digits' offers none; set strategy.reference_images"),
    ("zscl-reference-missing", ["run", "--strategy", "zscl", "--backbone", "toy-clip", "--set", "strategy.reference_images={d}/nowhere", "--set", "strategy.reference_texts={d}/notes.txt", *FAST], 2, r"zscl option 'reference_images': '.*nowhere' does not exist"),
    ("zscl-reference-without-distillation", ["run", "--strategy", "zscl", "--backbone", "toy-clip", "--set", "strategy.distill_weight=0.0", "--set", "strategy.reference_batch_size=8", "--dry-run"], 2, r"option 'reference_batch_size' feeds the reference-set distillation, which distill_weight=0 turns off"),
    ("lwf-temperature-without-distillation", ["run", "--strategy", "lwf", "--backbone", "toy-clip", "--set", "strategy.distill_weight=0.0", "--set", "strategy.temperature=4.0", "--dry-run"], 2, r"option 'temperature' \(4.0\) softens the distillation, which distill_weight=0 turns off"),
    ("slca-milestone-beyond-iterations", ["run", "--strategy", "slca", "--backbone", "toy-clip", "--set", "strategy.iterations=10", "--set", "strategy.milestones=[5, 10]", "--dry-run"], 2, r"option 'milestones' holds 10, which is not below 'iterations' \(10\)"),
    ("moe-reference-iterations-without-reference", ["run", "--strategy", "moe-adapters", "--backbone", "toy-clip", "--set", "strategy.ddas_reference_iterations=10", "--dry-run"], 2, r"option 'ddas_reference_iterations' \(10\) trains the autoencoder of 'ddas_reference', which is not set"),
    # -- required and named options ------------------------------------------------------------
    ("avalanche-ewc-no-lambda", ["run", "--strategy", "avalanche:EWC", *FAST], 2, r"avalanche:EWC needs option 'ewc_lambda' \(hyperparameter to weigh the penalty inside the total loss.*--set strategy.ewc_lambda=VALUE"),
    ("avalanche-lwf-no-options", ["run", "--strategy", "avalanche:LwF", "--dry-run"], 2, r"avalanche:LwF needs options 'alpha' \(distillation hyperparameter.*'temperature' \(softmax temperature"),
    ("klda-shrinkage-word", ["run", "--strategy", "klda", "--set", "strategy.shrinkage=big", "--dry-run"], 2, r"KLDA option 'shrinkage' must be 'ks', 'auto', a float in \[0, 1\] or None, got 'big'"),
    ("klda-shrinkage-range", ["run", "--strategy", "klda", "--set", "strategy.shrinkage=2.0", "--dry-run"], 2, r"KLDA option 'shrinkage' as a number must lie in \[0, 1\], got 2.0"),
    ("gda-shrinkage-range", ["run", "--strategy", "gda", "--set", "strategy.shrinkage=-1.0", "--dry-run"], 2, r"GDA option 'shrinkage' as a number must lie in \[0, 1\], got -1.0"),
    # -- run directories ----------------------------------------------------------------------
    ("report-missing", ["report", "{d}/no_run"], 2, r"'.*no_run/results.json' does not exist"),
    ("compare-missing", ["compare", "{d}/no_run"], 2, r"'.*no_run' is not a directory"),
    ("export-not-run", ["export", "{d}/good", "--to", "{d}/m.safetensors"], 2, r"'.*good' is not a run directory: no config.toml"),
    ("export-bad-suffix", ["export", "{d}/evil_run", "--to", "{d}/m.pt"], 2, r"--to must name a \*.safetensors file, got '.*m.pt'"),
]


def _results_dir(root: Path, name: str, change: Callable[[dict[str, Any]], None],
                 reseal: bool = True) -> Path:
    """A run directory whose results.json is a valid run's, changed (and resealed)."""
    base = root / "finished"
    if not base.exists():
        assert main(["run", "--out", str(base), *FAST]) == 0
    results = json.loads((base / RESULTS_FILE).read_text())
    change(results)
    out = root / name
    out.mkdir(exist_ok=True)
    (out / RESULTS_FILE).write_text(json.dumps(seal(results) if reseal else results))
    return out


# (id, builder of a run directory, regex) for cl report: exit status 2
REPORT_CASES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("missing-row", lambda r: _results_dir(r, "missing_row", lambda x: x["accuracy_matrix"].pop()),
     r"'accuracy_matrix' has 1 rows, expected 2 \(one per task\)"),
    ("short-row", lambda r: _results_dir(r, "short_row", lambda x: x["accuracy_matrix"][1].pop()),
     r"'accuracy_matrix' row 1 has 1 entries, expected 2"),
    ("accuracy-above-one", lambda r: _results_dir(
        r, "above_one", lambda x: x["accuracy_matrix"][0].__setitem__(0, 1.5)),
     r"'accuracy_matrix' row 0 holds 1.5, not an accuracy in \[0, 1\]"),
    ("missing-key", lambda r: _results_dir(r, "missing_key", lambda x: x.pop("tasks")),
     r"is not a cl run result: it lacks tasks"),
    ("zero-shot-length", lambda r: _results_dir(r, "zero_shot", lambda x: x["zero_shot"].append(0.5)),
     r"'zero_shot' must be null or 2 accuracies"),
    ("compute-length", lambda r: _results_dir(r, "compute", lambda x: x["compute"].pop()),
     r"'compute' must hold one record per task \(2\)"),
    ("metrics-string", lambda r: _results_dir(
        r, "metrics", lambda x: x["metrics"].__setitem__("forgetting", "low")),
     r"'metrics' must map metric names to numbers"),
    ("tampered", lambda r: _results_dir(
        r, "tampered", lambda x: x["accuracy_matrix"][1].__setitem__(0, 0.033), reseal=False),
     r"does not match its sha256 checksum"),
    ("not-json", lambda r: _write(r / "not_json" / RESULTS_FILE, "{"), r"is not valid JSON"),
    ("json-list", lambda r: _write(r / "json_list" / RESULTS_FILE, "[1, 2]"),
     r"holds a list, not a results object"),
]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path.parent


def _image_dataset(images: list[Any], labels: list[Any]) -> Any:
    class Items:
        targets = None

        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int) -> tuple[Any, Any]:
            return images[i], labels[i]

    return Items()


def _run_stream(stream: Stream, out: Path) -> None:
    Runner(stream, NMCStrategy(), create_backbone("pixels"), out_dir=out, progress=False).run()


def _tiny(n: int = 6) -> list[Any]:
    return [np.full((4, 4), 10 * i, np.uint8) for i in range(n)]


# (id, callable(root) that must raise, exception type, regex): the Python API
API_CASES: list[tuple[str, Callable[[Path], Any], type[BaseException], str]] = [
    ("float-labels", lambda r: streams.from_datasets(
        [_image_dataset(_tiny(), [0, 1, 0.5, 1, 0, 1])], class_names=[["a", "b"]]),
     ValueError, r"item 2: label 0.5 \(float\) is not an integer class index"),
    ("float-targets", lambda r: streams.from_datasets(
        [type("T", (), {"targets": [0.0, 1.0, 0.5], "__len__": lambda s: 3,
                        "__getitem__": lambda s, i: (_tiny()[i], 0)})()],
        class_names=[["a", "b"]]),
     ValueError, r"label 0.5 is not an integer class index"),
    ("array-float-labels", lambda r: ArrayImageDataset(np.zeros((2, 4, 4), np.uint8), np.array([0.0, 0.5])),
     ValueError, r"ArrayImageDataset: label 0.5 is not an integer class index"),
    ("string-labels", lambda r: streams.from_datasets(
        [_image_dataset(_tiny(2), ["cat", "dog"])], class_names=[["cat", "dog"]]),
     ValueError, r"label 'cat' \(str\) is not an integer class index"),
    ("labels-out-of-range", lambda r: streams.from_datasets(
        [_image_dataset(_tiny(4), [0, 1, 5, 1])], class_names=[["a", "b"]]),
     ValueError, r"labels \[5\] do not match the 2 class names"),
    ("non-image-items", lambda r: _run_stream(streams.from_datasets(
        [(_image_dataset(["abc", "def"], [0, 1]), _image_dataset(["ghi", "jkl"], [0, 1]))],
        class_names=[["a", "b"]]), r / "strings"),
     ValueError, r"task 'datasets-0' \[test\]: item 0 holds a str \('ghi'\) where an image belongs"),
    ("none-items", lambda r: _run_stream(streams.from_datasets(
        [(_image_dataset([None, None], [0, 1]), _image_dataset([None, None], [0, 1]))],
        class_names=[["a", "b"]]), r / "nones"),
     ValueError, r"item 0 holds a NoneType \(None\) where an image belongs"),
    ("mixed-sizes-api", lambda r: _run_stream(streams.from_datasets(
        [(_image_dataset([np.zeros((4, 4), np.uint8), np.zeros((5, 5), np.uint8)], [0, 1]),
          _image_dataset([np.zeros((4, 4), np.uint8)] * 2, [0, 1]))], class_names=[["a", "b"]]),
        r / "sizes"),
     ValueError, r"different shapes after preprocessing, \(1, 4, 4\) and \(1, 5, 5\)"),
    ("mixed-modes-api", lambda r: _run_stream(streams.from_datasets(
        [(_image_dataset([Image.new("L", (4, 4)), Image.new("RGB", (4, 4))], [0, 1]),
          _image_dataset([Image.new("L", (4, 4))] * 2, [0, 1]))], class_names=[["a", "b"]]),
        r / "modes"),
     ValueError, r"different shapes after preprocessing, \(1, 4, 4\) and \(3, 4, 4\)"),
    ("duplicate-class-names-ci", lambda r: Stream("s", (
        Task("t0", ("cat", "dog"), list, list), Task("t1", ("cat", "cow"), list, list)),
        "class-incremental"),
     ValueError, r"class 'cat' appears in tasks 't0' and 't1'"),
    ("duplicate-class-names-in-task", lambda r: Task("t", ("a", "a"), list, list),
     ValueError, r"duplicate class names: \['a'\]"),
    ("class-names-not-nested", lambda r: streams.from_datasets([_image_dataset(_tiny(2), [0, 1])],
                                                               class_names=["a", "b"]),
     TypeError, r"class_names must be a list of lists"),
    ("folders-single-path", lambda r: streams.from_folders(str(r / "good")),
     TypeError, r"roots must be a list of task folders"),
    ("folders-test-only-class", lambda r: streams.from_folders([_split_folder(r)]),
     ValueError, r"class folder\(s\) \['z'\] are in test/ but not in train/"),
    ("folders-empty-class", lambda r: streams.from_folders([r / "empty_class"])[0].load_train(),
     ValueError, r"class folder\(s\) \['d'\] under '.*empty_class' hold no images"),
    ("lr-per-task-length", lambda r: CLIPFinetune(lr_per_task=(1e-5,)).check_run(
        create_backbone("pixels"), streams.get("split-digits", n_tasks=2)),
     ValueError, r"option 'lr_per_task' has 1 rates but stream 'split-digits' has 2 tasks"),
    ("folders-train-only-class", lambda r: streams.from_folders([r / "split_train_only"]),
     ValueError, r"class folder\(s\) \['y'\] are in train/ but not in test/"),
    ("folders-mixed-modes", lambda r: streams.from_folders(
        [r / "mixed_modes"], test_size=0.5)[0].load_train(),
     ValueError, r"mixes colour modes.*Set allow_mixed_modes=true"),
    ("runner-workers", lambda r: Runner(streams.get("split-digits", n_tasks=2), NMCStrategy(),
                                        create_backbone("pixels"), out_dir=r / "w", num_workers=-3),
     ValueError, r"num_workers must be >= 0, got -3"),
]


def _split_folder(root: Path) -> Path:
    task = root / "split_task"
    for c in "ab":
        _png(task / "train" / c / "0.png")
        _png(task / "test" / c / "0.png")
    _png(task / "test" / "z" / "0.png")
    return task


def _fill(text: str, d: Path) -> str:
    return text.replace("{d}", str(d))


@pytest.mark.parametrize("argv, status, pattern", [c[1:] for c in CLI_CASES],
                         ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_is_a_clear_error(d, capsys, argv, status, pattern):
    args = [_fill(a, d) for a in argv]
    if args[0] == "run" and "--out" not in args and "--resume" not in args and "--dry-run" not in args:
        args += ["--out", str(d / "runs" / re.sub(r"\W", "_", " ".join(args))[:80])]
    usage = False
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse prints its usage, then the error
        code, usage = exit_.code, True
    err = capsys.readouterr().err
    assert code == status, err
    assert re.search(_fill(pattern, d), err), err
    assert "Traceback" not in err
    assert usage or len(err.strip().splitlines()) == 1, err  # one line
    assert not (d / "MARKER").exists(), "a config ran code"


@pytest.mark.parametrize("build, pattern", [c[1:] for c in REPORT_CASES],
                         ids=[c[0] for c in REPORT_CASES])
def test_report_of_a_broken_results_json_is_a_clear_error(d, capsys, build, pattern):
    run_dir = build(d)
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert re.search(pattern, err), err
    assert "Traceback" not in err


@pytest.mark.parametrize("make, error, pattern", [c[1:] for c in API_CASES],
                         ids=[c[0] for c in API_CASES])
def test_api_bad_input_is_a_clear_error(d, make, error, pattern):
    with pytest.raises(error, match=pattern):
        make(d)


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory) -> Path:
    """A 2-task run directory whose task 1 is still to do (its checkpoint and results removed)."""
    run = tmp_path_factory.mktemp("links") / "base"
    assert main(["run", "--out", str(run), *FAST]) == 0
    (run / "checkpoints" / "task-0001.pt").unlink()
    (run / RESULTS_FILE).unlink()
    return run


# (name of the link planted inside the run directory, whether it points to a directory)
PLANTED_LINKS = [(".lock", False), (RESULTS_FILE, False), ("checkpoints/task-0001.pt", False),
                 ("accuracy_matrix.png", False), ("report.md", False), ("config.toml", False),
                 (".write-test", False), ("accuracy_matrix.csv", False), ("checkpoints", True)]


@pytest.mark.parametrize("name, is_dir", PLANTED_LINKS, ids=[n for n, _ in PLANTED_LINKS])
def test_resume_never_writes_through_a_link_planted_in_the_run_directory(
        interrupted_run, tmp_path, capsys, name, is_dir):
    """The issue's case: RUN_DIR/.lock replaced by a symlink to an outside file, then
    ``cl run --resume RUN_DIR``, overwrote that file. Any file the run writes, likewise."""
    run = tmp_path / "run"
    shutil.copytree(interrupted_run, run)
    outside = tmp_path / "outside"
    if is_dir:
        shutil.copytree(run / name, outside)
        shutil.rmtree(run / name)
    else:  # a copy of the file (a config that parses), or someone else's file
        outside.write_bytes((run / name).read_bytes() if name == "config.toml" else b"theirs\n")
        (run / name).unlink(missing_ok=True)
    before = {p: p.read_bytes() for p in [outside, *outside.rglob("*")] if p.is_file()}
    (run / name).symlink_to(outside)
    assert main(["run", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"refusing to write through {str(run / name)!r}: it is a symbolic link" in err, err
    assert f"rm {str(run / name)!r}" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in [outside, *outside.rglob("*")] if p.is_file()} == before


# (name inside the run directory, what is put there instead of what cl writes)
IN_THE_WAY = [(".lock", "a directory"), (RESULTS_FILE, "a directory"), ("report.md", "a directory"),
              ("checkpoints", "a file"), (".lock", "a named pipe")]


@pytest.mark.parametrize("name, kind", IN_THE_WAY, ids=[f"{n}-{k}" for n, k in IN_THE_WAY])
def test_something_in_the_way_of_a_run_file_is_named(interrupted_run, tmp_path, capsys, name,
                                                     kind):
    """A directory where the lock or results belong (or a file where checkpoints/ belongs, a
    named pipe as the lock) is a one-line error naming it, not an IsADirectoryError traceback
    or a blocked open."""
    run = tmp_path / "run"
    shutil.copytree(interrupted_run, run)
    (run / name).unlink() if (run / name).is_file() else shutil.rmtree(run / name, True)
    {"a directory": (run / name).mkdir, "a file": lambda: (run / name).write_text("x"),
     "a named pipe": lambda: os.mkfifo(run / name)}[kind]()
    assert main(["run", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {str(run / name)!r}: {kind} of that name is in the way" in err, err
    assert "Traceback" not in err


def test_a_run_directory_reached_through_a_link_is_the_users_choice(interrupted_run, tmp_path):
    real = tmp_path / "scratch" / "run"
    shutil.copytree(interrupted_run, real)
    (tmp_path / "runs").symlink_to(tmp_path / "scratch")
    assert main(["run", "--resume", str(tmp_path / "runs" / "run"), "--no-progress"]) == 0
    assert json.loads((real / RESULTS_FILE).read_text())["status"] == "completed"


@pytest.mark.parametrize("strategy, option", [("rail", "fusion"), ("gda", "ensemble")])
def test_an_option_the_backbone_cannot_honour_is_warned_and_recorded(d, caplog, strategy, option):
    """rail's fusion (gda's zero-shot ensemble) on ``pixels``, which has no text tower: the run
    warns once and results.json records the effective value."""
    out = d / "runs" / f"effective-{strategy}"
    extra = ["--set", "strategy.n_components=50"] if strategy == "rail" else []
    assert main(["run", "--strategy", strategy, "--out", str(out), *FAST, *extra]) == 0
    warned = [r.getMessage() for r in caplog.records if f"option {option!r}" in r.getMessage()]
    assert len(warned) == 1 and "backbone 'pixels'" in warned[0], warned
    assert json.loads((out / RESULTS_FILE).read_text())["effective_options"] == {option: False}


def test_mixed_colour_modes_are_converted_with_one_warning_when_allowed(d):
    out = d / "runs" / "modes-allowed"
    with pytest.warns(UserWarning, match=r"'.*mixed_modes' mixes colour modes") as caught:
        assert main(["run", "--stream", "split-folder", "--set", f"stream.root={d}/mixed_modes",
                     "--set", "stream.allow_mixed_modes=true", "--set", "stream.n_tasks=1",
                     "--out", str(out), "--no-progress"]) == 0
    assert sum("mixes colour modes" in str(w.message) for w in caught) == 1


def test_dry_run_of_user_code_imports_and_calls_nothing(d, capsys):
    assert main(["run", "--strategy", f"{d}/side_effect.py:S", *FAST, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{d}/side_effect.py (class found" in out
    assert not (d / "MARKER").exists()
    assert main(["run", "--strategy", f"{d}/user.py:Base", "--set", "strategy.alpha=2", *FAST,
                 "--dry-run"]) == 0
    assert "class and options checked from source, not imported" in capsys.readouterr().out

