"""Per-task hyper-parameter selection: the NEVIS'22 protocol, as a run option.

NEVIS'22 (Bornschein et al., JMLR 2023, §4.2 "Protocol"; reference
``deepmind/dm_nevis``: ``experiments_jax/configs/finetuning_dknn.py``,
``training/hype.py``, ``training/hyperparameter_searcher.py``) tunes each task
on its own: ``trials_per_task`` random trials (16 in the paper) draw the
learning rate log-uniformly in [1e-4, 1e-1] and the label smoothing uniformly
in [0, 0.3]; every trial starts from the state the previous task left, trains
on the task's *train* split and is scored on its *dev* split; the best trial's
trained state is kept and evaluated on test. The compute of **all** trials is
the task's compute (``total_resources_used`` sums every trial's FLOPs), so the
error-vs-compute curve pays for the search.

Here the option is the ``[protocol]`` table of a run config (:class:`Protocol`):

.. code-block:: toml

    [protocol]
    hp_trials = 16                 # 0 (default): no search
    params = ["lr"]                # optional: search only these declared ones
    dev_fractions = [0.7, 0.15, 0.15]   # carve of tasks without a dev split
    [protocol.ranges]              # optional: override a strategy's declared range
    lr = ["log-uniform", 1e-5, 1e-2]

A strategy takes part by declaring ``searchable`` (name → range) and, when its
hyper-parameters are not plain attributes, overriding
:meth:`cl.core.strategy.Strategy.set_hyperparameters`. Ranges are
``("log-uniform", lo, hi)``, ``("uniform", lo, hi)`` or ``("choice", v1, v2, ...)``.

Trial values are drawn as the reference does (``hype.log_uniform_random_values``
and ``hype.uniform_random_values``): the k-th searched hyper-parameter (in the
strategy's declared order, ``lr`` first, ``label_smoothing`` second) of task ``t``
uses ``random.Random(search_seed + t + k + 1)``; the reference's search seed is the
task index (``search_seed = 0``). Ties go to the earliest trial.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from cl.config.options import coerce
from cl.core.plugin import Plugin
from cl.core.strategy import Context, Strategy
from cl.errors import OptionError

Range = tuple[Any, ...]
RANGE_KINDS: tuple[str, ...] = ("log-uniform", "uniform", "choice")


def check_range(spec: Sequence[Any], name: str) -> Range:
    """``spec`` as a validated range tuple; ``ValueError`` naming ``name`` and the fix."""
    spec = tuple(spec) if isinstance(spec, (list, tuple)) else (spec,)
    kind = spec[0] if spec else None
    if kind == "choice" and len(spec) >= 2:
        return spec
    if kind in ("log-uniform", "uniform") and len(spec) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec[1:]):
        lo, hi = float(spec[1]), float(spec[2])
        if lo <= hi and (kind == "uniform" or lo > 0):
            return (kind, lo, hi)
    raise ValueError(
        f"range of {name!r} must be ['log-uniform', lo, hi] (0 < lo <= hi), ['uniform', lo, hi] "
        f"(lo <= hi) or ['choice', v1, v2, ...]; got {list(spec)}.")


def sample_values(spec: Range, n: int, seed: int) -> list[Any]:
    """``n`` values of one range, drawn with ``random.Random(seed)``.

    ``log-uniform``: ``exp(U(log lo, log hi))`` (dm_nevis ``hype.log_uniform_random_values``);
    ``uniform``: ``U(lo, hi)`` (``hype.uniform_random_values``); ``choice``: ``rng.choice``.
    """
    rng = random.Random(seed)
    kind = spec[0]
    if kind == "log-uniform":
        lo, hi = math.log(spec[1]), math.log(spec[2])
        return [math.exp(rng.uniform(lo, hi)) for _ in range(n)]
    if kind == "uniform":
        return [rng.uniform(spec[1], spec[2]) for _ in range(n)]
    return [rng.choice(spec[1:]) for _ in range(n)]


def sample_trials(space: Mapping[str, Range], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` trials over ``space``: parameter k (in order) drawn with seed ``seed + k + 1``."""
    columns = {name: sample_values(spec, n, seed + k + 1) for k, (name, spec) in enumerate(space.items())}
    return [{name: values[i] for name, values in columns.items()} for i in range(n)]


