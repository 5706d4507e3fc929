"""End-to-end runs through the `cl` CLI and the Python API (offline quickstart)."""

import json
import re

import numpy as np
import pytest
import torch

import strategies
import streams
from cl.cli import main
from cl.core.runner import Runner
from cl.models.backbones import create_backbone
from strategies.finetune import Finetune
from streams.arrays import ArrayImageDataset
from streams.core import Stream, Task

RESULT_KEYS = {"stream", "strategy", "backbone", "seed", "tasks", "accuracy_matrix", "zero_shot",
               "metrics", "compute", "environment"}


def run_cli(tmp_path, *args):
    out = tmp_path / "run"
    code = main(["run", "--out", str(out), "--no-progress", *args])
    assert code == 0
    return out, json.loads((out / "results.json").read_text())


def test_default_run_is_the_offline_quickstart(tmp_path, capsys):
    out, results = run_cli(tmp_path)
    assert RESULT_KEYS <= set(results)
    assert results["stream"] == "split-digits" and results["strategy"] == "nmc"
    assert results["backbone"] == "pixels" and results["status"] == "completed"
    A = np.array(results["accuracy_matrix"], dtype=float)
    assert A.shape == (5, 5) and not np.isnan(A).any()
    assert results["metrics"]["average_accuracy"] >= 0.85
    assert len(results["zero_shot"]) == 5
    for key in ("python", "torch", "open_clip", "peft", "avalanche", "cl", "device"):
        assert results["environment"][key]
    for name in ("config.toml", "accuracy_matrix.csv", "report.md", "accuracy_matrix.png",
                 "accuracy_over_time.png", "error_vs_compute.png", "accuracy_vs_memory.png"):
        assert (out / name).stat().st_size > 0, name
    printed = capsys.readouterr().out
    assert "forgetting" in printed and "digits-8-9" in printed
    assert results["compute"][0]["train_examples"] > 0


def test_finetune_forgets_and_nmc_does_not(tmp_path):
    _, ft = run_cli(tmp_path / "ft", "--strategy", "finetune")
    _, nmc = run_cli(tmp_path / "nmc", "--strategy", "nmc")
    assert ft["metrics"]["forgetting"] > 0.3
    assert nmc["metrics"]["forgetting"] < ft["metrics"]["forgetting"]
    assert ft["compute"][0]["trainable_parameters"] > 0


def test_report_command_replots_a_finished_run(tmp_path, capsys):
    out, _ = run_cli(tmp_path)
    (out / "accuracy_matrix.png").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "accuracy_matrix.png").exists()
    assert "average accuracy" in capsys.readouterr().out


def test_config_file_flags_and_set_compose(tmp_path, capsys):
    cfg = tmp_path / "exp.toml"
    cfg.write_text('seed = 3\n[stream]\nname = "split-digits"\nn_tasks = 2\n'
                   '[strategy]\nname = "finetune"\nepochs = 2\n')
    _, results = run_cli(tmp_path, "--config", str(cfg), "--set", "strategy.hidden=0",
                           "--seed", "4")
    assert results["seed"] == 4 and len(results["tasks"]) == 2
    assert results["config"]["strategy"] == {"name": "finetune", "epochs": 2, "hidden": 0}


def test_dry_run_prints_the_plan_without_running(tmp_path, capsys):
    assert main(["run", "--dry-run", "--out", str(tmp_path / "x")]) == 0
    text = capsys.readouterr().out
    assert "split-digits (5 tasks, class-incremental)" in text and "digits-0-1" in text
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stream", "nope"], "Unknown stream 'nope'.*Valid streams: .*split-digits"),
        (["--strategy", "nope"], "Unknown strategy 'nope'.*finetune"),
        (["--backbone", "nope"], "Unknown .*'nope'"),
        (["--set", "colour=red"], "unknown config key 'colour'; valid keys: .*seed"),
        (["--set", "strategy.epochs=abc"], "option 'epochs' expects an integer, got 'abc'"),
        (["--set", "seed=1.5"], "'seed' expects an integer"),
        (["--set", "strategy.colour=1"], "has no option 'colour'; valid options: .*epochs"),
        (["--set", "novalue"], "expects key=value"),
    ],
)
def test_bad_input_gets_a_one_line_error(tmp_path, capsys, args, message):
    strategy = ["--strategy", "finetune"] if any(a.startswith("strategy.") for a in args) else []
    code = main(["run", "--no-progress", "--out", str(tmp_path / "r"), *strategy, *args])
    assert code == 2
    assert re.search(message, capsys.readouterr().err)


