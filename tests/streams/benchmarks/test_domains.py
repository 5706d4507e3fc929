"""``domain-digits``: the same ten digits under a new image domain each session (offline)."""

import math

import numpy as np
import pytest
from sklearn.datasets import load_digits

import streams

N_TEST = math.ceil(0.3 * 1797)  # scikit-learn's train_test_split rounds the test part up


def _pixels(ds):
    return np.stack([np.asarray(ds[i][0]) for i in range(len(ds))]).astype(int)


def test_sessions_share_the_classes_and_hold_disjoint_new_instances():
    s = streams.get("domain-digits")
    assert s.scenario == "domain-incremental" and len(s) == 5 and s.n_classes == 10
    assert s.task_names == ("session-0-original", "session-1-inverted", "session-2-low-contrast",
                            "session-3-rotated", "session-4-noisy")
    assert all(t.class_names == tuple("0123456789") for t in s)
    trains = [s[t].load_train() for t in range(5)]
    assert sum(len(d) for d in trains) == 1797 - N_TEST  # the whole train split, once
    # every session holds every class, in proportion (stratified parts)
    for d in trains:
        assert np.bincount(d.labels, minlength=10).min() >= 20
    # parts are disjoint: undo each session's exact transform and compare with sklearn's digits
    raw = {np.round(x * 255 / 16).astype(np.uint8).tobytes() for x in load_digits().images}
    original = _pixels(trains[0]).astype(np.uint8)
    inverted = (255 - _pixels(trains[1])).astype(np.uint8)
    rotated = np.rot90(_pixels(trains[3]), k=-1, axes=(1, 2)).astype(np.uint8)
    for images in (original, inverted, rotated):
        assert all(x.tobytes() in raw for x in images)
    seen = [{x.tobytes() for x in images} for images in (original, inverted, rotated)]
    assert not seen[0] & seen[1] and not seen[1] & seen[2]


def test_each_session_tests_the_whole_test_split_in_its_domain():
    s = streams.get("domain-digits", domains=["original", "low-contrast"])
    a, b = _pixels(s[0].load_test()), _pixels(s[1].load_test())
    assert len(a) == len(b) == N_TEST
    np.testing.assert_array_equal(b, np.clip(np.round(0.35 * a + 140), 0, 255))
    assert s[0].load_test().labels.tolist() == s[1].load_test().labels.tolist()


def test_bad_domains_are_named():
    with pytest.raises(ValueError, match="distinct names from"):
        streams.get("domain-digits", domains=["original", "sepia"])
    with pytest.raises(ValueError, match="distinct names from"):
        streams.get("domain-digits", domains=["original", "original"])
