"""Avalanche strategies as baselines: they run on split-digits with our runner, and our
tracker's numbers equal avalanche's own EvaluationPlugin metrics on the same run."""

import json

import numpy as np
import pytest
import torch

import strategies
import streams
from cl.cli import main
from cl.core.metrics import backward_transfer, forgetting_after_training
from cl.core.plugin import Plugin
from cl.core.runner import Runner
from cl.models.backbones import create_backbone
from strategies.avalanche import AvalancheStrategy, make_stream

pytestmark = [pytest.mark.filterwarnings("ignore:No loggers specified"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def run(strategy, tmp_path, plugins=()):
    runner = Runner(streams.get("split-digits"), strategy, create_backbone("pixels"),
                    out_dir=tmp_path / "run", progress=False, plugins=plugins)
    return runner.run().results


@pytest.mark.parametrize("name, options", [
    ("Naive", {}),
    ("LwF", {"alpha": 1.0, "temperature": 2.0}),
    ("ICaRL", {"memory_size": 100, "buffer_transform": None, "fixed_memory": True,
               "inputs": "images"}),
])
def test_avalanche_strategies_run_on_split_digits(tmp_path, name, options):
    strategy = strategies.get(f"avalanche:{name}", epochs=1, **options)
    results = run(strategy, tmp_path)
    A = np.array(results["accuracy_matrix"])
    assert results["status"] == "completed" and A.shape == (5, 5)
    assert np.diag(A).mean() > 0.8  # each task is learned
    assert type(strategy.avalanche).__name__ == name
    own = {"inputs"}
    assert strategy.strategy_options == {k: v for k, v in options.items() if k not in own}
    assert results["compute"][0]["examples_seen"] > 0


def test_cli_avalanche_ewc_with_set_option(tmp_path):
    out = tmp_path / "ewc"
    code = main(["run", "--strategy", "avalanche:EWC", "--set", "strategy.ewc_lambda=0.4",
                 "--set", "strategy.epochs=1", "--out", str(out), "--no-progress"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["strategy"] == "avalanche:EWC"
    assert np.diag(np.array(results["accuracy_matrix"])).mean() > 0.8


class AvalancheEval(Plugin):
    """After each evaluation row, let avalanche evaluate the same model on the same test data."""

    name = "avalanche-eval"

    def __init__(self, strategy: AvalancheStrategy) -> None:
        self.strategy, self.rows = strategy, []
        self.test_stream = None

    def after_eval(self, ctx, accuracies):
        if self.test_stream is None:
            from avalanche.benchmarks.scenarios import with_task_labels

            from streams.avalanche_interop import to_avalanche

            # images and targets as avalanche sees them (to_avalanche)
            bench = to_avalanche(ctx.stream, transform=ctx.backbone.preprocess)
            if self.strategy.inputs == "images":
                self.test_stream = with_task_labels(bench.test_stream)
                self.rows.append(dict(self.strategy.avalanche.eval(self.test_stream, num_workers=0)))
                return
            xs, ys = [], []  # the head's inputs: the backbone's encodings of those images
            for exp in bench.test_stream:
                data = exp.dataset.eval()
                images = torch.stack([data[i][0] for i in range(len(data))])
                xs.append(ctx.backbone.encode_images(images))
                ys.append(torch.tensor(list(data.targets)))
            self.test_stream = make_stream(xs, ys)
        self.rows.append(dict(self.strategy.avalanche.eval(self.test_stream, num_workers=0)))


@pytest.mark.parametrize("inputs", ["features", "images"])
def test_tracker_agrees_with_avalanche_evaluation_plugin(tmp_path, inputs):
    from avalanche.evaluation.metrics import accuracy_metrics, bwt_metrics, forgetting_metrics
    from avalanche.training.plugins import EvaluationPlugin

    evaluator = EvaluationPlugin(accuracy_metrics(experience=True),
                                 forgetting_metrics(stream=True), bwt_metrics(stream=True),
                                 loggers=[])
    # Replay keeps old tasks partly right, so the whole matrix is non-trivial
    strategy = AvalancheStrategy("Replay", mem_size=60, epochs=2, evaluator=evaluator,
                                 inputs=inputs)
    probe = AvalancheEval(strategy)
    results = run(strategy, tmp_path, plugins=[probe])
    ours = np.array(results["accuracy_matrix"])
    theirs = np.array([[row[f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{j:03d}"]
                        for j in range(5)] for row in probe.rows])
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert 0.05 < ours[-1, :-1].mean() < 0.95  # old tasks neither forgotten nor perfect
    last = probe.rows[-1]
    assert last["StreamForgetting/eval_phase/test_stream"] == pytest.approx(
        forgetting_after_training(ours), abs=1e-6)
    assert results["metrics"]["forgetting_after_training"] == pytest.approx(
        last["StreamForgetting/eval_phase/test_stream"], abs=1e-6)
    assert last["StreamBWT/eval_phase/test_stream"] == pytest.approx(backward_transfer(ours), abs=1e-6)


def test_unknown_avalanche_name_lists_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown avalanche strategy 'EWCC'.*EWC.*LwF.*Naive"):
        strategies.get("avalanche:EWCC")


def test_avalanche_options_are_validated():
    with pytest.raises(ValueError, match=r"no option 'lambda'.*ewc_lambda.*Wrapper options:.*epochs"):
        strategies.get("avalanche:EWC", **{"lambda": 0.4})
    with pytest.raises(TypeError, match=r"'ewc_lambda' expects a number"):
        strategies.get("avalanche:EWC", ewc_lambda="strong")
    with pytest.raises(TypeError, match="avalanche strategy name, class or object"):
        AvalancheStrategy(42)


def test_our_replay_plugin_applies_to_avalanche_minibatches(tmp_path):
    from strategies.plugins.replay import ReplayPlugin

    plain = run(AvalancheStrategy("Naive", epochs=2), tmp_path / "plain")
    plugin = ReplayPlugin(memory_size=50)
    replayed = run(AvalancheStrategy("Naive", epochs=2), tmp_path / "replay", plugins=[plugin])
    assert len(plugin) == 50
    assert replayed["compute"][1]["replayed_examples"] > 0
    assert replayed["metrics"]["forgetting"] < plain["metrics"]["forgetting"] - 0.3


class FailBefore(Plugin):
    name = "fail-before"

    def __init__(self, task: int) -> None:
        self.task = task

    def before_task(self, ctx):
        if ctx.task_index == self.task:
            raise RuntimeError("killed")


def test_naive_resumes_exactly_and_stateful_strategies_refuse(tmp_path):
    from cl.errors import PluginError

    reference = run(AvalancheStrategy("Naive", epochs=1), tmp_path / "ref")
    out = tmp_path / "crash"
    with pytest.raises(PluginError):
        Runner(streams.get("split-digits"), AvalancheStrategy("Naive", epochs=1),
               create_backbone("pixels"), out_dir=out, progress=False,
               plugins=[FailBefore(3)]).run()
    resumed = Runner(streams.get("split-digits"), AvalancheStrategy("Naive", epochs=1),
                     create_backbone("pixels"), out_dir=out, progress=False,
                     plugins=[FailBefore(-1)]).run().results
    np.testing.assert_allclose(resumed["accuracy_matrix"], reference["accuracy_matrix"], atol=1e-12)
    state = AvalancheStrategy("Naive", epochs=1)
    state.classes = [{0, 1}]
    with pytest.raises(ValueError, match="resume works for a fresh Naive only"):
        AvalancheStrategy("EWC", ewc_lambda=0.4).load_state_dict(state.state_dict())
