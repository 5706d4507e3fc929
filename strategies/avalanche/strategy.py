"""``avalanche:NAME``: any avalanche training strategy as a baseline on our runner.

Two equivalent set-ups (the encoder is frozen in both):

``inputs="features"`` (default)
    the avalanche model is the head applied to the runner's cached features,
    which *are* the encoder's outputs: the encoder runs once per image, not
    once per epoch;
``inputs="images"``
    the avalanche model is ``Sequential(FrozenEncoder(backbone), head)`` and the
    stream is given to avalanche as an ``NCScenario``
    (:func:`~strategies.avalanche.experiences.image_scenario`, the backbone's
    ``preprocess`` as transform): avalanche sees images.

The head has one output per global class of the stream and masks the classes
no task has trained yet to ``-1000``, as avalanche's ``IncrementalClassifier``
does (``masking=True, mask_value=-1000``). Hence avalanche's accuracy (argmax
over all outputs) and ours (argmax over the scenario's label space: the
classes seen so far, class-incremental) pick the same class, and avalanche's
``EvaluationPlugin`` reports the same per-experience accuracies as our
tracker (``tests/strategies/avalanche/test_strategy.py``). Our plugins see
avalanche's minibatches through ``ctx.before_batch``/``ctx.after_batch``.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from cl.config.options import bind_options, describe_options
from cl.core.strategy import Context, Strategy, TaskData
from cl.models.language_head import check_head, stream_targets
from cl.runtime.seeding import rng_untouched
from strategies.avalanche.bridge import plugin_bridge, silent_evaluator
from strategies.avalanche.catalog import (
    FILLED,
    NEEDS_SCENARIO,
    RESUMABLE,
    missing_options_message,
    strategy_class,
)
from strategies.avalanche.experiences import image_scenario, make_experience
from strategies.avalanche.modules import FrozenEncoder, MaskedHead
from streams.core import LabelSpace

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate


def avalanche_options(name: str) -> dict[str, str]:
    """Options of ``avalanche:NAME``: the wrapper's and the avalanche class's own."""
    own = describe_options(AvalancheStrategy, ("strategy",))
    return {**own, **describe_options(strategy_class(name), FILLED)}


class AvalancheStrategy(Strategy):
    """Any avalanche training strategy (Naive, EWC, LwF, SI, Replay, GEM, iCaRL...) as a baseline.

    Parameters
    ----------
    strategy : str, avalanche strategy class, or constructed avalanche strategy
        A name from ``avalanche.training`` (``"EWC"``), the class itself, or an
        already built strategy whose ``model`` maps features (N, D) to logits
        over the stream's global classes (options below are then unused).
    inputs : {"features", "images"}
        Train the head on cached features, or encoder + head on images from
        ``to_avalanche`` (see module docstring).
    hidden : int
        Hidden width of the head (0: linear head on the frozen features).
    epochs : int
        Passes over each task (avalanche ``train_epochs``).
    lr, momentum : float
        SGD learning rate and momentum.
    batch_size : int
        Training minibatch size (avalanche ``train_mb_size``).
    head : {"linear", "language"}
        One-hot output layer, or LingoCL's frozen language-guided head
        (:mod:`cl.models.language_head`; targets of every class of the stream).
    language_encoder : str
        With ``head="language"``: ``"clip"`` (the backbone's text tower) or a
        ``transformers`` model name / local directory.
    head_temperature : float
        τ of the language-guided head's cosine logits.
    evaluator : avalanche ``EvaluationPlugin`` or None
        Attached to the avalanche strategy (e.g. to compare metrics); ``None``
        uses a silent one.
    avalanche_plugins : list or None
        Extra avalanche plugins.
    **strategy_options
        Options of the avalanche strategy's constructor (``ewc_lambda``,
        ``mem_size``...), validated against its signature; those without a default
        are required (``ValueError`` naming each with its meaning otherwise).
    """

    inputs = "features"

    def __init__(
        self,
        strategy: Any = "Naive",
        *,
        inputs: Literal["features", "images"] = "features",
        hidden: int = 0,
        epochs: int = 5,
        lr: float = 0.05,
        momentum: float = 0.9,
        batch_size: int = 32,
        head: str = "linear",
        language_encoder: str = "clip",
        head_temperature: float = 0.1,
        evaluator: Any = None,
        avalanche_plugins: list[Any] | None = None,
        **strategy_options: Any,
    ) -> None:
        for key, value in (("epochs", epochs), ("batch_size", batch_size)):
            if value <= 0:
                raise ValueError(f"avalanche strategy {key} must be positive, got {value}.")
        if inputs not in ("features", "images"):
            raise ValueError(f"avalanche strategy inputs must be 'features' or 'images', got {inputs!r}.")
        if hidden < 0 or lr < 0:
            raise ValueError(f"avalanche strategy needs hidden >= 0 and lr >= 0, got {hidden}, {lr}.")
        check_head(head, "avalanche strategy")
        if not head_temperature > 0:
            raise ValueError(f"avalanche strategy head_temperature must be positive, got "
                             f"{head_temperature}.")
        self.head, self.language_encoder = head, language_encoder
        self.head_temperature = head_temperature
        from avalanche.training.templates import SupervisedTemplate

        self._built: SupervisedTemplate | None = None
        if isinstance(strategy, SupervisedTemplate):
            self._built, cls = strategy, type(strategy)
        elif isinstance(strategy, str):
            cls = strategy_class(strategy)
        elif inspect.isclass(strategy) and issubclass(strategy, SupervisedTemplate):
            cls = strategy
        else:
            raise TypeError(
                f"strategy must be an avalanche strategy name, class or object, got {strategy!r}."
            )
        self.name = cls.__name__
        if self.name in NEEDS_SCENARIO and inputs == "features":
            raise ValueError(
                f"avalanche:{self.name} reads experience.benchmark (an avalanche NCScenario of the "
                "whole stream), which exists for images only: use --set strategy.inputs=images."
            )
        where = f"strategy 'avalanche:{self.name}'"
        valid = describe_options(cls, FILLED)  # avalanche's **kwargs would swallow typos
        unknown = sorted(set(strategy_options) - set(valid))
        if unknown:
            own = ", ".join(sorted(describe_options(AvalancheStrategy, ("strategy",))))
            raise ValueError(
                f"{where} has no option {unknown[0]!r}; valid options: "
                f"{', '.join(sorted(valid)) or '(none)'}. Wrapper options: {own}."
            )
        self.strategy_options = bind_options(cls, strategy_options, where=where, reserved=FILLED)
        missing = None if self._built is not None else \
            missing_options_message(cls, set(strategy_options))
        if missing:
            raise ValueError(missing)
        if self._built is not None and strategy_options:
            raise ValueError(f"{where}: options {sorted(strategy_options)} cannot be applied to an "
                             "already constructed avalanche strategy; pass its name or class.")
        self.cls = cls
        self.inputs = inputs
        self._bench: tuple[Any, Any] | None = None
        self.hidden, self.epochs, self.lr, self.momentum = hidden, epochs, lr, momentum
        self.batch_size = batch_size
        self.evaluator = evaluator
        self.avalanche_plugins = list(avalanche_plugins or [])
        self.classes: list[set[int]] = []
        self._ctx: Context | None = None
        self._pending: dict[str, Any] | None = None
        self._pending_optimizer: dict[str, Any] | None = None

    # -- building --------------------------------------------------------------
    @property
    def avalanche(self) -> SupervisedTemplate | None:
        """The underlying avalanche strategy (``None`` until the first task)."""
        return self._built

    @property
    def model(self) -> nn.Module | None:
        return None if self._built is None else self._built.model

    def _build(self, dim: int, n_classes: int, ctx: Context) -> SupervisedTemplate:
        torch.manual_seed(ctx.seed)  # not from ctx.generator: a resumed run builds later
        targets = (stream_targets(ctx.stream, self.language_encoder, ctx.backbone)
                   if self.head == "language" else None)
        head = MaskedHead(dim, n_classes, self.hidden, targets=targets,
                          temperature=self.head_temperature).to(ctx.device)
        encoder = FrozenEncoder(ctx.backbone) if self.inputs == "images" else nn.Identity()
        params = inspect.signature(self.cls.__init__).parameters
        if "model" in params:
            models: dict[str, Any] = {
                "model": head if self.inputs == "features" else nn.Sequential(encoder, head)}
            trainable = head.parameters()
        elif "feature_extractor" in params and "classifier" in params:  # iCaRL
            models = {"feature_extractor": encoder, "classifier": head}
            trainable = head.parameters()
        else:
            raise ValueError(f"avalanche strategy {self.name} takes no model; it cannot be wrapped.")
        filled = {
            "optimizer": torch.optim.SGD(trainable, lr=self.lr, momentum=self.momentum),
            "criterion": nn.CrossEntropyLoss(), "train_mb_size": self.batch_size,
            "train_epochs": self.epochs, "eval_mb_size": max(ctx.batch_size, 1), "device": ctx.device,
            "plugins": [plugin_bridge(self), *self.avalanche_plugins],
            "evaluator": self.evaluator if self.evaluator is not None else silent_evaluator(),
        }
        filled = {k: v for k, v in filled.items() if k in params}
        return self.cls(**models, **filled, **self.strategy_options)

    # -- protocol ----------------------------------------------------------------
    def train_task(self, data: TaskData, ctx: Context) -> None:
        source = data.features if self.inputs == "features" else data.dataset
        if source is None:
            raise ValueError(f"AvalancheStrategy(inputs={self.inputs!r}) got no {self.inputs}.")
        if self._built is None:
            if self.inputs == "features":
                dim = data.features.shape[1]
            else:
                with torch.no_grad():
                    dim = ctx.backbone.encode_images(data.dataset[0][0][None].to(ctx.device)).shape[1]
            if self._pending is None:
                self._built = self._build(dim, ctx.stream.n_classes, ctx)
            else:  # resumed: the weights come from the state; draw nothing for them
                with rng_untouched():
                    self._built = self._build(dim, ctx.stream.n_classes, ctx)
                self._built.model.load_state_dict(self._pending)
                self._pending = None
        head = self._head()
        classes = {int(c) for c in data.targets.unique()}
        if head is not None:
            head.active[sorted(classes)] = True
        if self.inputs == "features":
            exp = make_experience(data.features, data.targets, len(self.classes), self.classes)
        else:
            exp = self._image_experience(ctx)
        self._ctx = ctx
        # avalanche shuffles with the global RNG: seed it from the task's generator so the
        # run does not depend on what consumed it before (e.g. a feature-cache miss)
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator)))
        try:
            self._built.train(exp, num_workers=0)
        finally:
            self._ctx = None
        self.classes.append(classes)
        self._built.model.eval()

    def _image_experience(self, ctx: Context) -> Any:
        """Train experience ``ctx.task_index`` of the stream's ``NCScenario`` (built once)."""
        if self._bench is None or self._bench[0] is not ctx.stream:
            self._bench = (ctx.stream, image_scenario(ctx.stream, ctx.backbone.preprocess))
        return self._bench[1].train_stream[ctx.task_index]

    def _head(self) -> MaskedHead | None:
        if self._built is None:
            return None
        found = [m for m in self._built.model.modules() if isinstance(m, MaskedHead)]
        return found[0] if found else None

    def predict(self, inputs: torch.Tensor, label_space: LabelSpace, ctx: Context) -> torch.Tensor:
        if self._built is None or not self.classes:
            return torch.zeros(inputs.shape[0], len(label_space))
        model = self._built.model
        model.eval()
        with torch.no_grad():
            logits = model(inputs.float().to(ctx.device))
        return logits[:, list(label_space.class_ids)].float().cpu()

    def trainable_parameters(self) -> int:
        model = self.model
        return 0 if model is None else sum(p.numel() for p in model.parameters() if p.requires_grad)

    def memory_bytes(self) -> int:
        model = self.model
        return 0 if model is None else sum(p.numel() * p.element_size() for p in model.parameters())

    def state_dict(self) -> dict[str, Any]:
        model = self.model
        return {
            "name": self.name,
            "classes": [sorted(c) for c in self.classes],
            "model": None if model is None else model.state_dict(),
            "optimizer": None if self._built is None else self._built.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore after a finished task; exact for :data:`RESUMABLE` strategies only.

        The avalanche strategy is rebuilt at the next ``train_task`` (it needs the
        run's device) and its model then gets the saved weights.
        """
        if not state.get("classes"):
            return
        if self.name not in RESUMABLE or self._built is not None:
            raise ValueError(
                f"avalanche:{self.name} keeps state outside its model (importances, old models, "
                f"buffers) that cannot be checkpointed as tensors; resume works for a fresh "
                f"{', '.join(RESUMABLE)} only. Start the run again in a new directory."
            )
        self.classes = [{int(c) for c in cs} for cs in state["classes"]]
        self._pending = state["model"]
        self._pending_optimizer = state.get("optimizer")
