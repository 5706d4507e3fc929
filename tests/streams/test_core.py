"""Task / Stream / LabelSpace behaviour users rely on."""

import pytest
import torch

import streams
from streams.core import Stream, Task


def _task(name, classes=("a", "b"), year=None):
    return Task(name, classes, load_train=list, load_test=list, year=year)


def test_stream_is_an_immutable_sequence_that_iterates_twice_and_slices():
    s = Stream("s", (_task("t0", ("a",)), _task("t1", ("b",)), _task("t2", ("c",))))
    assert len(s) == 3 and s[1].name == "t1"
    assert [t.name for t in s] == [t.name for t in s] == ["t0", "t1", "t2"]
    sub = s[1:]
    assert isinstance(sub, Stream) and sub.task_names == ("t1", "t2")
    with pytest.raises(AttributeError):
        s.name = "other"


def test_global_class_ids_and_label_spaces_per_scenario():
    tasks = (_task("t0", ("a", "b")), _task("t1", ("c",)), _task("t2", ("f", "d", "e")))
    ci = Stream("ci", tasks, "class-incremental")
    assert ci.class_offsets == (0, 2, 3) and ci.n_classes == 6
    assert ci.eval_label_space(0, trained_through=1).class_ids == (0, 1, 2)
    assert ci.eval_label_space(2, trained_through=None).class_ids == tuple(range(6))
    assert ci.train_label_space(1).class_names == ("a", "b", "c")
    ti = Stream("ti", tasks, "task-incremental")
    assert ti.eval_label_space(2, trained_through=0).class_ids == (3, 4, 5)
    ta = Stream("ta", tasks, "task-agnostic")
    assert ta.eval_label_space(0, trained_through=0).class_ids == tuple(range(6))
    space = ci.task_label_space([2])
    assert space.index_of([5, 3]) == [2, 0]
    with pytest.raises(ValueError, match="not in this label space"):
        space.index_of([0])


def test_chronological_sorts_by_year_stably():
    s = Stream.chronological("c", [_task("b", year=2005), _task("a", year=1999),
                                   _task("c", year=2005)])
    assert s.task_names == ("a", "b", "c")
    with pytest.raises(ValueError, match="year"):
        Stream.chronological("c", [_task("x")])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: _task("t", classes=()), "no classes"),
        (lambda: _task("t", classes=("a", "a")), "duplicate class"),
        (lambda: Task("t", ("a",), list, list, templates=("no slot",)), "slot"),
        (lambda: Stream("s", ()), "no tasks"),
        (lambda: Stream("s", (_task("t"), _task("t"))), "duplicate task"),
        (lambda: Stream("s", (_task("t"),), "online"), "scenario"),
    ],
)
def test_bad_definitions_fail_with_a_message(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_split_digits_is_a_fixed_offline_class_incremental_stream():
    s = streams.get("split-digits")
    assert len(s) == 5 and s.scenario == "class-incremental"
    assert [t.class_names for t in s][:2] == [("0", "1"), ("2", "3")]
    train, test = s[0].load_train(), s[0].load_test()
    assert len(train) > len(test) > 0
    labels = {int(train[i][1]) for i in range(len(train))}
    assert labels == {0, 1}
    again = streams.get("split-digits")[0].load_train()
    assert torch.equal(torch.tensor(train.images), torch.tensor(again.images))
    shuffled = streams.get("split-digits", class_order_seed=3)
    assert shuffled.metadata["class_order"] != list(range(10))


def test_unknown_stream_and_bad_stream_option_are_clear():
    with pytest.raises(ValueError, match="Unknown stream 'split-digit'.*Did you mean 'split-digits'"):
        streams.get("split-digit")
    with pytest.raises(ValueError, match="no option 'tasks'.*n_tasks"):
        streams.get("split-digits", tasks=5)
    with pytest.raises(TypeError, match="n_tasks.*integer"):
        streams.get("split-digits", n_tasks="five")
    with pytest.raises(ValueError, match="divide 10"):
        streams.get("split-digits", n_tasks=3)


def test_domain_incremental_tasks_share_one_label_space():
    tasks = (_task("s0", ("a", "b", "c")), _task("s1", ("a", "b", "c")), _task("s2", ("a", "b", "c")))
    di = Stream("di", tasks, "domain-incremental")
    assert di.class_offsets == (0, 0, 0) and di.n_classes == 3
    for t in range(3):
        assert di.train_label_space(t).class_ids == (0, 1, 2)
        for row in (None, 0, 2):
            assert di.eval_label_space(t, row).class_names == ("a", "b", "c")
    assert di.task_label_space(range(3)).class_ids == (0, 1, 2)  # shared classes appear once
    with pytest.raises(ValueError, match="task 't1' has classes.*same class names in the same order"):
        Stream("bad", (_task("t0", ("a", "b")), _task("t1", ("b", "a"))), "domain-incremental")


def test_dev_split_is_loaded_where_a_task_defines_one():
    task = Task("t", ("a",), list, list, load_dev=lambda: ["dev"])
    assert task.has_dev and task.load("dev") == ["dev"]
    with pytest.raises(ValueError, match="no dev split; carve one"):
        _task("u").load("dev")
    with pytest.raises(ValueError, match="'train', 'dev' or 'test'"):
        task.load("val")
