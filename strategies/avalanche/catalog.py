"""Avalanche's supervised strategies by class name, and the options a user may set on them."""

from __future__ import annotations

import inspect

FILLED: tuple[str, ...] = (
    "model", "optimizer", "criterion", "train_mb_size", "train_epochs", "eval_mb_size", "device",
    "plugins", "evaluator", "eval_every", "feature_extractor", "classifier", "base_kwargs",
    "kwargs",
)
"""Constructor parameters of avalanche strategies that the wrapper fills itself."""

RESUMABLE: tuple[str, ...] = ("Naive",)
"""Strategies whose whole cross-task state is the model and the optimizer (avalanche keeps
SGD momentum across experiences): exact resume from ``state_dict``."""

NEEDS_SCENARIO: tuple[str, ...] = ("ICaRL",)
"""Strategies that read ``experience.benchmark`` (an avalanche ``NCScenario``: classes per
experience and class order); they need the whole stream as avalanche sees it (``inputs="images"``)."""


def avalanche_strategies() -> dict[str, type]:
    """Avalanche's supervised training strategies by class name (imports avalanche)."""
    from avalanche import training
    from avalanche.training.templates import SupervisedTemplate

    return {
        name: obj for name, obj in vars(training).items()
        if inspect.isclass(obj) and issubclass(obj, SupervisedTemplate) and not name.startswith("_")
    }


def strategy_class(name: str) -> type:
    """The avalanche strategy class called ``name``; ``ValueError`` listing valid names."""
    classes = avalanche_strategies()
    if name not in classes:
        raise ValueError(
            f"Unknown avalanche strategy {name!r}. Valid avalanche strategies: "
            f"{', '.join(sorted(classes))} (use them as 'avalanche:NAME')."
        )
    return classes[name]
