"""Plugins: the replay buffer (CBRS, exact budget, less forgetting), the zero-shot-retention
monitor, loading plugins by name/code, and a failing plugin."""

import json
import logging

import numpy as np
import pytest
import torch

import streams
from cl.cli import main
from cl.core.plugin import Plugin
from cl.core.runner import Runner
from cl.core.strategy import Context
from cl.errors import PluginError
from cl.models.backbones import create_backbone
from strategies import loading
from strategies.catalog import PLUGINS
from strategies.finetune import Finetune
from strategies.plugins.replay import ReplayPlugin
from strategies.plugins.retention import ZeroShotRetention, zero_shot_accuracy


def make_ctx(task_index: int = 0, seed: int = 0) -> Context:
    stream = streams.get("split-digits")
    return Context(
        task_index=task_index, task=stream[task_index], stream=stream,
        label_space=stream.train_label_space(task_index), backbone=create_backbone("pixels"),
        device=torch.device("cpu"), seed=seed, generator=torch.Generator().manual_seed(seed),
        logger=logging.getLogger("test"), record=lambda k, v: None,
    )


def offer(plugin: ReplayPlugin, ctx: Context, x: torch.Tensor, y: torch.Tensor) -> tuple:
    return plugin.before_batch(x, y, ctx)


# -- replay: the buffer ---------------------------------------------------------------
def test_cbrs_hand_computed_case():
    """M = 4. Four 0s fill it; 1s replace 0s until both have 2 (then 1 is "full": further 1s
    only replace 1s); the first 2 replaces a 0 or 1, the second one the class still at 2."""
    plugin, ctx = ReplayPlugin(memory_size=4), make_ctx()
    plugin.before_task(ctx)
    ids = iter(range(1000))

    def feed(label: int, n: int) -> None:
        for _ in range(n):
            offer(plugin, ctx, torch.tensor([[float(next(ids))]]), torch.tensor([label]))

    feed(0, 4)
    assert plugin.y_.tolist() == [0, 0, 0, 0]
    feed(1, 2)
    assert sorted(plugin.y_.tolist()) == [0, 0, 1, 1]
    feed(1, 5)
    assert sorted(plugin.y_.tolist()) == [0, 0, 1, 1]
    feed(2, 2)
    assert sorted(np.bincount(plugin.y_.numpy(), minlength=3).tolist()) == [1, 1, 2]
    assert len(plugin) == 4
    assert plugin.seen_ == {0: 4, 1: 7, 2: 2}


@pytest.mark.parametrize("seed", range(3))
def test_cbrs_class_leading_while_filling_is_not_full(seed):
    """M = 4, stream 1, 0, 0, 0, then 1s. Class 1 led after the first example, but "full"
    counts only once the buffer is filled (then 0 is the largest): the 1s evict 0s until
    the classes tie, whatever the random draws."""
    plugin, ctx = ReplayPlugin(memory_size=4, seed=seed), make_ctx()
    plugin.before_task(ctx)
    labels = [1, 0, 0, 0] + [1] * 20
    for i, label in enumerate(labels):
        offer(plugin, ctx, torch.tensor([[float(i)]]), torch.tensor([label]))
    assert sorted(plugin.y_.tolist()) == [0, 0, 1, 1]


def test_cbrs_allocation_invariant_on_imbalanced_streams():
    """Algorithm 1 implies, at every step after the buffer is filled: a class that is not
    full was never evicted, so it holds all n_c of its examples; full classes hold L or
    L − 1 examples, L the largest count (only a largest class loses an example, and a class
    becomes full when it reaches L). Checked after every example of 8 random streams."""
    rng = np.random.default_rng(0)
    ctx = make_ctx()
    for trial in range(8):
        n_classes, memory = int(rng.integers(3, 9)), int(rng.integers(6, 30))
        freq = 1.0 / np.arange(1, n_classes + 1) ** 1.5
        labels = rng.choice(n_classes, size=150, p=rng.permutation(freq / freq.sum()))
        plugin = ReplayPlugin(memory_size=memory, seed=trial)
        plugin.before_task(ctx)
        for i, label in enumerate(labels.tolist()):
            offer(plugin, ctx, torch.tensor([[float(i)]]), torch.tensor([label]))
            if len(plugin) < memory:
                continue
            stored = np.bincount(plugin.y_.numpy(), minlength=n_classes)
            largest = stored.max()
            for c, n_c in plugin.seen_.items():
                if c in plugin._full:
                    assert stored[c] in (largest - 1, largest), (trial, i, c, stored.tolist())
                else:
                    assert stored[c] == n_c, (trial, i, c, stored.tolist())


