"""cl: continual learning on frozen vision-language models.

The public API is re-exported here and imported on first use, so ``import cl``
(and the ``cl`` command line) stays free of torch until something needs it::

    from cl import Runner, Strategy, Context, TaskData, Plugin, metrics, create_backbone
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
#: The distribution name on package indexes (the import names stay `cl`, `strategies`, `streams`).
DISTRIBUTION = "cl-vlm"

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Runner": "cl.core.runner",
    "RunResult": "cl.core.runner",
    "Strategy": "cl.core.strategy",
    "Context": "cl.core.strategy",
    "TaskData": "cl.core.strategy",
    "Plugin": "cl.core.plugin",
    "Tracker": "cl.core.tracker",
    "create_backbone": "cl.models.backbones",
    "RunConfig": "cl.config.run_config",
    "Protocol": "cl.core.selection",
}
_MODULES: dict[str, str] = {"metrics": "cl.metrics"}

if TYPE_CHECKING:
    from cl import metrics
    from cl.config.run_config import RunConfig
    from cl.core.plugin import Plugin
    from cl.core.runner import Runner, RunResult
    from cl.core.selection import Protocol
    from cl.core.strategy import Context, Strategy, TaskData
    from cl.core.tracker import Tracker
    from cl.models.backbones import create_backbone


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, *_MODULES])


__all__ = ["Context", "Plugin", "Protocol", "RunConfig", "RunResult", "Runner", "Strategy",
           "TaskData", "Tracker", "create_backbone", "metrics"]
