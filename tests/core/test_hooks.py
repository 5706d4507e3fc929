"""Misnamed hooks are load-time errors that name the valid hook, for strategies and plugins,
from files, registered names and Python objects alike."""

from __future__ import annotations

import textwrap

import pytest

import strategies
from cl.cli import main
from cl.core.hooks import PLUGIN_HOOKS, STRATEGY_HOOKS, check_hook_names
from cl.core.plugin import Plugin, check_plugin
from cl.core.runner import Runner
from cl.core.strategy import Strategy, check_strategy
from cl.errors import ProtocolError
from cl.models.backbones import create_backbone
from strategies.loading import build_plugin

STRATEGY_FILE = textwrap.dedent('''
    import torch
    from cl import Strategy

    class Typo(Strategy):
        def train_task(self, data, ctx):
            pass

        def predict(self, inputs, label_space, ctx):
            return torch.zeros(len(inputs), len(label_space))

        def after_tsak(self, ctx):
            pass
''')


def test_strategy_file_with_after_tsak_fails_naming_after_task(tmp_path, capsys):
    path = tmp_path / "typo.py"
    path.write_text(STRATEGY_FILE)
    with pytest.raises(ProtocolError, match=r"Typo\.after_tsak .*Did you mean 'after_task'\?"):
        strategies.get(f"{path}:Typo")
    # the command line prints it as one line, exit status 2, before any data is touched
    code = main(["run", "--strategy", f"{path}:Typo", "--out", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "after_task" in err and "Valid strategy hooks" in err
    assert not (tmp_path / "r" / "results.json").exists()


class Centroid(Strategy):
    def train_task(self, data, ctx):
        pass

    def predict(self, inputs, label_space, ctx):
        return inputs[:, : len(label_space)]


@pytest.mark.parametrize("name, closest", [
    ("before_trian", "before_task"), ("after_tsak", "after_task"), ("train_tasks", "train_task"),
    ("predcit", "predict"), ("after_training", "after_task")])
def test_strategy_hook_typos(name, closest):
    cls = type("Bad", (Centroid,), {name: lambda self, *a: None})
    with pytest.raises(ProtocolError, match=f"Bad.{name} is named like a strategy hook.*{closest}"):
        check_strategy(cls())
    with pytest.raises(ProtocolError):  # the runner checks too
        Runner(__import__("streams").get("split-digits"), cls(), create_backbone("pixels"),
               out_dir="unused")


def test_valid_names_and_helpers_pass(tmp_path):
    calls: list[str] = []

    class Fine(Centroid):
        def after_task(self, ctx):  # a real hook: the runner calls it after every task
            calls.append(ctx.task.name)

        def fit_head(self):  # an ordinary helper
            calls.append("fit_head")

        def _after_step(self):  # private helpers are never hooks
            calls.append("_after_step")

    check_strategy(Fine())
    for name in ("nmc", "gda", "finetune", "lora", "codyra", "zeroshot"):
        check_strategy(strategies.get(name))  # every registered strategy is clean
    stream = __import__("streams").get("split-digits", n_tasks=2)
    Runner(stream, Fine(), create_backbone("pixels"), out_dir=tmp_path / "run", progress=False,
           cache_dir=str(tmp_path / "cache")).run()
    assert calls == list(stream.task_names)  # the hook ran once per task, the helpers never


def test_plugin_hook_typos_and_registered_plugins():
    class Bad(Plugin):
        def after_evel(self, ctx, accuracies):
            pass

    with pytest.raises(ProtocolError, match=r"Bad.after_evel .*'after_eval'.*Valid plugin hooks"):
        check_plugin(Bad())
    for name in ("replay", "zero-shot-retention"):
        check_plugin(build_plugin(name))


def test_duck_typed_objects_are_checked_as_well():
    class Duck:
        def train_task(self, data, ctx): ...
        def predict(self, inputs, label_space, ctx): ...
        def befor_task(self, ctx): ...

    with pytest.raises(ProtocolError, match="befor_task.*'before_task'"):
        check_hook_names(Duck(), STRATEGY_HOOKS, Strategy, "strategy")
    assert set(PLUGIN_HOOKS) >= {"before_task", "after_eval"}
