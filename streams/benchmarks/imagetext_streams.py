"""The published image-text protocols as streams: ``coco-flickr`` (Mod-X) and ``p9d`` (CTP).

Each phase of :mod:`streams.benchmarks.imagetext_protocols` becomes an image-text
task (:func:`streams.imagetext.tasks.image_text_task`) whose loaders read under
the data root, with ``expected_path`` and a ``data_check`` of the files its
phase needs (only its test files for an evaluation-only phase), so that
``cl streams check coco-flickr --data-root DIR`` lists what is missing and where
to put it, as for NEVIS'22. Defining the stream reads nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from streams.benchmarks.imagetext_protocols import ImageTextProtocol, Phase, coco_flickr, p9d
from streams.core import Stream
from streams.imagetext.tasks import image_text_stream, image_text_task

__all__ = ["coco_flickr_stream", "p9d_stream", "protocol_stream"]


def _task(protocol: ImageTextProtocol, phase: Phase, root: Path):
    needs = phase.needs if phase.trained else (phase.test_needs or phase.needs)
    kinds = {p.relative: p for p in protocol.paths}
    top = Path(needs[0]).parts[0]

    def data_check() -> tuple[bool, str | None, str]:
        absent = [rel for rel in needs if rel in kinds and not kinds[rel].present(root)]
        if absent:
            return False, None, f"missing {', '.join(absent)} (where to get them: docs/imagetext.md)"
        return True, str(root / top), "evaluation only" if not phase.trained else "image-text"

    query_gallery = None
    if phase.load_query_gallery is not None:
        load_qg = phase.load_query_gallery

        def query_gallery():
            return load_qg(root)

    return image_text_task(
        phase.name,
        lambda: phase.load_train(root),
        lambda: phase.load_test(root),
        key=f"{protocol.name}:{phase.name}:{root.resolve()}",
        trained=phase.trained,
        test_key=f"{phase.test_key}:{root.resolve()}",
        load_query_gallery=query_gallery,
        metadata={"expected_path": str(root / top), "data_check": data_check,
                  "description": phase.description, "needs": list(needs),
                  "expected_test_pairs": phase.expected_test_pairs},
    )


def protocol_stream(protocol: ImageTextProtocol, data_root: str | Path | None) -> Stream:
    """The stream of ``protocol``'s phases over files under ``data_root`` (default ``./data``)."""
    root = Path(data_root or "data")
    tasks = [_task(protocol, phase, root) for phase in protocol.phases]
    return image_text_stream(protocol.name, tasks, protocol.scenario,
                             {"paper": protocol.paper, "reference": protocol.reference,
                              "download": protocol.download, "scores": list(protocol.scores)})


def coco_flickr_stream(*, coco_phase: Literal["train", "evaluate"] = "train",
                       data_root: str | Path | None = None) -> Stream:
    """Mod-X's COCO then Flickr30K protocol, 6 task-incremental phases
    (:func:`streams.benchmarks.imagetext_protocols.coco_flickr`).

    Parameters
    ----------
    coco_phase : {"train", "evaluate"}
        Train on the COCO phase (Mod-X's RN50) or only evaluate it (its ViT-B/32).
    data_root : path or None
        Holds ``coco/`` and ``flickr30k/`` (``cl streams check coco-flickr``).
    """
    return protocol_stream(coco_flickr(coco_phase), data_root)


def p9d_stream(*, order: Literal["default", "reverse"] = "default",
               data_root: str | Path | None = None) -> Stream:
    """CTP's P9D protocol, 9 industries scored on the union of seen test sets
    (:func:`streams.benchmarks.imagetext_protocols.p9d`).

    Parameters
    ----------
    order : {"default", "reverse"}
        CTP's task order or its reverse.
    data_root : path or None
        Holds ``p9d/`` (``cl streams check p9d``).
    """
    return protocol_stream(p9d(order), data_root)
