"""``cl export RUN_DIR --to model.safetensors``: the adapted model of a run as a plain open_clip checkpoint.

Strategies that merge their adapters into the backbone (``codyra``, ``lora``)
leave an ordinary open_clip model after every task. Export rebuilds the run's
backbone from ``RUN_DIR/config.toml``, restores the strategy from the newest
checkpoint in ``RUN_DIR/checkpoints/`` (the last finished task), lets it write
its weights into the backbone (``strategy.attach(backbone)``) and saves the
model with :meth:`~cl.models.backbones.OpenCLIPBackbone.save_checkpoint`; load it back
with ``create_backbone("ARCH:/path/model.safetensors")`` or ``--backbone ARCH:/path``.
A run directory may come from someone else: every code file its config names is
printed (with its SHA-256) before it is imported, a name that is not a strategy
class is refused (:mod:`cl.config.code`), and the checkpoint must be the
strategy's own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="write a run's adapted model as an open_clip safetensors checkpoint",
        description="Export the merged model after the last finished task of RUN_DIR.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--to", required=True, metavar="FILE", help="output *.safetensors file")
    p.set_defaults(func=handle)


def export_run(run_dir: str | Path, to: str | Path) -> tuple[Path, int, str]:
    """Write the run's model after its last finished task to ``to``.

    Returns
    -------
    (path, task_index, arch)
        The written file, the task it follows, and the open_clip architecture to load it with.

    Raises
    ------
    FileNotFoundError
        ``run_dir`` is not a run directory, or has no checkpoint.
    ValueError
        ``to`` is not a ``.safetensors`` path, or the run's strategy does not
        adapt its backbone (then the base backbone *is* the model).
    """
    import strategies
    from cl.config import RunConfig
    from cl.config.code import announce
    from cl.core.checkpoint import CheckpointStore, check_resumable, class_tag
    from cl.models.backbones import create_backbone

    run_dir, to = Path(run_dir), Path(to)
    if to.suffix != ".safetensors":
        raise ValueError(f"--to must name a *.safetensors file, got {str(to)!r}.")
    config_path = run_dir / "config.toml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} is not a run directory: no config.toml there.")
    config = RunConfig.from_file(config_path)
    config.resolve_code_paths((run_dir,))
    for line in announce(config.code_specs(), run_dir):
        print(f"cl export: note: {line}", file=sys.stderr)
    strategy = strategies.get(config.strategy, **config.strategy_options)
    if not callable(getattr(strategy, "attach", None)):
        raise ValueError(  # noqa: TRY004  (a property of the run, not a type mistake)
            f"strategy {config.strategy!r} does not change its backbone, so the run's model is "
            f"the base backbone {config.backbone!r} itself; there is nothing to export."
        )
    if not getattr(strategy, "exportable", True):
        raise ValueError(
            f"strategy {config.strategy!r} adds modules open_clip does not have (experts, a "
            "linear head), so its model cannot be written as a plain open_clip checkpoint.")
    state = CheckpointStore(run_dir).load_latest(quarantine=False)
    if state is None:
        raise FileNotFoundError(
            f"no readable checkpoint in {str(run_dir / 'checkpoints')!r}: the run finished no "
            "task yet, so there is no adapted model to export."
        )
    backbone = create_backbone(config.backbone, device="cpu")
    if not callable(getattr(backbone, "save_checkpoint", None)):
        raise ValueError(  # noqa: TRY004
            f"backbone {config.backbone!r} cannot be saved as an open_clip checkpoint.")
    if state.get("owners") is not None:
        check_resumable(state, identity=None, owners={"strategy": {
            "class": class_tag(strategy), "options": config.strategy_options},
            "plugins": state["owners"]["plugins"]})
    strategy.load_state_dict(state["strategy"])
    strategy.attach(backbone)
    return backbone.save_checkpoint(to), int(state["task"]), backbone.arch


def handle(args: argparse.Namespace) -> int:
    path, task, arch = export_run(args.run_dir, args.to)
    print(f"wrote {path} (model after task {task}); load it with --backbone {arch}:{path}")
    return 0