def test_unknown_key_in_config_file_is_named(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("sed = 3\n")
    assert main(["run", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'sed'" in err and str(cfg) in err


def test_unwritable_output_directory_is_reported(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["run", "--no-progress", "--out", str(blocker / "run")]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_empty_task_is_reported_by_name(tmp_path):
    empty = ArrayImageDataset(np.zeros((0, 8, 8), np.uint8), np.zeros(0, np.int64))
    full = streams.get("split-digits")[0]
    stream = Stream("s", (full, Task("hollow", ("x", "y"), lambda: empty, lambda: empty)))
    runner = Runner(stream, Finetune(epochs=1), create_backbone("pixels"), out_dir=tmp_path / "r",
                    progress=False)
    with pytest.raises(ValueError, match="hollow.*empty"):
        runner.run()
    partial = json.loads((tmp_path / "r" / "results.json").read_text())
    assert partial["status"] == "failed" and "empty" in partial["error"]
    assert partial["zero_shot"] is not None  # the rows evaluated before the failure are kept
    assert main(["report", str(tmp_path / "r")]) == 0  # a failed run can still be reported
    assert (tmp_path / "r" / "accuracy_matrix.png").exists()


def test_python_api_matches_the_cli(tmp_path):
    result = Runner(streams.get("split-digits"), Finetune(epochs=2), create_backbone("pixels"),
                    out_dir=tmp_path / "api", seed=0, progress=False).run()
    _, cli = run_cli(tmp_path, "--strategy", "finetune", "--set", "strategy.epochs=2")
    np.testing.assert_array_equal(result.tracker.matrix, np.array(cli["accuracy_matrix"]))
    assert result.results["metrics"] == cli["metrics"]
    assert result.results["zero_shot"] == cli["zero_shot"]
    assert json.loads((tmp_path / "api" / "results.json").read_text())["metrics"] == cli["metrics"]
    # one label whichever way the run started: the registered name, not the class name
    assert result.results["strategy"] == cli["strategy"] == "finetune"


def test_log_flag_adds_tensorboard_next_to_the_run_directory(tmp_path):
    out, _ = run_cli(tmp_path, "--log", "tensorboard", "--set", "stream.n_tasks=2")
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))


def test_unknown_logger_is_named(tmp_path, capsys):
    assert main(["run", "--no-progress", "--out", str(tmp_path / "r"), "--log", "mlflow"]) == 2
    assert "mlflow" in capsys.readouterr().err


def test_compute_accounting_counts_flops_and_carried_memory(tmp_path):
    _, results = run_cli(tmp_path, "--strategy", "gda", "--backbone", "cl-tiny-vit",
                         "--set", "stream.n_tasks=2")
    c0, c1 = results["compute"]
    assert c0["train_flops"] > 0 and c0["train_flops"] == pytest.approx(
        c0["train_examples"] / c1["train_examples"] * c1["train_flops"])
    assert c0["backbone_forwards"] > 0  # cold cache: the backbone encoded the images
    assert 0 < c0["memory_bytes"] < c1["memory_bytes"]  # GDA statistics grow with classes
    assert c0["peak_memory_bytes"] > 0 and c0["train_seconds"] > 0


def test_labels_that_do_not_match_the_class_names_are_reported(tmp_path):
    images = np.zeros((4, 8, 8), np.uint8)
    wrong = ArrayImageDataset(images, np.array([0, 1, 2, 3]))  # 4 labels, 2 class names
    stream = Stream("s", (Task("mislabelled", ("a", "b"), lambda: wrong, lambda: wrong),))
    runner = Runner(stream, Finetune(epochs=1), create_backbone("pixels"), out_dir=tmp_path / "r",
                    progress=False)
    with pytest.raises(ValueError, match="mislabelled.*labels in \\[0, 3\\] but 2 class names"):
        runner.run()


def test_domain_incremental_nmc_pools_every_session_of_a_class(tmp_path):
    """In a domain-incremental stream a class keeps one id across sessions: NMC after session t is
    scikit-learn's NearestCentroid fitted on sessions 0..t (Euclidean, raw pixels)."""
    from sklearn.neighbors import NearestCentroid

    stream = streams.get("domain-digits", domains=["original", "inverted"])
    backbone = create_backbone("pixels")
    result = Runner(stream, strategies.get("nmc", metric="euclidean", normalize=False), backbone,
                    out_dir=tmp_path / "dd", progress=False).run()

    def xy(ds):
        x = backbone.encode_images(torch.stack([backbone.preprocess(ds[i][0]) for i in range(len(ds))]))
        return x.numpy(), np.array([ds[i][1] for i in range(len(ds))])

    train = [xy(t.load_train()) for t in stream]
    test = [xy(t.load_test()) for t in stream]
    for t in range(2):
        X = np.concatenate([x for x, _ in train[: t + 1]])
        y = np.concatenate([y for _, y in train[: t + 1]])
        model = NearestCentroid().fit(X, y)
        for j in range(2):
            assert result.tracker.matrix[t, j] == pytest.approx(model.score(*test[j]), abs=1e-12)
    assert result.results["scenario"] == "domain-incremental"
