"""The NEVIS'22 protocol option: trial values, exact restore between trials, every trial's compute
counted, selection on dev; on real strategies (finetune on pixels, LoRA on the tiny open_clip)."""

from __future__ import annotations

import copy
import json
import math
import random

import numpy as np
import pytest
import torch
from scipy import stats

import strategies
import streams
from cl.cli import main
from cl.core.metrics import nevis_error_curve
from cl.core.results import matrix_from_json
from cl.core.runner import Runner
from cl.core.selection import Protocol, check_range, sample_trials, sample_values
from cl.models.backbones import create_backbone
from strategies.finetune import Finetune

SAME = {"lr": ["choice", 0.05], "label_smoothing": ["choice", 0.1]}  # every trial identical


def test_trial_values_follow_the_reference_draws_and_ranges():
    space = Finetune.searchable
    trials = sample_trials(space, 16, seed=3)
    # parameter k of the search of task t uses random.Random(t + k + 1), as dm_nevis' hype does
    rng = random.Random(3 + 1)
    assert trials[0]["lr"] == math.exp(rng.uniform(math.log(1e-4), math.log(1e-1)))
    assert trials[0]["label_smoothing"] == random.Random(3 + 2).uniform(0.0, 0.3)
    assert all(1e-4 <= t["lr"] <= 1e-1 and 0 <= t["label_smoothing"] <= 0.3 for t in trials)
    assert sample_trials(space, 16, seed=3) == trials  # deterministic
    # log-uniform: log10(lr) uniform on [-4, -1] (Kolmogorov-Smirnov against scipy's uniform)
    logs = np.log10(sample_values(("log-uniform", 1e-4, 1e-1), 4000, seed=0))
    assert stats.kstest(logs, stats.uniform(loc=-4, scale=3).cdf).pvalue > 0.01
    assert set(sample_values(("choice", 1, 2), 50, seed=0)) == {1, 2}


def test_ranges_and_protocol_tables_are_validated():
    assert check_range(["log-uniform", 1e-5, 1e-2], "lr") == ("log-uniform", 1e-5, 1e-2)
    for bad in (["log-uniform", 0, 1], ["uniform", 1, 0], ["normal", 0, 1], ["choice"]):
        with pytest.raises(ValueError, match="range of 'lr'"):
            check_range(bad, "lr")
    with pytest.raises(ValueError, match="no key 'trials'; valid keys: hp_trials"):
        Protocol.from_dict({"trials": 4})
    with pytest.raises(TypeError, match="'hp_trials' expects an integer"):
        Protocol.from_dict({"hp_trials": "many"})
    with pytest.raises(ValueError, match="dev fractions"):
        Protocol.from_dict({"hp_trials": 2, "dev_fractions": [0.5, 0.1, 0.1]})
    protocol = Protocol.from_dict({"hp_trials": 2, "params": ["lr"]})
    assert protocol.space(Finetune(), "finetune") == {"lr": ("log-uniform", 1e-4, 1e-1)}
    with pytest.raises(ValueError, match="declares no searchable 'momentum'; it declares lr, "
                                         "label_smoothing"):
        Protocol(hp_trials=2, ranges={"momentum": ("uniform", 0, 1)}).space(Finetune(), "finetune")
    with pytest.raises(ValueError, match="strategy 'nmc' declares no searchable"):
        Protocol(hp_trials=2).space(strategies.get("nmc"), "nmc")


def _run(tmp_path, name, protocol, strategy="finetune", backbone=None, **options):
    stream = streams.get("split-digits", n_tasks=2)
    runner = Runner(stream, strategies.get(strategy, **options), backbone or create_backbone("pixels"),
                    out_dir=tmp_path / name, progress=False, protocol=protocol)
    return runner, runner.run().results


def test_identical_trials_give_identical_results_so_no_trial_leaks(tmp_path):
    """Three trials with the same values must each start from the task's starting state: the same
    dev accuracy every time, and the run equals a one-trial run, at 3× its compute."""
    _, three = _run(tmp_path, "three", Protocol(hp_trials=3, ranges=SAME), epochs=3)
    _, one = _run(tmp_path, "one", Protocol(hp_trials=1, ranges=SAME), epochs=3)
    for t in range(2):
        trials = three["records"][t]["hp_search"]["trials"]
        assert len({tr["dev_accuracy"] for tr in trials}) == 1
        assert len({tr["train_flops"] for tr in trials}) == 1 and trials[0]["train_flops"] > 0
        assert three["compute"][t]["train_flops"] == pytest.approx(3 * one["compute"][t]["train_flops"])
        assert three["compute"][t]["examples_seen"] == 3 * one["compute"][t]["examples_seen"]
        assert three["compute"][t]["hp_trials"] == 3
    assert three["accuracy_matrix"] == one["accuracy_matrix"]