@dataclass(frozen=True)
class Protocol:
    """The ``[protocol]`` table of a run (see module docstring).

    Attributes
    ----------
    hp_trials : int
        Random trials per task (0: no search; the NEVIS'22 paper uses 16).
    params : tuple of str or None
        Declared hyper-parameters to search (None: every one the strategy declares).
    ranges : dict of str to range
        Overrides of declared ranges.
    dev_fractions : (float, float, float)
        Train / dev / dev-test carve of tasks without a dev split
        (:func:`streams.dev.with_dev_splits`; tasks may set their own).
    dev_seed : int
        Seed of that carve.
    search_seed : int
        Added to the task index to seed the trial values (0: the reference's seeds).
    """

    hp_trials: int = 0
    params: tuple[str, ...] | None = None
    ranges: dict[str, Range] = field(default_factory=dict)
    dev_fractions: tuple[float, ...] = (0.7, 0.15, 0.15)
    dev_seed: int = 0
    search_seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.hp_trials, bool) or not isinstance(self.hp_trials, int) or self.hp_trials < 0:
            raise ValueError(f"protocol.hp_trials must be an integer >= 0, got {self.hp_trials!r}.")
        object.__setattr__(self, "ranges", {k: check_range(v, k) for k, v in self.ranges.items()})
        from streams.dev import check_fractions

        object.__setattr__(self, "dev_fractions", check_fractions(self.dev_fractions))

    @property
    def active(self) -> bool:
        """Whether a per-task search runs."""
        return self.hp_trials > 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "[protocol]") -> Protocol:
        """Build from a config table; unknown keys and wrong types are errors naming them."""
        hints = {"hp_trials": int, "params": list[str] | None, "ranges": dict,
                 "dev_fractions": list[float], "dev_seed": int, "search_seed": int}
        unknown = sorted(set(data) - set(hints))
        if unknown:
            raise ValueError(f"{where} has no key {unknown[0]!r}; valid keys: {', '.join(hints)}.")
        values = {k: coerce(v, hints[k], f"{where} {k!r}") for k, v in data.items()}
        if values.get("params") is not None:
            values["params"] = tuple(values["params"])
        if "dev_fractions" in values:
            values["dev_fractions"] = tuple(values["dev_fractions"])
        if not isinstance(values.get("ranges", {}), dict):
            raise OptionError(f"{where} 'ranges' must be a table of name = [kind, ...].")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ranges"] = {k: list(v) for k, v in self.ranges.items()}
        out["dev_fractions"] = list(self.dev_fractions)
        out["params"] = None if self.params is None else list(self.params)
        return out

    def space(self, strategy: Strategy, label: str) -> dict[str, Range]:
        """The ranges searched for ``strategy`` (declared, restricted by ``params``, overridden
        by ``ranges``). ``ValueError`` when it declares none or a name is not declared."""
        declared = dict(getattr(strategy, "searchable", {}) or {})
        if not declared:
            raise ValueError(
                f"protocol.hp_trials={self.hp_trials}: strategy {label!r} declares no searchable "
                "hyper-parameters; the per-task search needs an adapting strategy that declares "
                "them (finetune, lora, codyra; see docs/workflow.md), or set protocol.hp_trials=0.")
        names = tuple(self.params) if self.params is not None else tuple(declared)
        unknown = [n for n in (*names, *self.ranges) if n not in declared]
        if unknown:
            raise ValueError(f"protocol: strategy {label!r} declares no searchable {unknown[0]!r}; "
                             f"it declares {', '.join(declared)}.")
        return {n: check_range(self.ranges.get(n, declared[n]), n) for n in names}


