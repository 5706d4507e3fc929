"""What the runner does for image-text streams: training pairs, and retrieval scores per task.

An image-text stream (:attr:`streams.core.Stream.kind` ``"image-text"``) is
scored by image-text retrieval instead of top-1 accuracy. After every training
step (and once before training, the zero-shot row) :class:`RetrievalEvaluator`
embeds each task's test set with the strategy's current model
(``strategy.embed_images``, ``strategy.embed_texts``) and records, for every
task ``j``, the scores of :func:`cl.core.retrieval.image_text_recall`:
``i2t_recall@{1,5,10}``, ``t2i_recall@{1,5,10}``, their means and
``mean_recall`` (the primary score, CTP's ``r_mean``), plus CTP's multimodal
``map@{1,5,10}`` (:func:`cl.core.retrieval.multimodal_map_at_k`) when every
task has query and gallery sets with categories.

The gallery
-----------
The stream's scenario chooses it through :meth:`streams.core.Stream.eval_tasks`:
task-incremental (Mod-X): task ``j``'s own test set; class-incremental (CTP):
the union of the test sets of tasks ``0..max(t, j)`` (ranked once per query of
task ``j`` against the whole union, whose other pairs are non-hits); task-agnostic:
every task's. A test set shared by several tasks (equal ``test_key``) is embedded
once per row and enters a union once. mAP@K ranks task ``j``'s queries against the
union of the galleries of the same tasks.

Strategies for image-text streams implement ``embed_images(images, ctx)``
((N, 3, H, W) preprocessed → (N, D)) and ``embed_texts(texts, ctx)`` (M strings →
(M, D)); embeddings are L2-normalised here. ``embed_pairs(images, texts, ctx)``
gives CTP's multimodal item embedding; without it the item embedding is the
normalised sum of the normalised image and text embeddings (a deviation: CTP
embeds an item with its fusion encoder, which a dual encoder lacks).

Under ``torchrun`` each rank embeds a strided shard of every set; the shards are
gathered, so every rank computes the same scores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from cl.core.compute import ComputeMeter
from cl.core.retrieval import first_hit_ranks, multimodal_map_at_k
from cl.core.strategy import Context, Strategy, TaskData
from cl.core.tracker import Tracker
from cl.errors import ProtocolError
from cl.models.backbones import Backbone
from cl.runtime import distributed
from cl.runtime.data import loader
from streams.core import Stream, Task
from streams.imagetext.dataset import ImageTextDataset
from streams.imagetext.tasks import is_trained, query_gallery_loader

__all__ = ["KS", "MAP_KS", "PRIMARY", "RetrievalEvaluator", "recall_scores", "score_names"]

KS: tuple[int, ...] = (1, 5, 10)
MAP_KS: tuple[int, ...] = (1, 5, 10)
PRIMARY = "mean_recall"
_TEXT_BATCH = 256


def score_names(with_map: bool) -> tuple[str, ...]:
    """The scores an image-text run records, in ``results.json`` order."""
    names = [f"{d}_recall@{k}" for d in ("i2t", "t2i") for k in KS]
    names += ["i2t_mean_recall", "t2i_mean_recall", PRIMARY]
    return tuple(names + ([f"map@{k}" for k in MAP_KS] if with_map else []))


def recall_scores(i2t_ranks: np.ndarray, t2i_ranks: np.ndarray) -> dict[str, float]:
    """Recall@K and mean recalls from the 0-based first-hit ranks of both directions
    (:func:`cl.core.retrieval.first_hit_ranks`), as :func:`~cl.core.retrieval.image_text_recall`
    computes them: ``R@K = mean_q [rank_q < K]``."""
    out: dict[str, float] = {}
    for direction, ranks in (("i2t", i2t_ranks), ("t2i", t2i_ranks)):
        for k in KS:
            out[f"{direction}_recall@{k}"] = float(np.mean(ranks < k))
        out[f"{direction}_mean_recall"] = float(np.mean([out[f"{direction}_recall@{k}"] for k in KS]))
    out[PRIMARY] = (out["i2t_mean_recall"] + out["t2i_mean_recall"]) / 2
    return out


class _Images(Dataset):
    """The transformed images of an image-text dataset, without their captions."""

    def __init__(self, data: ImageTextDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Any:
        return self.data[index][0]


class _Embedded:
    """One set's normalised embeddings: images (N, D), captions (C, D), and its pairs."""

    def __init__(self, data: ImageTextDataset, images: torch.Tensor, texts: torch.Tensor) -> None:
        self.data, self.images, self.texts = data, images, texts
        self.owner = data.caption_to_image


def _image_text(data: Any, where: str) -> ImageTextDataset:
    if not isinstance(data, ImageTextDataset):
        raise TypeError(f"{where} loaded a {type(data).__name__}; an image-text task's loaders must "
                        "return a streams.imagetext.dataset.ImageTextDataset.")
    if len(data) == 0:
        raise ValueError(f"{where} is empty.")
    return data