def test_budget_is_exact_and_classes_balanced():
    plugin = ReplayPlugin(memory_size=50)
    for t in range(5):  # 5 tasks of 2 classes, 120 distinct examples per class
        ctx = make_ctx(t)
        plugin.before_task(ctx)
        for start in range(0, 240, 16):
            idx = torch.arange(start, min(start + 16, 240))
            x = torch.randn(len(idx), 3, generator=torch.Generator().manual_seed(1000 * t + start))
            offer(plugin, ctx, x, 2 * t + idx % 2)
            assert len(plugin) <= 50
    assert len(plugin) == 50 and plugin.x_.shape == (50, 3)
    assert np.bincount(plugin.y_.numpy()).tolist() == [5] * 10
    assert plugin.memory_bytes() == 50 * 3 * 4 + 2 * 50 * 8


def test_repeated_epochs_do_not_count_twice():
    plugin, ctx = ReplayPlugin(memory_size=8), make_ctx()
    plugin.before_task(ctx)
    x, y = torch.randn(20, 4), torch.arange(20) % 2
    for _ in range(3):
        offer(plugin, ctx, x, y)
    assert plugin.seen_ == {0: 10, 1: 10}


def test_within_class_reservoir_is_uniform():
    """Once a class is full, example k of n is kept with probability m/n: the stored
    indices are uniform over the stream (mean (n-1)/2, checked over 20 seeds)."""
    means = []
    for seed in range(20):
        plugin, ctx = ReplayPlugin(memory_size=10, seed=seed), make_ctx()
        plugin.before_task(ctx)
        offer(plugin, ctx, torch.arange(500.0)[:, None], torch.zeros(500, dtype=torch.long))
        means.append(plugin.x_[:, 0].mean().item())
    assert abs(np.mean(means) - 249.5) < 40  # sd of the mean ~10


def test_replay_appends_only_earlier_tasks():
    plugin = ReplayPlugin(memory_size=10, replay_batch_size=6)
    ctx0 = make_ctx(0)
    plugin.before_task(ctx0)
    x0, _ = offer(plugin, ctx0, torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]))
    assert x0.shape == (4, 2)  # nothing earlier to replay during the first task
    ctx1 = make_ctx(1)
    plugin.before_task(ctx1)
    x1, y1 = offer(plugin, ctx1, torch.ones(4, 2), torch.tensor([2, 3, 2, 3]))
    assert x1.shape == (10, 2) and set(y1[4:].tolist()) <= {0, 1}


def test_state_dict_round_trip_with_weights_only(tmp_path):
    plugin, ctx = ReplayPlugin(memory_size=6), make_ctx()
    plugin.before_task(ctx)
    offer(plugin, ctx, torch.randn(9, 1, 8, 8), torch.arange(9) % 3)
    torch.save(plugin.state_dict(), tmp_path / "s.pt")
    restored = ReplayPlugin(memory_size=6)
    restored.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert torch.equal(restored.x_[:6], plugin.x_[:6]) and torch.equal(restored.y_, plugin.y_)
    assert restored.seen_ == plugin.seen_
    with pytest.raises(ValueError, match="memory_size=6"):
        ReplayPlugin(memory_size=5).load_state_dict(plugin.state_dict())


def test_bad_replay_options():
    with pytest.raises(ValueError, match="memory_size"):
        ReplayPlugin(memory_size=0)
    with pytest.raises(TypeError, match="memory_size"):
        loading.build_plugin("replay", memory_size="big")


