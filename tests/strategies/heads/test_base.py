"""The ``nmc`` and ``gda`` runner strategies on split-digits: accuracy, forgetting,
label-space handling, resume state and bad input."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import strategies
import streams
from cl.core.runner import Runner
from cl.core.strategy import Context, TaskData
from cl.models.backbones import create_backbone
from cl.models.features import Features, extract
from streams.core import LabelSpace, Stream


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    stream = streams.get("split-digits")
    out: dict[str, dict[str, Any]] = {}
    for name in ("nmc", "gda", "finetune"):
        root = tmp_path_factory.mktemp(name)
        run = Runner(stream, strategies.get(name), create_backbone("pixels"), out_dir=root / "run",
                     cache_dir=str(root / "cache"), progress=False).run()
        out[name] = run.results
    return out


def test_gda_beats_nmc_and_both_forget_far_less_than_finetune(digits_runs) -> None:
    gda, nmc, ft = (digits_runs[k]["metrics"] for k in ("gda", "nmc", "finetune"))
    assert gda["average_accuracy"] >= 0.93
    assert gda["average_accuracy"] > nmc["average_accuracy"]
    assert ft["forgetting"] >= 0.5
    assert gda["forgetting"] <= 0.1 * ft["forgetting"]
    assert nmc["forgetting"] <= 0.1 * ft["forgetting"]


def test_zero_shot_row_without_text_tower_is_chance_not_an_error(digits_runs) -> None:
    z = digits_runs["gda"]["zero_shot"]
    assert len(z) == 5 and all(0.0 <= a <= 1.0 for a in z)
    assert z[1:] == [0.0] * 4  # all-zero logits pick the first class, never in tasks 1..4
    assert digits_runs["gda"]["records"] == [{}] * 5  # no text tower: ensemble off, no alpha


# -- direct use of the strategies on cached features ------------------------------------
@pytest.fixture(scope="module")
def digits_features() -> tuple[Stream, dict[tuple[int, str], Features]]:
    stream = streams.get("split-digits")
    backbone = create_backbone("pixels")
    feats = {(t, split): extract(backbone, stream[t].load(split), key=stream[t].key, split=split,
                                 progress=False)
             for t in range(len(stream)) for split in ("train", "test")}
    return stream, feats


def _ctx(stream: Stream, t: int, records: dict[str, Any] | None = None) -> Context:
    store = {} if records is None else records
    return Context(task_index=t, task=stream[t], stream=stream,
                   label_space=stream.train_label_space(t), backbone=create_backbone("pixels"),
                   device=torch.device("cpu"), seed=0, generator=torch.Generator().manual_seed(t),
                   logger=logging.getLogger("test"), record=store.__setitem__, trained_tasks=t)


def _train(strategy: Any, stream: Stream, feats: dict, t: int) -> None:
    f = feats[(t, "train")]
    strategy.train_task(TaskData(stream[t], f.y + stream.class_offsets[t], features=f.X),
                        _ctx(stream, t))


@pytest.mark.parametrize("name", ["nmc", "gda"])
def test_class_means_never_change_after_the_task_that_introduced_them(name, digits_features) -> None:
    stream, feats = digits_features
    strategy = strategies.get(name)
    snapshots: dict[int, np.ndarray] = {}
    for t in range(len(stream)):
        _train(strategy, stream, feats, t)
        for c in range(stream.class_offsets[t], stream.class_offsets[t] + stream[t].n_classes):
            snapshots[c] = strategy.model.means_[list(strategy.model.classes_).index(c)].copy()
    assert strategy.model.classes_.tolist() == list(range(10))
    for c, mean in snapshots.items():
        np.testing.assert_array_equal(strategy.model.means_[c], mean)


def test_logits_follow_the_label_space_and_unfitted_classes_score_minus_inf(digits_features) -> None:
    stream, feats = digits_features
    strategy = strategies.get("gda")
    x = feats[(1, "test")].X[:7]
    space = LabelSpace((3, 7, 0), ("3", "7", "0"), (("{}",),) * 3)
    before = strategy.predict(x, space, _ctx(stream, 0))
    assert torch.equal(before, torch.zeros(7, 3))
    _train(strategy, stream, feats, 0)
    _train(strategy, stream, feats, 1)
    logits = strategy.predict(x, space, _ctx(stream, 1))
    assert logits.shape == (7, 3) and logits.dtype == torch.float32
    assert torch.isinf(logits[:, 1]).all() and (logits[:, 1] < 0).all()
    expected = strategy.model.class_scores(x.double().numpy())[:, [3, 0]]
    np.testing.assert_allclose(logits[:, [0, 2]].numpy(), expected, rtol=1e-5)
    # a label space of only unfitted classes (future task, task-incremental): chance
    future = strategy.predict(x, stream.task_label_space([4]), _ctx(stream, 1))
    assert torch.equal(future, torch.zeros(7, 2))


@pytest.mark.parametrize("name", ["nmc", "gda"])
def test_training_and_logits_do_not_depend_on_torch_default_dtype(name, digits_features) -> None:
    """A user running in float64 (``torch.set_default_dtype``) gets the same float32 logits."""
    stream, feats = digits_features
    x = feats[(1, "test")].X[:9]
    space = stream.task_label_space([0, 1, 2])  # task 2's classes not fitted: -inf
    logits = {}
    for dtype in (torch.float32, torch.float64):
        old = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            strategy = strategies.get(name)
            _train(strategy, stream, feats, 0)
            _train(strategy, stream, feats, 1)
            logits[dtype] = strategy.predict(x, space, _ctx(stream, 1))
        finally:
            torch.set_default_dtype(old)
    assert logits[torch.float64].dtype == torch.float32
    assert torch.isinf(logits[torch.float64][:, 4:]).all()
    torch.testing.assert_close(logits[torch.float64], logits[torch.float32])


@pytest.mark.parametrize("name", ["nmc", "gda"])
def test_state_dict_survives_torch_save_with_weights_only(name, digits_features, tmp_path: Path) -> None:
    stream, feats = digits_features
    strategy = strategies.get(name)
    empty = tmp_path / "empty.pt"
    torch.save(strategy.state_dict(), empty)
    _train(strategy, stream, feats, 0)
    _train(strategy, stream, feats, 1)
    path = tmp_path / "state.pt"
    torch.save(strategy.state_dict(), path)
    restored = strategies.get(name)
    restored.load_state_dict(torch.load(path, weights_only=True))
    space = stream.eval_label_space(1, 1)
    x = feats[(1, "test")].X
    assert torch.equal(restored.predict(x, space, _ctx(stream, 1)),
                       strategy.predict(x, space, _ctx(stream, 1)))
    assert restored.memory_bytes() == strategy.memory_bytes() > 0
    # continuing after the restore gives the same model as never stopping
    _train(strategy, stream, feats, 2)
    _train(restored, stream, feats, 2)
    np.testing.assert_array_equal(restored.model.means_, strategy.model.means_)
    restored.load_state_dict(torch.load(empty, weights_only=True))
    assert torch.equal(restored.predict(x, space, _ctx(stream, 1)), torch.zeros(len(x), 4))


def test_non_finite_features_name_the_task(digits_features) -> None:
    stream, feats = digits_features
    f = feats[(2, "train")]
    X = f.X.clone()
    X[3, 5] = float("nan")
    with pytest.raises(ValueError, match="digits-4-5"):
        strategies.get("gda").train_task(
            TaskData(stream[2], f.y + stream.class_offsets[2], features=X), _ctx(stream, 2))


def test_feature_dimension_change_between_tasks_is_an_error(digits_features) -> None:
    stream, feats = digits_features
    strategy = strategies.get("nmc")
    _train(strategy, stream, feats, 0)
    f = feats[(1, "train")]
    with pytest.raises(ValueError, match="task 'digits-2-3'.*64 features"):
        strategy.train_task(TaskData(stream[1], f.y + 2, features=f.X[:, :32]), _ctx(stream, 1))


def test_options_are_validated() -> None:
    assert strategies.get("gda", shrinkage=0.1).model.shrinkage == 0.1
    assert strategies.get("gda", shrinkage="auto", priors="empirical").model.priors == "empirical"
    with pytest.raises(ValueError, match="shrinkage"):
        strategies.get("gda", shrinkage="oas")
    with pytest.raises(ValueError, match="val_fraction"):
        strategies.get("gda", val_fraction=1.5)
    with pytest.raises(ValueError, match="alpha_grid"):
        strategies.get("nmc", alpha_grid=[])
    with pytest.raises(TypeError, match="metric"):
        strategies.get("nmc", metric="manhattan")


# -- zero-shot ensemble on a real (tiny, random) open_clip backbone ----------------------
@pytest.fixture(scope="module")
def clip_features() -> tuple[Stream, Any, dict[tuple[int, str], Features]]:
    stream = streams.get("split-digits")
    backbone = create_backbone("cl-tiny-vit")
    feats = {(t, split): extract(backbone, stream[t].load(split), key=stream[t].key, split=split,
                                 progress=False)
             for t in (0, 1) for split in ("train", "test")}
    return stream, backbone, feats


def _clip_ctx(stream: Stream, backbone: Any, t: int, records: dict[str, Any]) -> Context:
    ctx = _ctx(stream, t, records)
    ctx.backbone = backbone
    return ctx


def test_gda_ensembles_with_zero_shot_and_picks_alpha_on_held_out_training_data(clip_features) -> None:
    from cl.models.prompts import zero_shot_head

    stream, backbone, feats = clip_features
    strategy = strategies.get("gda", alpha_grid=[0.01, 1.0, 100.0], val_fraction=0.25)
    x = feats[(0, "test")].X
    space = stream.eval_label_space(0, None)
    head = zero_shot_head(backbone, space.class_names, space.templates)
    zero_shot = 100.0 * x @ head.T
    records: dict[str, Any] = {}
    torch.testing.assert_close(strategy.predict(x, space, _clip_ctx(stream, backbone, 0, records)),
                               zero_shot)
    for t in (0, 1):
        records = {}
        f = feats[(t, "train")]
        strategy.train_task(TaskData(stream[t], f.y + stream.class_offsets[t], features=f.X),
                            _clip_ctx(stream, backbone, t, records))
        counts = torch.bincount(f.y)
        assert records["ensemble_val_size"] == int(sum(int(0.25 * int(c)) for c in counts))
        assert records["ensemble_alpha_grid"] == [0.01, 1.0, 100.0]
        best = int(np.argmax(records["ensemble_val_accuracy"]))
        assert records["ensemble_alpha"] == [0.01, 1.0, 100.0][best] == strategy.alpha
    # the held-out slice is added back: the statistics cover every training sample
    assert strategy.model.class_count_.sum() == len(feats[(0, "train")]) + len(feats[(1, "train")])
    space = stream.eval_label_space(0, 1)
    head = zero_shot_head(backbone, space.class_names, space.templates)
    gda = torch.from_numpy(strategy.model.class_scores(x.double().numpy())).float()
    torch.testing.assert_close(strategy.predict(x, space, _clip_ctx(stream, backbone, 1, {})),
                               100.0 * x @ head.T + strategy.alpha * gda)


def test_ensemble_off_gives_pure_model_logits_on_a_vlm(clip_features) -> None:
    stream, backbone, feats = clip_features
    for name in ("gda", "nmc"):
        strategy = strategies.get(name, ensemble=False)
        f = feats[(0, "train")]
        records: dict[str, Any] = {}
        strategy.train_task(TaskData(stream[0], f.y, features=f.X),
                            _clip_ctx(stream, backbone, 0, records))
        assert records == {}
        x = feats[(0, "test")].X
        expected = torch.from_numpy(strategy.model.class_scores(x.double().numpy())).float()
        torch.testing.assert_close(
            strategy.predict(x, stream.eval_label_space(0, 0), _clip_ctx(stream, backbone, 0, {})),
            expected)


def _three_task_digits(scenario):
    from sklearn.datasets import load_digits

    from streams import from_datasets
    from streams.arrays import ArrayImageDataset

    X, y = load_digits(return_X_y=True)
    images = (X.reshape(-1, 8, 8) * 16).clip(0, 255).astype("uint8")
    pairs, names = [], []
    for t in range(3):
        keep = (y // 3) == t
        labels = y[keep] - 3 * t
        half = keep.sum() // 2
        pairs.append((ArrayImageDataset(images[keep][:half], labels[:half]),
                      ArrayImageDataset(images[keep][half:], labels[half:])))
        names.append([str(3 * t + c) for c in range(3)])
    return from_datasets(pairs, class_names=names, scenario=scenario, name=f"{scenario}-digits")


@pytest.mark.parametrize("scenario", ["task-incremental", "class-incremental"])
def test_ensemble_alpha_is_per_task_on_task_incremental_streams_only(tmp_path, scenario):
    """Task-incremental: each task keeps the α chosen when it was trained, so a later task
    choosing another α cannot change an old task's predictions (frozen NMC then never
    forgets). Class-incremental: one α for the mixed label space, re-chosen each task."""
    stream = _three_task_digits(scenario)
    strategy = strategies.get("nmc", ensemble=True, alpha_grid=[1e-4, 1.0, 100.0, 1e4])
    runner = Runner(stream, strategy, create_backbone("cl-tiny-vit"), out_dir=tmp_path / "r",
                    progress=False)
    result = runner.run()
    A = result.tracker.matrix
    chosen = [r["ensemble_alpha"] for r in result.results["records"]]
    ctx = runner.context(2)
    space = stream.eval_label_space(0, 2)
    x = runner.inputs.features(0, "test").X
    before = strategy.predict(x, space, ctx)
    strategy.alpha = 1e-4  # as if the newest task had chosen another weight
    after = strategy.predict(x, space, ctx)
    if scenario == "task-incremental":
        assert [strategy.task_alpha[t] for t in range(3)] == chosen
        assert torch.equal(before, after)
        for j in range(3):
            np.testing.assert_array_equal(A[j:, j], A[j, j])   # no forgetting at all
        restored = strategies.get("nmc", ensemble=True)
        restored.load_state_dict(strategy.state_dict())
        assert restored.task_alpha == strategy.task_alpha
    else:
        assert strategy.task_alpha == {} and not torch.equal(before, after)