class RetrievalEvaluator:
    """Training pairs and retrieval scores of an image-text stream, for :class:`cl.Runner`.

    Parameters
    ----------
    stream : Stream
        An image-text stream.
    strategy : Strategy
        Implements ``embed_images`` and ``embed_texts`` (module docstring).
    backbone : Backbone
        Its ``preprocess`` transforms the images.
    batch_size, num_workers : int
        Embedding batch settings.
    progress : bool
    meter : ComputeMeter
        Counts the FLOPs of one image forward, once per run.

    Raises
    ------
    ProtocolError
        The strategy cannot embed images and texts.
    """

    def __init__(self, stream: Stream, strategy: Strategy, backbone: Backbone, *, batch_size: int,
                 num_workers: int, progress: bool, meter: ComputeMeter) -> None:
        missing = [m for m in ("embed_images", "embed_texts")
                   if not callable(getattr(strategy, m, None))]
        if missing:
            raise ProtocolError(
                f"stream {stream.name!r} is image-text, scored by retrieval, but strategy "
                f"{type(strategy).__name__} has no {' or '.join(missing)}; use an image-text "
                "strategy (contrastive-ft, er-contrastive, mod-x, ctp).")
        self.stream, self.strategy, self.backbone = stream, strategy, backbone
        self.batch_size, self.num_workers, self.progress = batch_size, num_workers, progress
        self.meter = meter
        self.with_map = all(query_gallery_loader(t) is not None for t in stream)
        self.scores = score_names(self.with_map)
        self._tests: dict[str, ImageTextDataset] = {}
        self._query_gallery: dict[int, tuple[ImageTextDataset, ImageTextDataset]] = {}

    def new_tracker(self) -> Tracker:
        """A tracker of this stream's scores, ``mean_recall`` first in rank."""
        return Tracker(self.stream.task_names, score=PRIMARY, scores=self.scores)

    # -- training data ---------------------------------------------------------------
    def train_data(self, t: int, split: str = "train") -> TaskData:
        """Task ``t``'s training pairs: ``dataset`` yields ``(image (3, H, W), [captions])`` with the
        backbone's preprocessing; ``targets`` numbers the images (no classes). An evaluation-only
        task gives no data (``dataset`` None, no targets) and loads nothing."""
        task = self.stream[t]
        if split != "train":
            raise ValueError(f"image-text task {task.name!r} has no {split!r} split to train on; the "
                             "per-task hyper-parameter search is for classification streams.")
        if not is_trained(task):
            return TaskData(task, torch.empty(0, dtype=torch.long))
        data = _image_text(task.load_train(), f"task {task.name!r} [train]")
        data = data.with_transform(self.backbone.preprocess)
        if self.meter.flops_per_image is None:
            self.meter.measure_flops(self.backbone, data[0][0])
        return TaskData(task, torch.arange(len(data)), dataset=data)

    # -- embeddings ----------------------------------------------------------------------
    def _test_set(self, task: Task) -> ImageTextDataset:
        key = str(task.metadata.get("test_key", task.key))
        if key not in self._tests:
            data = _image_text(task.load_test(), f"task {task.name!r} [test]")
            self._tests[key] = data.with_transform(self.backbone.preprocess)
        return self._tests[key]

    def _rows(self, embed: Callable[[Any], torch.Tensor], n: int,
              batches: Iterator[Any]) -> torch.Tensor:
        """Normalised embeddings of this rank's strided share of ``n`` items, gathered (n, D)."""
        parts = [F.normalize(embed(b).detach().float().cpu(), dim=-1) for b in batches]
        part = torch.cat(parts) if parts else torch.empty(0, int(self.backbone.embed_dim))
        return distributed.gather_strided(part, n)

    def _embed_images(self, data: ImageTextDataset, ctx: Context) -> torch.Tensor:
        batches = loader(distributed.shard(_Images(data)), batch_size=self.batch_size,
                         num_workers=self.num_workers)
        with torch.no_grad():
            return self._rows(lambda x: self.strategy.embed_images(x, ctx), len(data), iter(batches))

    def _embed_texts(self, texts: tuple[str, ...], ctx: Context) -> torch.Tensor:
        mine = texts[distributed.rank()::distributed.world_size()]
        batches = (list(mine[s:s + _TEXT_BATCH]) for s in range(0, len(mine), _TEXT_BATCH))
        with torch.no_grad():
            return self._rows(lambda x: self.strategy.embed_texts(x, ctx), len(texts), batches)

    def _embed(self, data: ImageTextDataset, ctx: Context) -> _Embedded:
        return _Embedded(data, self._embed_images(data, ctx), self._embed_texts(data.caption_list, ctx))

    def _embed_items(self, data: ImageTextDataset, ctx: Context) -> torch.Tensor:
        """One embedding per item (image + its first caption): ``embed_pairs`` or the
        normalised sum of the normalised image and text embeddings."""
        texts = tuple(c[0] for c in data.captions)
        pairs = getattr(self.strategy, "embed_pairs", None)
        if callable(pairs):
            order = list(range(distributed.rank(), len(data), distributed.world_size()))
            items = _Images(data)
            with torch.no_grad():
                batches = ((torch.stack([items[i] for i in order[s:s + self.batch_size]]),
                            [texts[i] for i in order[s:s + self.batch_size]])
                           for s in range(0, len(order), self.batch_size))
                return self._rows(lambda b: pairs(b[0], b[1], ctx), len(data), batches)
        return F.normalize(self._embed_images(data, ctx) + self._embed_texts(texts, ctx), dim=-1)

    # -- scores ----------------------------------------------------------------------------
    def evaluate_row(self, row: int | None, ctx: Context, tracker: Tracker) -> dict[str, float]:
        """Score every task after training through ``row`` (``None``: before training), record
        every score in ``tracker``; return ``{task name: mean_recall}``."""
        embedded: dict[str, _Embedded] = {}
        keys = [str(t.metadata.get("test_key", t.key)) for t in self.stream]
        items: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        primary: dict[str, float] = {}
        bar = tqdm(range(len(self.stream)), desc="evaluate", leave=False, disable=not self.progress)
        for j in bar:
            gallery = list(dict.fromkeys(keys[i] for i in self.stream.eval_tasks(j, row)))
            for i, key in enumerate(keys):
                if key in gallery and key not in embedded:
                    embedded[key] = self._embed(self._test_set(self.stream[i]), ctx)
            values = self._recall(embedded[keys[j]], [embedded[k] for k in gallery])
            if self.with_map:
                values |= self._map(j, self.stream.eval_tasks(j, row), items, ctx)
            tracker.record_scores(row, j, values)
            primary[self.stream[j].name] = values[PRIMARY]
        return primary

    @staticmethod
    def _recall(query: _Embedded, gallery: list[_Embedded]) -> dict[str, float]:
        """Scores of ``query``'s pairs ranked against the union of ``gallery`` (which holds it)."""
        at = next(i for i, g in enumerate(gallery) if g is query)
        img_offset = sum(len(g.images) for g in gallery[:at])
        txt_offset = sum(len(g.texts) for g in gallery[:at])
        images = torch.cat([g.images for g in gallery])
        texts = torch.cat([g.texts for g in gallery])
        n, c = len(query.images), len(query.texts)
        mine = np.arange(n) + img_offset
        text_owner = np.concatenate([g.owner + sum(len(h.images) for h in gallery[:i])
                                     for i, g in enumerate(gallery)])
        i2t = first_hit_ranks((query.images @ texts.T).numpy(),
                              text_owner[None, :] == mine[:, None])
        t2i = first_hit_ranks((texts[txt_offset:txt_offset + c] @ images.T).numpy(),
                              np.arange(len(images))[None, :] == (query.owner + img_offset)[:, None])
        return recall_scores(i2t, t2i)

    def _sets(self, j: int) -> tuple[ImageTextDataset, ImageTextDataset]:
        if j not in self._query_gallery:
            task = self.stream[j]
            load = query_gallery_loader(task)
            query, gallery = load()
            where = f"task {task.name!r} [query/gallery]"
            query, gallery = _image_text(query, where), _image_text(gallery, where)
            if query.categories is None or gallery.categories is None:
                raise ValueError(f"{where}: mAP@K needs categories on the query and gallery items.")
            self._query_gallery[j] = (query.with_transform(self.backbone.preprocess),
                                      gallery.with_transform(self.backbone.preprocess))
        return self._query_gallery[j]

    def _map(self, j: int, tasks: tuple[int, ...], cache: dict[int, tuple[torch.Tensor, torch.Tensor]],
             ctx: Context) -> dict[str, float]:
        """CTP's mAP@K of task ``j``'s queries against the galleries of ``tasks``."""
        for i in {j, *tasks}:
            if i not in cache:
                query, gallery = self._sets(i)
                cache[i] = (self._embed_items(query, ctx), self._embed_items(gallery, ctx))
        query = self._sets(j)[0]
        galleries = [self._sets(i)[1] for i in tasks]
        sim = (cache[j][0] @ torch.cat([cache[i][1] for i in tasks]).T).numpy()
        labels = [c for g in galleries for c in g.categories]
        ids = [x for g in galleries for x in g.ids]
        return {f"map@{k}": multimodal_map_at_k(sim, query.categories, labels, k,
                                                query_ids=query.ids, gallery_ids=ids)
                for k in MAP_KS}