# -- replay: end to end ---------------------------------------------------------------
def test_replay_reduces_forgetting_of_finetune(tmp_path):
    def cli(name, *extra):
        out = tmp_path / name
        args = ["run", "--strategy", "finetune", "--set", "strategy.epochs=5", "--seed", "3",
                "--out", str(out), "--no-progress", *extra]
        assert main(args) == 0
        return json.loads((out / "results.json").read_text())

    plain = cli("plain")
    replay = cli("replay", "--plugin", "replay", "--set", "plugins.replay.memory_size=50")
    assert plain["metrics"]["forgetting"] > 0.5
    assert replay["metrics"]["forgetting"] < plain["metrics"]["forgetting"] - 0.3
    assert replay["metrics"]["average_accuracy"] > plain["metrics"]["average_accuracy"] + 0.3
    sizes = [r["replay_buffer"]["size"] for r in replay["records"]]
    assert sizes == [50] * 5
    assert replay["records"][-1]["replay_buffer"]["per_class"] == {str(c): 5 for c in range(10)}
    assert replay["compute"][1]["replayed_examples"] > 0


def test_replay_stores_images_for_image_strategies(tmp_path):
    from strategies.loading import build_strategy

    strategy = build_strategy("experiments/examples/image_strategy.py:SmallCNN", epochs=1)
    plugin = ReplayPlugin(memory_size=20)
    Runner(streams.get("split-digits", n_tasks=2), strategy, create_backbone("pixels"),
           out_dir=tmp_path / "run", progress=False, plugins=[plugin]).run()
    assert plugin.x_.shape == (20, 1, 8, 8) and len(plugin) == 20


# -- plugins by name and from code ----------------------------------------------------
def test_plugins_by_name_and_from_a_file(tmp_path):
    assert {"replay", "zero-shot-retention"} <= set(loading.available_plugins())
    assert isinstance(loading.build_plugin("replay", memory_size=3), ReplayPlugin)
    file = tmp_path / "counting.py"
    file.write_text(
        "from cl.core.plugin import Plugin\n\n"
        "class Counting(Plugin):\n"
        "    def __init__(self, *, every: int = 1):\n"
        "        self.every, self.batches = every, 0\n"
        "    def after_batch(self, loss, ctx):\n"
        "        self.batches += 1\n\n"
        "class NotAPlugin:\n"
        "    pass\n"
    )
    plugin = loading.build_plugin(f"{file}:Counting", every=2)
    assert plugin.every == 2
    with pytest.raises(TypeError, match="not a plugin: missing before_task"):
        loading.build_plugin(f"{file}:NotAPlugin")
    with pytest.raises(ValueError, match=r"Unknown plugin 'replya'.*replay"):
        loading.build_plugin("replya")


class Boom(Plugin):
    name = "boom"

    def after_task(self, ctx):
        if ctx.task_index == 2:
            raise RuntimeError("disk full")


def test_failing_plugin_is_named_and_results_so_far_are_kept(tmp_path):
    runner = Runner(streams.get("split-digits"), Finetune(epochs=1), create_backbone("pixels"),
                    out_dir=tmp_path / "run", progress=False, plugins=[Boom()])
    with pytest.raises(PluginError, match=r"plugin 'boom' failed in after_task: RuntimeError: disk full"):
        runner.run()
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "failed" and "boom" in results["error"]
    A = np.array(results["accuracy_matrix"], dtype=float)
    assert not np.isnan(A[:2]).any() and np.isnan(A[2:]).all()  # tasks 0 and 1 kept


# -- zero-shot retention ------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_vit():
    return create_backbone("cl-tiny-vit")


def test_zero_shot_retention_records_held_out_accuracy(tmp_path, tiny_vit):
    monitor = ZeroShotRetention(stream="split-digits", stream_options={"n_tasks": 2},
                                tasks=["digits-5-6-7-8-9"], max_examples=40)
    stream = streams.get("split-digits", n_tasks=5)[:2]  # trains digits 0-3, never 5-9
    results = Runner(stream, Finetune(epochs=1), tiny_vit, out_dir=tmp_path / "run",
                     progress=False, plugins=[monitor]).run().results
    held = streams.get("split-digits", n_tasks=2)[1]
    expected = zero_shot_accuracy(tiny_vit, held, max_examples=40)
    assert 0.0 <= expected <= 1.0
    assert results["records"][0]["zero_shot_retention_before"] == {"digits-5-6-7-8-9": expected}
    for record in results["records"]:  # frozen backbone: retention is constant
        assert record["zero_shot_retention"] == {"digits-5-6-7-8-9": expected}


