"""A tracker of several named scores: one matrix per score, the primary one in the accuracy
keys, restored exactly from a checkpoint and checked when results.json is read."""

import json

import numpy as np
import pytest

from cl import metrics
from cl.core.results import RunInfo, build_results, check_results, load_results, write_results
from cl.core.retrieval import image_text_recall, recall_at_k
from cl.core.tracker import Tracker
from cl.errors import IntegrityError
from cl.runtime.integrity import seal

SCORES = ("i2t_recall@1", "mean_recall")


def _filled() -> Tracker:
    tr = Tracker(["a", "b"], score="mean_recall", scores=SCORES)
    tr.record_scores(None, 0, {"i2t_recall@1": 0.1, "mean_recall": 0.2})
    tr.record_scores(None, 1, {"i2t_recall@1": 0.3, "mean_recall": 0.4})
    for row, values in ((0, (0.9, 0.8, 0.5, 0.6)), (1, (0.5, 0.7, 0.6, 0.9))):
        tr.record_scores(row, 0, {"i2t_recall@1": values[0], "mean_recall": values[1]})
        tr.record_scores(row, 1, {"i2t_recall@1": values[2], "mean_recall": values[3]})
    return tr


def test_the_primary_score_is_the_matrix_every_metric_reads():
    tr = _filled()
    assert tr.matrix is tr.scores["mean_recall"] and tr.several_scores
    np.testing.assert_array_equal(tr.matrix, [[0.8, 0.6], [0.7, 0.9]])
    assert tr.summary()["backward_transfer"] == pytest.approx(0.7 - 0.8)
    summaries = tr.score_summaries()
    assert summaries["i2t_recall@1"]["backward_transfer"] == pytest.approx(0.5 - 0.9)
    assert summaries["i2t_recall@1"]["forward_transfer"] == pytest.approx(0.5 - 0.3)
    assert summaries["mean_recall"] == pytest.approx(tr.summary(), nan_ok=True)
    assert not Tracker(["a"]).several_scores  # classification: accuracy only


def test_scores_round_trip_through_a_checkpoint_state():
    tr = _filled()
    back = Tracker.from_dict(json.loads(json.dumps(tr.to_dict())))
    assert back.score == "mean_recall" and back.score_names == SCORES
    for name in SCORES:
        np.testing.assert_array_equal(back.scores[name], tr.scores[name])
        np.testing.assert_array_equal(back.zero_shot_scores[name], tr.zero_shot_scores[name])
    assert back.matrix is back.scores["mean_recall"]


def test_bad_scores_are_refused():
    with pytest.raises(ValueError, match="primary"):
        Tracker(["a"], score="mean_recall", scores=("i2t_recall@1",))
    tr = Tracker(["a"], score="mean_recall", scores=SCORES)
    with pytest.raises(ValueError, match="do not match"):
        tr.record_scores(0, 0, {"mean_recall": 0.5})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tr.record_scores(0, 0, {"mean_recall": 50.0, "i2t_recall@1": 0.5})


def test_results_hold_one_matrix_per_score_and_are_checked(tmp_path):
    info = RunInfo(stream="s", strategy="x", backbone="b", backbone_fingerprint="f", seed=0,
                   scenario="task-incremental", class_names=[[], []], years=[None, None])
    res = build_results(_filled(), info, status="completed")
    assert res["score"] == "mean_recall"
    assert res["scores"]["i2t_recall@1"] == [[0.9, 0.5], [0.5, 0.6]]
    assert res["zero_shot_scores"]["i2t_recall@1"] == [0.1, 0.3]
    assert res["accuracy_matrix"] == res["scores"]["mean_recall"]
    assert res["score_metrics"]["i2t_recall@1"]["average_accuracy"] == pytest.approx(0.55)
    write_results(tmp_path, res)
    assert load_results(tmp_path)["scores"] == res["scores"]
    bad = json.loads(json.dumps(res))
    bad["scores"]["i2t_recall@1"][0][0] = 90.0  # percent, not a fraction
    with pytest.raises(ValueError, match="i2t_recall@1"):
        check_results(bad)
    (tmp_path / "results.json").write_text(json.dumps(seal(bad)))
    with pytest.raises(ValueError, match="scores"):
        load_results(tmp_path)
    tampered = seal(build_results(_filled(), info, status="completed"))  # then edited:
    tampered["scores"]["mean_recall"][0][0] = 0.0
    (tmp_path / "results.json").write_text(json.dumps(tampered))
    with pytest.raises(IntegrityError):
        load_results(tmp_path)


def test_recall_at_k_is_public_in_cl_metrics():
    assert metrics.recall_at_k is recall_at_k and metrics.image_text_recall is image_text_recall
    # 2 images x 4 captions (two each): image 0 owns captions 0, 1; image 1 owns 2, 3
    S = np.array([[0.1, 0.9, 0.8, 0.2],
                  [0.7, 0.3, 0.6, 0.5]])
    positives = [{0, 1}, {2, 3}]
    assert metrics.recall_at_k(S, positives, 1) == 0.5  # image 1's best is caption 0 (a miss)
    assert metrics.recall_at_k(S, positives, 2) == 1.0  # caption 2 comes second
