"""``moe-adapters``: MoE-Adapters with activate-freeze and the DDAS selector (Yu et al., "Boosting
Continual Learning of Vision-Language Models via Mixture-of-Experts Adapters", CVPR 2024;
``JiazuoYu/MoE-Adapters4CL`` @ 4572d97).

The complete method, as the reference's MTIL scripts run it:

* every residual block of both towers carries ``experts`` adapters in parallel with its
  MLP (:func:`~strategies.adaptation.moe_blocks.attach_experts`); the backbone is frozen;
* each task adds a noisy top-k router per block and trains it with the experts not yet
  frozen (AdamW, warm-up + cosine, CLIP cross-entropy with label smoothing; reference
  ``mtil/src/models/finetune.py`` l. 84–186);
* activate-freeze: after the task, the ``freeze_per_task`` experts of each block that
  received most samples stop training for good (l. 189–220);
* DDAS: an autoencoder per task learns the task's image features; at test time a batch
  goes to the router of the task whose autoencoder reconstructs it best, or to the
  frozen zero-shot CLIP (every block's experts bypassed) when even the best error
  exceeds the threshold (:class:`~strategies.adaptation.ddas.DDAS`; ``evaluation.py``
  l. 53–71). The text tower is routed like the image tower (the reference's
  ``zeroshot_weights[task_id + 1]``).

Selector features (``ddas_features``): ``"alexnet"`` is the reference's ImageNet AlexNet
conv5 map (256·13·13 at 224 px, torchvision's weights); ``"clip"`` is the frozen zero-shot
CLIP image embedding rescaled to norm √D (``√D · î``, entries of order 1 whatever the
model, so that ``sigmoid`` stays in its responsive range), which needs nothing beyond the
backbone and is the zero-shot route's own embedding. Deviations and their reasons:
``docs/adaptation.md``; fidelity: ``docs/fidelity.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from cl.core.strategy import Context, TaskData
from cl.runtime import distributed
from cl.runtime.data import loader
from strategies.adaptation.base import Term
from strategies.adaptation.ddas import DDAS, ZERO_SHOT, Autoencoder
from strategies.adaptation.finetune import CLIPFinetune
from strategies.adaptation.moe_blocks import attach_experts, detach_experts, moe_blocks, set_route
from strategies.adaptation.options import MoEAdaptersOptions
from strategies.adaptation.zscl import ImagesOnly, resolve
from strategies.lora.placement import check_model
from streams.core import LabelSpace


def alexnet_features() -> nn.Module:
    """The reference's feature extractor: ImageNet AlexNet up to conv5, without its ReLU and pool.

    ``Alexnet_FE`` (``AutoEncoder.py`` l. 34–46): ``alexnet.features[:-2]``, fed CLIP's
    preprocessed images. Raises ``RuntimeError`` when torchvision cannot load the weights
    (they are downloaded into the torch hub cache on first use).
    """
    from torchvision.models import AlexNet_Weights, alexnet

    try:
        net = alexnet(weights=AlexNet_Weights.IMAGENET1K_V1)
    except Exception as err:  # offline, proxy, corrupt file: all say the same
        raise RuntimeError(
            f"ddas_features='alexnet' needs torchvision's ImageNet AlexNet weights, which could "
            f"not be loaded ({type(err).__name__}: {err}); put alexnet-owt-7be5be79.pth in the "
            "torch hub cache, or use ddas_features='clip'.") from err
    features = net.features[:-2].eval()
    features.requires_grad_(False)
    return features


class MoEAdapters(CLIPFinetune):
    """Mixture-of-experts adapters on a frozen open_clip, routed per task by DDAS.

    Parameters
    ----------
    options : MoEAdaptersOptions, optional
        Hyper-parameters (defaults: the reference's 22 experts, top-2, lr 1e-3, 1000
        iterations, batch 64; DDAS on CLIP features).
    data_root : str or None
        Where a relative ``ddas_reference`` folder lives (filled from the run config).
    **overrides
        Fields of the options to change; these are the strategy's config options.
    """

    label = "moe-adapters"
    exportable = False
    options_class = MoEAdaptersOptions
    options: MoEAdaptersOptions
    #: none: a trial adds routers to the model, which restoring the backbone's weights cannot undo
    searchable: ClassVar[Mapping[str, tuple[Any, ...]]] = {}

    def __init__(self, options: MoEAdaptersOptions | None = None, /, *,
                 data_root: str | None = None, **overrides: Any) -> None:
        super().__init__(options, **overrides)
        self.data_root = data_root
        self._ddas: DDAS | None = None
        self._alexnet: nn.Module | None = None

    # -- experts and routers ------------------------------------------------------------------
    def _check_backbone(self, backbone: Any, model: nn.Module) -> None:
        super()._check_backbone(backbone, model)
        check_model(model, self.options.encoders)

    def _attach(self, model: nn.Module, generator: torch.Generator) -> None:
        o = self.options
        attach_experts(model, o.encoders, experts=o.experts, top_k=o.top_k,
                       bottleneck=o.bottleneck, dropout=o.expert_dropout, scale=o.expert_scale,
                       generator=generator)

    def _begin_task(self, model: nn.Module, ctx: Context) -> None:
        if not any(True for _ in moe_blocks(model)):
            self._attach(model, ctx.generator)
        seed = int(torch.randint(0, 2**62, (1,), generator=ctx.generator))
        noise = torch.Generator().manual_seed(seed + distributed.rank())  # own draws per rank
        route = 0
        for _, block in moe_blocks(model):
            route = block.moe.add_router()
            block.moe.reset_activations()
            block.moe.apply_frozen()
            block.moe.generator = noise
        set_route(model, route)

    def _param_groups(self, model: nn.Module, ctx: Context) -> list[dict[str, Any]]:
        blocks = list(moe_blocks(model))
        if not blocks or blocks[0][1].route is None:
            raise RuntimeError("moe-adapters: call before_task before train_task (no router yet).")
        return [{"params": [p for _, b in blocks for p in b.moe.trainable_parameters()]}]

    def _extra_terms(self, model: nn.Module, step: int, ctx: Context) -> list[Term]:
        if self.options.balance_weight == 0:
            return []
        losses = [b.moe.last_balance_loss for _, b in moe_blocks(model)
                  if b.moe.last_balance_loss is not None]
        return [(self.options.balance_weight * torch.stack(losses).sum(), None)] if losses else []

    def _abort(self, model: nn.Module) -> None:
        set_route(model, None)

    def _reset(self) -> None:
        self._ddas = None
        if self._backbone is not None:
            detach_experts(self._backbone.model)

    # -- after the task: activate-freeze, then the task's autoencoder ---------------------------
    def _end_task(self, model: nn.Module, data: TaskData | None, ctx: Context) -> None:
        if data is None or data.dataset is None:
            raise RuntimeError("moe-adapters: after_task needs the task's images (train_task).")
        blocks = [b for _, b in moe_blocks(model)]
        route = blocks[0].route
        counts = distributed.sum_counts(*(int(c) for b in blocks for c in b.moe.activations))
        frozen = 0
        for i, block in enumerate(blocks):  # every rank freezes the experts of the global counts
            n = block.moe.n_experts
            block.moe.activations.copy_(torch.tensor(counts[i * n:(i + 1) * n]))
            if self.options.freeze_per_task:
                block.moe.freeze_most_activated(self.options.freeze_per_task)
            frozen += int(block.moe.frozen.sum())
            block.moe.generator = None
        set_route(model, None)
        ctx.record("frozen_experts", frozen)
        if self._ddas is None:
            self._ddas = DDAS(threshold=self.options.threshold, code_dim=self.options.ddas_code_dim,
                              iterations=self.options.ddas_iterations, lr=self.options.ddas_lr,
                              per_sample=self.options.ddas_per_image, random_state=ctx.seed)
            if self.options.ddas_reference:
                self._fit_reference(model, ctx)
        features = self._selector_inputs(model, data.dataset, ctx)
        self._ddas.partial_fit(features, torch.full((len(features),), route, dtype=torch.long))

    def _fit_reference(self, model: nn.Module, ctx: Context) -> None:
        """The reference domain's autoencoder, whose winners go to zero-shot (TinyImageNet)."""
        from streams.folders import image_folder

        if self._ddas is None:
            raise RuntimeError("moe-adapters: the DDAS selector must exist before its reference.")
        images = ImagesOnly(image_folder(resolve(self.options.ddas_reference, self.data_root)),
                            self._backbone.preprocess)
        features = self._selector_inputs(model, images, ctx)
        self._ddas.iterations = self.options.ddas_reference_iterations
        try:
            self._ddas.partial_fit(features, torch.full((len(features),), ZERO_SHOT))
        finally:
            self._ddas.iterations = self.options.ddas_iterations

    def _selector_inputs(self, model: nn.Module, dataset: Dataset, ctx: Context) -> torch.Tensor:
        """Selector features (N, F) of every image of ``dataset`` (the whole set on every rank)."""
        parts = []
        device = next(model.parameters()).device
        with torch.no_grad():
            for x, _ in loader(dataset, batch_size=ctx.batch_size, num_workers=ctx.num_workers):
                parts.append(self.selector_features(model, x.to(device)))
        return torch.cat(parts)

    def selector_features(self, model: nn.Module, images: torch.Tensor,
                          zeroshot: torch.Tensor | None = None) -> torch.Tensor:
        """DDAS inputs (N, F) of preprocessed images (``zeroshot``: their zero-shot embeddings)."""
        if self.options.ddas_features == "alexnet":
            if self._alexnet is None:
                self._alexnet = alexnet_features().to(images.device)
            return self._alexnet(images).flatten(1).float()
        if zeroshot is None:
            set_route(model, None)
            with self.autocast(images.device):
                zeroshot = model.encode_image(images, normalize=True)
        return zeroshot.float() * math.sqrt(zeroshot.shape[1])

    # -- prediction ----------------------------------------------------------------------------
    def routes(self, images: torch.Tensor) -> torch.Tensor:
        """DDAS's route (N,) of a batch of preprocessed images: a task, or ``-1`` (zero-shot)."""
        model = self.attach(self._backbone).model
        with torch.no_grad():
            return self._route(model, images.to(next(model.parameters()).device))[0]

    def _route(self, model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        set_route(model, None)
        with self.autocast(images.device):
            zeroshot = model.encode_image(images, normalize=True)
        if self._ddas is None:
            return torch.full((len(images),), ZERO_SHOT), zeroshot
        return self._ddas.predict(self.selector_features(model, images, zeroshot)), zeroshot

    def _logits(self, model: nn.Module, images: torch.Tensor, label_space: LabelSpace
                ) -> torch.Tensor:
        routes, zeroshot = self._route(model, images)
        logits = torch.empty((len(images), len(label_space)), device=images.device)
        try:
            for route in routes.unique().tolist():
                rows = (routes == route).nonzero().squeeze(1).to(images.device)
                set_route(model, None if route == ZERO_SHOT else route)
                if route == ZERO_SHOT:
                    logits[rows] = self.clip_logits(model, zeroshot[rows], label_space, None)
                    continue
                with self.autocast(images.device):
                    image = model.encode_image(images[rows], normalize=True)
                logits[rows] = self.clip_logits(model, image, label_space, route)
        finally:
            set_route(model, None)
        return logits

    # -- state ---------------------------------------------------------------------------------
    def _state(self, model: nn.Module) -> dict[str, Any]:
        experts = {f"{name}.{k}": v.detach().cpu().clone()
                   for name, block in moe_blocks(model) for k, v in block.moe.state_dict().items()}
        routers = len(next(moe_blocks(model))[1].moe.gates)
        ddas = self._ddas
        if ddas is None:
            raise RuntimeError("moe-adapters has no trained selector to save; finish a task first.")
        return {"experts": experts, "routers": routers,
                "ddas": {"domains": list(ddas.domains_), "features": ddas.n_features_in_,
                         "random_state": ddas.random_state,
                         "autoencoders": [{k: v.detach().cpu().clone()
                                           for k, v in ae.state_dict().items()}
                                          for ae in ddas.autoencoders_]}}

    def _restore(self, model: nn.Module, state: dict[str, Any]) -> None:
        if not any(True for _ in moe_blocks(model)):
            self._attach(model, torch.Generator().manual_seed(0))  # weights come from the state
        for name, block in moe_blocks(model):
            while len(block.moe.gates) < int(state["routers"]):
                block.moe.add_router()
            prefix = f"{name}."
            block.moe.load_state_dict({k[len(prefix):]: torch.as_tensor(v)
                                       for k, v in state["experts"].items() if k.startswith(prefix)})
            block.moe.requires_grad_(False)
        ddas = state["ddas"]
        self._ddas = DDAS(threshold=self.options.threshold, code_dim=self.options.ddas_code_dim,
                          iterations=self.options.ddas_iterations, lr=self.options.ddas_lr,
                          per_sample=self.options.ddas_per_image,
                          random_state=int(ddas["random_state"]))
        self._ddas.n_features_in_ = int(ddas["features"])
        self._ddas.domains_ = [int(d) for d in ddas["domains"]]
        self._ddas.autoencoders_ = nn.ModuleList()
        device = next(model.parameters()).device
        for weights in ddas["autoencoders"]:
            ae = Autoencoder(self._ddas.n_features_in_, self.options.ddas_code_dim)
            ae.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()})
            self._ddas.autoencoders_.append(ae.to(device).eval())

    def memory_bytes(self) -> int:
        """Experts, routers and autoencoders carried between tasks, in bytes."""
        if self._backbone is None:
            return 0
        tensors = [t for _, b in moe_blocks(self._backbone.model) for t in b.moe.parameters()]
        if self._ddas is not None and hasattr(self._ddas, "autoencoders_"):
            tensors += list(self._ddas.autoencoders_.parameters())
        return sum(t.numel() * t.element_size() for t in tensors)


__all__ = ["MoEAdapters", "alexnet_features"]
