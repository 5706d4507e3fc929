"""Avalanche's supervised strategies by class name, and the options a user may set on them."""

from __future__ import annotations

import inspect
import re

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


def required_options(cls: type) -> dict[str, str]:
    """Constructor options of avalanche strategy ``cls`` that have no default and that the
    wrapper does not fill (``EWC``: ``ewc_lambda``), each with its meaning from avalanche's
    docstring (``:param NAME: ...``; empty when undocumented)."""
    params = inspect.signature(cls.__init__).parameters.values()
    names = [p.name for p in params if p.default is inspect.Parameter.empty
             and p.name not in (*FILLED, "self") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    doc = inspect.getdoc(cls.__init__) or ""
    meanings = {}
    for name in names:
        found = re.search(rf":param {name}:(.*?)(?=\n\s*:|\n\s*\n|\Z)", doc, re.DOTALL)
        meanings[name] = " ".join(found.group(1).split()) if found else ""
    return meanings


def missing_options_message(cls: type, given: set[str]) -> str | None:
    """The refusal for required options of ``avalanche:NAME`` not in ``given``, or ``None``."""
    missing = {k: v for k, v in required_options(cls).items() if k not in given}
    if not missing:
        return None
    name = cls.__name__
    parts = [f"{k!r}" + (f" ({v.rstrip('.')})" if v else "") for k, v in missing.items()]
    sets = " ".join(f"--set strategy.{k}=VALUE" for k in missing)
    return (f"avalanche:{name} needs option{'s' if len(missing) > 1 else ''} "
            f"{'; '.join(parts)}, which avalanche gives no default; set "
            f"{'them' if len(missing) > 1 else 'it'} with {sets} (or under [strategy] in a config).")