def test_selection_keeps_the_best_dev_trial_and_counts_every_trial(tmp_path):
    runner, res = _run(tmp_path, "hp", Protocol(hp_trials=4), epochs=3)
    for t in range(2):
        search = res["records"][t]["hp_search"]
        devs = [tr["dev_accuracy"] for tr in search["trials"]]
        assert search["chosen"] == int(np.argmax(devs))  # the earliest best
        assert search["values"] == {k: search["trials"][search["chosen"]][k]
                                    for k in ("lr", "label_smoothing")}
        assert res["compute"][t]["train_flops"] == pytest.approx(
            sum(tr["train_flops"] for tr in search["trials"]))
    # the strategy ends with the chosen values of the last task
    assert runner.strategy.lr == res["records"][1]["hp_search"]["values"]["lr"]
    # the error-vs-compute curve pays for every trial
    x, _ = nevis_error_curve(matrix_from_json(res["accuracy_matrix"]),
                             [c["train_flops"] for c in res["compute"]])
    assert x[-1] == pytest.approx(sum(tr["train_flops"] for t in range(2)
                                      for tr in res["records"][t]["hp_search"]["trials"]))
    # trained on the carved 70 % of each train split, scored on its 15 % dev part
    stream = runner.stream
    assert stream[0].has_dev and "carve=70/15/15" in stream[0].key
    n_train = len(streams.get("split-digits", n_tasks=2)[0].load_train())
    assert res["compute"][0]["train_examples"] == len(stream[0].load_train()) < 0.75 * n_train
    assert res["protocol"]["hp_trials"] == 4


def test_a_diverging_trial_is_recorded_and_not_chosen(tmp_path):
    protocol = Protocol(hp_trials=6, ranges={"lr": ["choice", 1e9, 0.05]}, params=("lr",))
    _, res = _run(tmp_path, "nan", protocol, epochs=2)
    trials = res["records"][0]["hp_search"]["trials"]
    diverged = [tr for tr in trials if tr["lr"] == 1e9]
    assert diverged and all(tr["dev_accuracy"] is None and "lower lr" in tr["error"]
                            for tr in diverged)
    assert res["records"][0]["hp_search"]["values"]["lr"] == 0.05
    with pytest.raises(FloatingPointError, match="all 2 trials of task 0 diverged"):
        _run(tmp_path, "all-nan", Protocol(hp_trials=2, ranges={"lr": ["choice", 1e9]},
                                           params=("lr",)), epochs=2)


def test_cli_set_protocol_runs_the_search_and_records_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--strategy", "finetune", "--set", "strategy.epochs=2",
                 "--set", "stream.n_tasks=2", "--set", "protocol.hp_trials=4",
                 "--set", 'protocol.ranges.lr=["log-uniform", 1e-3, 1e-1]', "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["protocol"] == {"hp_trials": 4, "ranges": {"lr": ["log-uniform", 1e-3, 1e-1]}}
    assert all(1e-3 <= tr["lr"] <= 1e-1 for tr in res["records"][0]["hp_search"]["trials"])
    assert "hp_trials" in (out / "report.md").read_text()
    capsys.readouterr()
    assert main(["run", "--out", str(tmp_path / "bad"), "--set", "protocol.hp_trials=2",
                 "--no-progress"]) == 2
    assert "strategy 'nmc' declares no searchable hyper-parameters" in capsys.readouterr().err


@pytest.mark.slow
def test_lora_trials_restore_the_backbone_exactly(tmp_path):
    """LoRA merges into the backbone: each identical trial must start from the same weights."""
    pristine = create_backbone("cl-tiny-vit")
    fast = {"rank": 2, "iterations": 3, "batch_size": 16, "lr": 5e-3, "encoders": "vision"}
    backbones = {}
    for name, n in (("three", 3), ("one", 1)):
        backbones[name] = copy.deepcopy(pristine)
        _, res = _run(tmp_path, name, Protocol(hp_trials=n, ranges=SAME), strategy="lora",
                      backbone=backbones[name], **fast)
        backbones[name + "-res"] = res
    three, one = backbones["three-res"], backbones["one-res"]
    for t in range(2):
        trials = three["records"][t]["hp_search"]["trials"]
        assert len({tr["dev_accuracy"] for tr in trials}) == 1
        assert three["compute"][t]["train_flops"] == pytest.approx(3 * one["compute"][t]["train_flops"])
    assert three["accuracy_matrix"] == one["accuracy_matrix"]
    for (k, a), b in zip(backbones["three"].model.state_dict().items(),
                         backbones["one"].model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    assert any(not torch.equal(a, b) for a, b in zip(backbones["three"].model.state_dict().values(),
                                                    pristine.model.state_dict().values(), strict=True))
