"""The protocol of a run: what must be equal for two runs' numbers to be compared or averaged.

A run's *protocol* is

- the stream and all its options (resolved with their defaults: task count, split seed,
  test size, ``class_order_seed``), the tasks a run skipped for lack of data, and, where
  the stream records it, the class order used; with ``class_order_seed = "run"`` the order follows the run seed, so the protocol
  holds "run" and each seed brings its own order (reporting over class orders, as
  class-incremental papers do);
- the backbone and its weights fingerprint (``results.json``'s
  ``backbone_fingerprint``: OpenAI and LAION-400M weights of one architecture are two
  protocols);
- the image transform (``image_transform``, recorded by ``cl run``);
- the memory budget: every strategy or plugin option named in
  :data:`MEMORY_BUDGET_OPTIONS` (``plugins.replay.memory_size = 200``).

``cl compare`` prints one table per protocol and never averages across two; ``--over`` a
key of the protocol is refused (:func:`check_over`). A run whose strategy states no memory
budget keeps no examples and is shown beside every budget of its protocol.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cl.reporting.identity import IGNORED, flatten, resolved_config

if TYPE_CHECKING:
    from cl.reporting.runs import RunSummary

#: option names (of strategies and plugins) that state a memory budget in examples
MEMORY_BUDGET_OPTIONS: tuple[str, ...] = ("memory_size", "memory", "mem_size",
                                          "episodic_mem_size", "buffer_size")


def settings(run: RunSummary) -> dict[str, Any]:
    """The run's resolved settings as dotted keys (:func:`cl.reporting.identity.flatten`),
    without paths and speed knobs; ``strategy.name`` is the run's strategy label. A run
    without a config has ``stream.name``, ``strategy.name``, ``backbone``, ``scenario``
    and ``seed``."""
    if run.config is None:
        return {"stream.name": run.stream, "strategy.name": run.strategy,
                "backbone": run.backbone, "scenario": run.scenario, "seed": run.seed}
    flat = flatten({k: v for k, v in resolved_config(run.config).items() if k not in IGNORED})
    flat["strategy.name"] = run.strategy  # the one label, whatever spelling the config used
    return flat


def is_memory_budget(key: str) -> bool:
    """Whether dotted setting ``key`` states a memory budget (``strategy.X``/``plugins.P.X``
    with ``X`` in :data:`MEMORY_BUDGET_OPTIONS`)."""
    head, _, option = key.rpartition(".")
    return head.split(".")[0] in ("strategy", "plugins") and option in MEMORY_BUDGET_OPTIONS


def is_protocol_key(key: str) -> bool:
    """Whether dotted setting ``key`` is part of the protocol (stream, backbone, budget)."""
    return key == "backbone" or key == "stream" or key.startswith("stream.") \
        or is_memory_budget(key)


def protocol_key_reason(key: str) -> str:
    """Why ``key`` may not be aggregated over (for :func:`check_over`'s message)."""
    if key == "stream.class_order_seed":
        return ("the class order is part of the protocol (a fixed order is one protocol); to "
                "report over class orders, run with stream.class_order_seed=run so that each seed "
                "draws its own order, and aggregate over seed")
    if key.startswith("stream"):
        return "the stream and its options (task count, split, class order) define the protocol"
    if key == "backbone":
        return "the backbone and its weights define the protocol"
    return "the memory budget is part of the protocol (methods are compared at a stated memory)"


def check_over(over: Sequence[str], runs: Sequence[RunSummary]) -> None:
    """Refuse ``--over`` keys that no run has or that belong to the protocol.

    Raises
    ------
    ValueError
        Naming the key, the reason and the keys that may be aggregated over.
    """
    present: set[str] = {"seed"}
    for run in runs:
        present.update(settings(run))
    allowed = sorted(k for k in present if not is_protocol_key(k) and k != "strategy.name")
    for key in over:
        if is_protocol_key(key):
            raise ValueError(f"--over {key}: cannot aggregate over {key!r}: "
                             f"{protocol_key_reason(key)}. Keys that may be aggregated over: "
                             f"{', '.join(allowed)}.")
        if key == "strategy.name":
            raise ValueError("--over strategy.name: runs of different strategies are never one "
                             "row; aggregate over a strategy's options (strategy.X) instead.")
        if key not in present:
            raise ValueError(f"--over {key}: no run has the setting {key!r}. Keys that may be "
                             f"aggregated over: {', '.join(allowed)}.")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


@dataclass
class Protocol:
    """What a table's runs share.

    Attributes
    ----------
    stream : dict
        ``stream.X`` settings (name and resolved options).
    backbone : str
    weights : str or None
        The backbone's weights fingerprint.
    transform : str or None
        The image transform as recorded.
    class_order : list of int or None
        The order used when fixed (``None`` when unrecorded or following the seed).
    budget : dict
        Memory budget settings (empty: no run states one).
    """

    stream: dict[str, Any]
    backbone: str
    weights: str | None
    transform: str | None
    class_order: list[int] | None
    budget: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        return json.dumps([self.stream, self.backbone, self.weights, self.transform,
                           self.class_order, self.budget], sort_keys=True, default=str)

    def describe(self) -> str:
        """One line naming the protocol (a table's header)."""
        name = self.stream.get("stream.name", "?")
        options = {k.split(".", 1)[1]: v for k, v in self.stream.items()
                   if k not in ("stream.name", "stream.class_order_seed")}
        order_seed = self.stream.get("stream.class_order_seed")
        if order_seed == "run":
            order = "class order drawn from each run's seed (stream.class_order_seed=run)"
        elif self.class_order is not None:
            how = ("natural" if order_seed is None else "explicit"
                   if isinstance(order_seed, list) else f"seed {order_seed}")
            shown = ", ".join(map(str, self.class_order[:12]))
            order = f"class order {how}: [{shown}{', …' if len(self.class_order) > 12 else ''}]"
        elif order_seed is not None:
            order = f"class order seed {order_seed}"
        else:
            order = ""  # the stream has no class order option and records none
        text = (f"stream {name}" + (f" ({', '.join(f'{k}={v}' for k, v in options.items())})"
                                     if options else "")
                + (f"; {order}" if order else "") + f"; backbone {self.backbone}"
                + (f" (weights {self.weights})" if self.weights and self.weights != self.backbone
                   else "")
                + (f"; image transform {_digest(self.transform)}" if self.transform else ""))
        if self.budget:
            text += "; memory budget " + ", ".join(f"{k}={v}" for k, v in self.budget.items())
        return text


def protocol_of(run: RunSummary) -> Protocol:
    """The protocol of ``run`` (see the module docstring)."""
    flat = settings(run)
    stream = {k: v for k, v in flat.items() if k == "stream" or k.startswith("stream.")}
    if run.skipped_tasks:  # --skip-missing: a stream without these tasks is another stream
        stream["stream.skipped_tasks"] = sorted(run.skipped_tasks)
    order = None if stream.get("stream.class_order_seed") == "run" else run.class_order
    return Protocol(stream=stream, backbone=str(flat.get("backbone", run.backbone)),
                    weights=run.backbone_fingerprint, transform=run.image_transform,
                    class_order=order,
                    budget={k: v for k, v in flat.items() if is_memory_budget(k)})


def split_by_protocol(runs: Sequence[RunSummary]) -> list[tuple[Protocol, list[RunSummary]]]:
    """Runs partitioned by protocol, in order of first appearance.

    Runs that state no memory budget join every budget of their protocol (they keep no
    examples, so they meet any budget); alone, they form their own table.
    """
    tables: dict[str, tuple[Protocol, list[RunSummary]]] = {}
    free: dict[str, list[RunSummary]] = {}
    for run in runs:
        protocol = protocol_of(run)
        if protocol.budget:
            tables.setdefault(protocol.key(), (protocol, []))[1].append(run)
        else:
            free.setdefault(protocol.key(), []).append(run)
    out = list(tables.values())
    for key, members in free.items():
        base = protocol_of(members[0])
        with_budget = [(p, rs) for p, rs in out if _without_budget(p).key() == key]
        if with_budget:
            for _, rs in with_budget:
                rs.extend(members)
        else:
            out.append((base, list(members)))
    return out


def _without_budget(protocol: Protocol) -> Protocol:
    return Protocol(protocol.stream, protocol.backbone, protocol.weights, protocol.transform,
                    protocol.class_order)


__all__ = ["MEMORY_BUDGET_OPTIONS", "Protocol", "check_over", "is_memory_budget",
           "is_protocol_key", "protocol_of", "settings", "split_by_protocol"]
