"""TensorBoard and W&B loggers: what lands in the event file / offline run is what the tracker holds."""

import json
import struct
import sys

import numpy as np
import pytest

from cl.core.tracker import Tracker
from cl.reporting.loggers import make_loggers, row_scalars, wandb_mode


def tracker_after(rows: int) -> Tracker:
    """A 3-task tracker with a zero-shot row and ``rows`` evaluated rows (hand-written accuracies)."""
    tr = Tracker(["cars", "dtd/split", "food"])
    tr.zero_shot[:] = [0.10, 0.20, 0.30]
    A = [[0.90, 0.25, 0.30], [0.80, 0.70, 0.35], [0.60, 0.65, 0.95]]
    for t in range(rows):
        tr.matrix[t] = A[t]
        tr.set_compute(t, train_seconds=1.5 + t, memory_bytes=1000.0 * (t + 1))
    return tr


def test_row_scalars_are_percent_and_skip_undefined_metrics():
    s = row_scalars(1, tracker_after(2))
    assert s["accuracy/cars"] == pytest.approx(80.0)
    assert s["accuracy/dtd_split"] == pytest.approx(70.0)  # slash in a task name is not a tag level
    assert s["accuracy/seen_mean"] == pytest.approx(75.0)  # mean of the 2 seen tasks, not all 3
    # forgetting after 2 tasks: max(0.90) - 0.80 on task 0
    assert s["metrics/forgetting"] == pytest.approx(10.0)
    assert s["compute/memory_bytes"] == 2000.0
    first = row_scalars(0, tracker_after(1))
    assert "metrics/forgetting" not in first  # undefined with one task: NaN is not logged


def test_tensorboard_event_file_holds_every_row(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    tr = tracker_after(3)
    (logger,) = make_loggers(["tensorboard"], tmp_path, {"seed": 0, "strategy": {"name": "nmc"}})
    for t in range(3):
        logger.log_row(t, tr)
    logger.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    cars = [(e.step, e.value) for e in acc.Scalars("accuracy/cars")]
    assert cars == [(0, pytest.approx(10.0)), (1, pytest.approx(90.0)), (2, pytest.approx(80.0)),
                    (3, pytest.approx(60.0))]
    last = {e.step: e.value for e in acc.Scalars("metrics/average_accuracy")}
    assert last[3] == pytest.approx(100 * np.mean([0.60, 0.65, 0.95]), rel=1e-6)
    assert [e.value for e in acc.Scalars("compute/train_seconds")] == [1.5, 2.5, 3.5]
    (config_event,) = acc.Tensors("config/text_summary")
    stored = tensor_util.make_ndarray(config_event.tensor_proto).item().decode()
    assert json.loads(stored.strip("`\n")) == {"seed": 0, "strategy": {"name": "nmc"}}


def _wandb_history(run_file):
    """History rows of an offline ``.wandb`` file (LevelDB-log framing of wandb Record protos)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, pending, rows = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            break
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST fragment
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): float(item.value_json)
                             for item in record.history.item})
    return rows


def test_wandb_offline_run_holds_every_row(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_mode() == "offline"
    tr = tracker_after(2)
    import wandb

    try:
        (logger,) = make_loggers(["wandb"], tmp_path, {"seed": 3})
    except (wandb.errors.Error, OSError, TimeoutError) as err:  # service cannot start (sandbox)
        pytest.skip(f"wandb cannot initialise offline here: {err}")
    logger.log_row(0, tr)
    logger.log_row(1, tr)
    logger.close()
    wandb.teardown()  # the W&B service writes the run file asynchronously; wait for it
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    rows = {int(r["_step"]): r for r in _wandb_history(run_file)}
    assert sorted(rows) == [0, 1, 2]
    assert rows[0]["accuracy/food"] == pytest.approx(30.0)  # zero-shot row at step 0
    assert rows[2]["accuracy/dtd_split"] == pytest.approx(70.0)
    assert rows[2]["metrics/forgetting"] == pytest.approx(10.0)


def test_wandb_mode_follows_environment(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"


def test_unknown_logger_lists_valid_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown logger 'tensorbord'.*tensorboard, wandb"):
        make_loggers(["tensorbord"], tmp_path, {})
    with pytest.raises(TypeError, match="list of logger names"):
        make_loggers("tensorboard", tmp_path, {})


def test_missing_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if wandb were not installed
    with pytest.raises(ValueError, match=r"needs the 'wandb' package.*pip install wandb"):
        make_loggers(["tensorboard", "wandb"], tmp_path, {})
    assert not (tmp_path / "tensorboard").exists()  # nothing half-built before the check failed


def test_names_are_normalised_and_deduplicated(tmp_path):
    loggers = make_loggers([" TensorBoard", "tensorboard"], tmp_path, {})
    assert len(loggers) == 1
    loggers[0].close()


def test_cl_run_log_tensorboard_mirrors_results_json(tmp_path):
    """Through the runner: the event file's accuracy curves are results.json's matrix columns."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cl.cli import main

    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--no-progress", "--log", "tensorboard",
                 "--set", "stream.n_tasks=2"]) == 0
    results = json.loads((out / "results.json").read_text())
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    for j, name in enumerate(results["tasks"]):
        curve = [(e.step, e.value) for e in acc.Scalars(f"accuracy/{name}")]
        expected = [(0, 100 * results["zero_shot"][j])]
        expected += [(t + 1, 100 * row[j]) for t, row in enumerate(results["accuracy_matrix"])]
        assert curve == [(s, pytest.approx(v, abs=1e-4)) for s, v in expected]
    final = acc.Scalars("metrics/average_accuracy")[-1]
    assert final.step == 2
    assert final.value == pytest.approx(100 * results["metrics"]["average_accuracy"], abs=1e-4)
