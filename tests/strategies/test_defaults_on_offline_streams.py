"""Every built-in strategy runs with its defaults on every built-in offline stream of its kind.

A user's first command is a registered strategy on an offline stream, as it comes. Each case
is a real ``cl run`` on the ``toy-clip`` backbone; only the counts that set its length are
lowered (fewer tasks and images, a few optimiser steps: :data:`SHORT`, :data:`STREAM_SIZES`),
every other option keeps its default. The training-free heads on ``split-digits`` run in CI;
the rest (a backbone forward per image and some training) are marked slow.
"""

from __future__ import annotations

import json

import pytest

import streams
from cl.cli import main
from strategies.catalog import STRATEGIES

IMAGE_TEXT = ("contrastive-ft", "er-contrastive", "mod-x", "ctp")
#: Offline streams (no data root), by kind.
OFFLINE = [e.name for e in streams.STREAMS.entries() if "data_root" not in e.reserved]
IMAGE_TEXT_STREAMS = ("toy-captions",)
IMAGE_STREAMS = tuple(s for s in OFFLINE if s not in IMAGE_TEXT_STREAMS)
#: The smallest settings that keep each stream's structure (two tasks, a few images).
STREAM_SIZES: dict[str, list[str]] = {
    "split-digits": ["stream.n_tasks=2"],
    "domain-digits": ['stream.domains=["original", "rotated"]'],
    "synthetic-nevis": ["stream.n_tasks=2", "stream.max_classes=3", "stream.max_train=8"],
    "toy-mtil": ['stream.domains=["shapes", "new-shapes"]', "stream.n_train=3", "stream.n_test=2"],
    "toy-xtail": ['stream.domains=["shapes", "new-shapes"]', "stream.n_shots=2",
                  "stream.n_train=3", "stream.n_test=2"],
    "toy-cil": ["stream.n_tasks=2", "stream.n_train=3", "stream.n_test=2"],
    "toy-captions": ['stream.domains=["colours", "new-shapes"]', "stream.n_train=3",
                     "stream.n_test=2"],
}
#: Options that set how long a strategy trains: a few steps instead of the papers' hundreds.
SHORT: dict[str, list[str]] = {
    "finetune": ["strategy.epochs=1"],
    "lora": ["strategy.iterations=2"],
    "codyra": ["strategy.iterations=2", "strategy.kappa_steps=2"],
    "clip-finetune": ["strategy.iterations=2"],
    "lwf": ["strategy.iterations=2"],
    "wise-ft": ["strategy.iterations=2"],
    "zscl": ["strategy.iterations=2"],
    "moe-adapters": ["strategy.iterations=2", "strategy.ddas_iterations=2"],
    "slca": ["strategy.iterations=2", "strategy.ca_epochs=1"],
    **{name: ["strategy.iterations=2"] for name in IMAGE_TEXT},
    "diki": ["strategy.iterations=2"],
    "magmax": ["strategy.iterations=2"],
    **{name: ["strategy.epochs=1"] for name in ("l2p", "dualprompt", "coda-prompt", "proof",
                                                 "rapf", "engine", "clap4clip")},
}
#: Methods defined for class-incremental streams only: elsewhere they refuse before the run.
CLASS_INCREMENTAL_ONLY = ("proof", "rapf", "engine", "clap4clip")
#: Streams without the held-out reference set zscl distils on (the toy streams carry one):
#: zscl refuses them before the run, naming the options that give one.
NO_REFERENCE_SET = ("split-digits", "domain-digits", "synthetic-nevis")
#: Cases that run in CI (a few seconds each); the others are marked slow.
FAST = {("nmc", "split-digits"), ("zeroshot", "split-digits")}


def _cases() -> list[object]:
    pairs = [(s, st) for s in STRATEGIES.available() if s not in IMAGE_TEXT for st in IMAGE_STREAMS]
    pairs += [(s, st) for s in IMAGE_TEXT for st in IMAGE_TEXT_STREAMS]
    return [pytest.param(s, st, id=f"{s}-{st}",
                         marks=() if (s, st) in FAST else pytest.mark.slow) for s, st in pairs]


def test_every_registered_strategy_and_offline_stream_is_covered():
    covered = {p.values[0] for p in _cases()} | {p.values[1] for p in _cases()}
    assert set(STRATEGIES.available()) | set(OFFLINE) <= covered
    assert set(STREAM_SIZES) == set(OFFLINE)


@pytest.mark.parametrize("strategy, stream", _cases())
def test_a_builtin_strategy_runs_with_its_defaults_on_a_builtin_offline_stream(
        strategy, stream, tmp_path, capsys):
    out = tmp_path / "run"
    sets = [*STREAM_SIZES[stream], *SHORT.get(strategy, [])]
    argv = ["run", "--stream", stream, "--strategy", strategy, "--backbone", "toy-clip",
            "--out", str(out), "--no-progress", "--set", "device=cpu"]
    for assignment in sets:
        argv += ["--set", assignment]
    code = main(argv)
    scenario = streams.get(stream).scenario
    if strategy in CLASS_INCREMENTAL_ONLY and scenario != "class-incremental":
        err = capsys.readouterr().err  # refused before the run directory, naming the scenario
        assert code == 2 and "class-incremental method" in err and scenario in err, err
        assert not (out / "results.json").exists()
        return
    if (strategy, scenario) == ("slca", "domain-incremental") or (
            strategy == "zscl" and stream in NO_REFERENCE_SET):
        err = capsys.readouterr().err  # refused before the run, naming what is missing
        assert code == 2 and ("domain-incremental" in err or "reference_images" in err), err
        return
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "completed"
    assert results["completed_tasks"] == len(results["tasks"]) == 2
    assert results["config"]["strategy"] == {"name": strategy, **{
        k.split(".", 1)[1].split("=")[0]: json.loads(k.split("=", 1)[1])
        for k in SHORT.get(strategy, [])}}  # every other option as it comes