def test_zero_shot_accuracy_is_the_zero_shot_head_argmax(tiny_vit):
    from cl.models.prompts import zero_shot_head

    task = streams.get("split-digits", n_tasks=2)[0]
    data = task.load_test()
    images = torch.stack([tiny_vit.preprocess(data[i][0]) for i in range(30)])
    labels = torch.tensor([int(data[i][1]) for i in range(30)])
    feats = torch.nn.functional.normalize(tiny_vit.encode_images(images).float(), dim=-1)
    head = zero_shot_head(tiny_vit, list(task.class_names), list(task.templates))
    expected = float((feats @ head.T).argmax(1).eq(labels).float().mean())
    assert zero_shot_accuracy(tiny_vit, task, max_examples=30) == pytest.approx(expected)


def test_zero_shot_retention_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"not in stream 'split-digits'.*digits-0-1"):
        ZeroShotRetention(tasks=["cifar"])
    monitor = ZeroShotRetention(tasks=["digits-0-1"])
    with pytest.raises(ValueError, match="text tower"):
        monitor.measure(make_ctx())
    assert "zero-shot-retention" in PLUGINS


def test_zero_shot_retention_follows_the_adapted_backbone(tmp_path):
    """A strategy that changes the image and text towers (as LoRA does): the monitor scores the
    changed backbone, not a cached head or cached features."""
    from cl.core.strategy import Strategy

    class Perturb(Strategy):
        def train_task(self, data, ctx):
            g = torch.Generator().manual_seed(ctx.task_index)
            with torch.no_grad():
                for p in ctx.backbone.model.parameters():
                    p.add_(0.3 * p.abs().mean() * torch.randn(p.shape, generator=g))

        def predict(self, inputs, label_space, ctx):
            return torch.zeros(len(inputs), len(label_space))

    backbone = create_backbone("cl-tiny-vit")
    monitor = ZeroShotRetention(stream="synthetic-nevis", stream_options={"n_tasks": 2, "max_classes": 10},
                                max_examples=60)
    results = Runner(streams.get("split-digits", n_tasks=5)[:3], Perturb(), backbone,
                     out_dir=tmp_path / "run", progress=False, plugins=[monitor]).run().results
    rows = [results["records"][0]["zero_shot_retention_before"]]
    rows += [r["zero_shot_retention"] for r in results["records"]]
    assert len({json.dumps(r, sort_keys=True) for r in rows}) > 1
    assert rows[-1] == {t.name: zero_shot_accuracy(backbone, t, max_examples=60) for t in monitor.tasks}


def test_replay_with_finetune_on_a_task_incremental_stream(tmp_path):
    """Replayed old-task labels lie outside a task-incremental training label space."""
    from cl.cli import main as cli_main

    out = tmp_path / "til"
    assert cli_main(["run", "--no-progress", "--out", str(out), "--stream", "synthetic-nevis",
                     "--set", "stream.n_tasks=3", "--set", "stream.max_classes=5",
                     "--strategy", "finetune", "--set", "strategy.epochs=2",
                     "--plugin", "replay", "--set", "plugins.replay.memory_size=20"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["scenario"] == "task-incremental" and results["status"] == "completed"


def test_after_train_gives_plugins_the_task_data_the_strategy_got(tmp_path):
    """A plugin computing class means from ``after_train`` sees exactly the training features
    (the NMC strategy's own statistics are the independent check)."""
    import numpy as np

    from cl.core.strategy import TaskData
    from strategies.heads.nmc import NMCStrategy

    class ClassMeans(Plugin):
        def __init__(self):
            self.means, self.calls = {}, []

        def after_train(self, data: TaskData, ctx) -> None:
            self.calls.append((ctx.task_index, data.features.shape, data.dataset is None))
            for c in data.targets.unique().tolist():
                self.means[c] = data.features[data.targets == c].double().mean(0).numpy()

    plugin = ClassMeans()
    strategy = NMCStrategy(normalize=False, metric="euclidean")
    Runner(streams.get("split-digits", n_tasks=2), strategy, create_backbone("pixels"),
           out_dir=tmp_path / "r", plugins=[plugin], progress=False).run()
    assert [c[0] for c in plugin.calls] == [0, 1] and all(c[1][1] == 64 and c[2] for c in plugin.calls)
    np.testing.assert_allclose(np.stack([plugin.means[c] for c in range(10)]),
                               strategy.model.means_, rtol=1e-12)
