"""Image-text tasks and streams: images with captions, scored by retrieval.

An image-text :class:`~streams.core.Task` (``kind="image-text"``) has no class
names; its loaders give :class:`~streams.imagetext.dataset.ImageTextDataset`\\ s.
What the runner and the retrieval evaluation (:mod:`cl.core.retrieval_eval`)
read from its ``metadata``:

``"trained"`` (default True)
    False for an evaluation-only phase: scored at every step, never trained on
    (Mod-X's COCO phase for its ViT-B/32, which starts from OpenAI CLIP).
``"test_key"``
    Tasks with equal keys share one test set, embedded once per evaluation
    (Mod-X's five Flickr30K phases share the Flickr30K test set).
``"load_query_gallery"``
    A zero-argument callable returning ``(query, gallery)`` image-text datasets
    with ``categories``: CTP's multimodal retrieval sets, scored by mAP@K.
``"expected_path"``, ``"data_check"``
    Where the data is expected and a file-system check, as for every stream over
    external data (:mod:`streams.availability`).

The stream's scenario chooses the retrieval gallery of task ``j`` after task
``t`` (:meth:`streams.core.Stream.eval_tasks`): its own test set when
task-incremental (Mod-X), the union of the test sets of tasks ``0..max(t, j)``
when class-incremental (CTP), of every task when task-agnostic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from streams.core import Scenario, Stream, Task

if TYPE_CHECKING:
    from streams.imagetext.dataset import ImageTextDataset

__all__ = ["image_text_stream", "image_text_task", "is_trained", "query_gallery_loader"]

PairsLoader = Callable[[], "ImageTextDataset"]
QueryGalleryLoader = Callable[[], "tuple[ImageTextDataset, ImageTextDataset]"]


def image_text_task(
    name: str,
    load_train: PairsLoader,
    load_test: PairsLoader,
    *,
    key: str = "",
    trained: bool = True,
    test_key: str | None = None,
    load_query_gallery: QueryGalleryLoader | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Task:
    """An image-text task (see the module docstring for the metadata it sets).

    Parameters
    ----------
    name : str
    load_train, load_test : callable returning ImageTextDataset
        Lazy loaders of the training pairs and the retrieval test set.
    key : str
        Stable identity of the task's data (default: ``name``).
    trained : bool
        False for an evaluation-only task.
    test_key : str or None
        Identity of the test set, shared by tasks with one test set.
    load_query_gallery : callable or None
        Multimodal retrieval sets ``(query, gallery)`` with categories (mAP@K).
    metadata : mapping or None
        Further facts (``expected_path``, ``data_check``...).
    """
    if not isinstance(trained, bool):
        raise TypeError(f"image-text task {name!r}: trained must be a bool, got {trained!r}.")
    if load_query_gallery is not None and not callable(load_query_gallery):
        raise TypeError(f"image-text task {name!r}: load_query_gallery must be a callable.")
    meta = dict(metadata or {})
    meta.update(trained=trained, task_kind="image-text")
    if test_key is not None:
        meta["test_key"] = test_key
    if load_query_gallery is not None:
        meta["load_query_gallery"] = load_query_gallery
    return Task(name=name, class_names=(), load_train=load_train, load_test=load_test,
                key=key or name, metadata=meta, kind="image-text")


def image_text_stream(name: str, tasks: Sequence[Task], scenario: Scenario = "task-incremental",
                      metadata: Mapping[str, Any] | None = None) -> Stream:
    """A stream of image-text tasks.

    Raises
    ------
    ValueError
        A task is not an image-text task, or no task is trained.
    """
    wrong = [t.name for t in tasks if t.kind != "image-text"]
    if wrong:
        raise ValueError(f"image-text stream {name!r}: tasks {wrong[:5]} are not image-text tasks; "
                         "build them with streams.imagetext.tasks.image_text_task.")
    if tasks and not any(is_trained(t) for t in tasks):
        raise ValueError(f"image-text stream {name!r} has no task to train (every task has "
                         "trained=False).")
    return Stream(name, tuple(tasks), scenario, metadata or {})


def is_trained(task: Task) -> bool:
    """Whether ``task`` is trained on (False for an evaluation-only image-text task)."""
    return bool(task.metadata.get("trained", True))


def query_gallery_loader(task: Task) -> QueryGalleryLoader | None:
    """The task's multimodal retrieval loader (``metadata["load_query_gallery"]``), if any."""
    return task.metadata.get("load_query_gallery")
