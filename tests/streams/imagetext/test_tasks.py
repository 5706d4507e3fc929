"""Image-text tasks: no class names, one kind per stream, evaluation-only and shared test sets."""

import pytest

from streams.core import Stream, Task
from streams.imagetext.tasks import image_text_stream, image_text_task, is_trained


def _none():
    raise AssertionError("defining a task must load nothing")


def test_an_image_text_task_has_no_classes_and_says_how_it_is_scored():
    task = image_text_task("phase-1", _none, _none, test_key="shared", trained=False)
    assert task.kind == "image-text" and task.class_names == () and task.n_classes == 0
    assert task.metadata["test_key"] == "shared" and not is_trained(task)
    stream = image_text_stream("s", [task, image_text_task("phase-2", _none, _none)])
    assert stream.kind == "image-text" and stream.n_classes == 0
    assert stream.eval_tasks(0, 1) == (0,)
    with pytest.raises(ValueError, match="no class names|no classes"):
        Task("cls", (), _none, _none)  # a classification task still needs its classes


def test_kinds_do_not_mix_and_a_stream_must_train_something():
    cls = Task("digits", ("0", "1"), _none, _none)
    pairs = image_text_task("pairs", _none, _none)
    with pytest.raises(ValueError, match="mixes task kinds"):
        Stream("mixed", (cls, pairs))
    with pytest.raises(ValueError, match="not image-text"):
        image_text_stream("wrong", [cls])
    with pytest.raises(ValueError, match="no task to train"):
        image_text_stream("idle", [image_text_task("a", _none, _none, trained=False)])
    with pytest.raises(ValueError, match="unknown kind"):
        Task("x", ("a",), _none, _none, kind="video")
    with pytest.raises(TypeError, match="trained"):
        image_text_task("a", _none, _none, trained="yes")