class Snapshot:
    """Strategy, plugin and backbone state at one moment, restorable exactly.

    The strategy's and plugins' ``state_dict`` are deep-copied; for image
    strategies (which may change the backbone in place, as LoRA merging does) the
    backbone's weights are cloned too and written back on :meth:`restore`, which
    then refreshes the backbone fingerprint.
    """

    def __init__(self, strategy: Strategy, plugins: Sequence[Plugin], backbone: Any) -> None:
        self.strategy_state = copy.deepcopy(strategy.state_dict())
        self.plugin_states = [copy.deepcopy(p.state_dict()) for p in plugins]
        model = getattr(backbone, "model", None)
        self.backbone_state = None
        if strategy.inputs == "images" and isinstance(model, torch.nn.Module):
            self.backbone_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def restore(self, strategy: Strategy, plugins: Sequence[Plugin], backbone: Any) -> None:
        if self.backbone_state is not None:
            backbone.model.load_state_dict(self.backbone_state)
            if callable(getattr(backbone, "refresh_fingerprint", None)):
                backbone.refresh_fingerprint()
        strategy.load_state_dict(copy.deepcopy(self.strategy_state))
        for plugin, state in zip(plugins, self.plugin_states, strict=True):
            plugin.load_state_dict(copy.deepcopy(state))


@dataclass
class Trial:
    """One trial of a task's search: its values, dev accuracy (None: diverged) and compute."""

    values: dict[str, Any]
    dev_accuracy: float | None
    counters: dict[str, float]
    records: dict[str, Any]
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        return {**self.values, "dev_accuracy": self.dev_accuracy, **self.counters,
                **({"error": self.error} if self.error else {})}


def search_task(
    t: int,
    protocol: Protocol,
    space: Mapping[str, Range],
    strategy: Strategy,
    plugins: Sequence[Plugin],
    backbone: Any,
    *,
    new_context: Callable[[], Context],
    train: Callable[[Context], None],
    score: Callable[[Context], float],
) -> tuple[int, list[Trial]]:
    """Run task ``t``'s trials and leave the strategy in the chosen trial's trained state.

    Parameters
    ----------
    t : int
        Task index (seeds the trial values with ``protocol.search_seed + t``).
    protocol : Protocol
    space : mapping
        :meth:`Protocol.space` of the strategy.
    strategy, plugins, backbone
        Restored to their starting state before every trial; set to the chosen
        trial's trained state (and values) at the end.
    new_context : callable
        A fresh context of task ``t``, reseeded identically for every trial.
    train : callable
        Trains on the task's train split with a context (hooks included).
    score : callable
        Accuracy on the task's dev split with a context, in [0, 1].

    Returns
    -------
    chosen : int
        Index of the trial kept (highest dev accuracy, earliest on ties).
    trials : list of Trial
        Every trial, its compute included (a diverging trial has ``dev_accuracy``
        None and its ``error``; its compute still counts).

    Raises
    ------
    FloatingPointError
        Every trial diverged.
    """
    values = sample_trials(space, protocol.hp_trials, protocol.search_seed + t)
    start = Snapshot(strategy, plugins, backbone)
    trials: list[Trial] = []
    best: tuple[int, Snapshot] | None = None
    for k, trial_values in enumerate(values):
        if k:
            start.restore(strategy, plugins, backbone)
        strategy.set_hyperparameters(trial_values)
        ctx = new_context()
        records: dict[str, Any] = {}
        ctx.record = records.__setitem__
        try:
            train(ctx)
            accuracy, error = score(ctx), None
        except FloatingPointError as err:  # a learning rate too high for this task
            accuracy, error = None, str(err)
        trials.append(Trial(dict(trial_values), accuracy, dict(ctx.counters), records, error))
        if accuracy is not None and (best is None or accuracy > trials[best[0]].dev_accuracy):
            best = (k, Snapshot(strategy, plugins, backbone))
    if best is None:
        raise FloatingPointError(
            f"all {len(trials)} trials of task {t} diverged (last: {trials[-1].error}); narrow "
            "the ranges, e.g. --set protocol.ranges.lr='[\"log-uniform\", 1e-5, 1e-2]'.")
    chosen, state = best
    if chosen != len(trials) - 1:
        state.restore(strategy, plugins, backbone)
    strategy.set_hyperparameters(trials[chosen].values)
    return chosen, trials


__all__ = ["RANGE_KINDS", "Protocol", "Range", "Snapshot", "Trial", "check_range", "sample_trials",
           "sample_values", "search_task"]
