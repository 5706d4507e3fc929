"""The registered strategies and plugins, by name, imported only when built.

Adding a strategy to the library is one line here: its name and the
``module:Class`` that builds it. ``cl list strategies`` reads descriptions and
options from the source, so listing imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cl.config.registry import Registry

if TYPE_CHECKING:
    from cl.core.plugin import Plugin
    from cl.core.strategy import Strategy

STRATEGIES: Registry[Strategy] = Registry("strategy", "strategies")
for _name, _target, *_reserved in (  # reserved: filled by the library (the run's data root)
    ("zeroshot", "heads.zeroshot:ZeroShotStrategy"),
    ("nmc", "heads.nmc:NMCStrategy"),
    ("gda", "heads.gda:GDAStrategy"),
    ("ranpac", "heads.ranpac:RanPACStrategy"),
    ("fecam", "heads.fecam:FeCAMStrategy"),
    ("rail", "heads.rail:RAILStrategy"),
    ("klda", "heads.klda:KLDAStrategy"),
    ("finetune", "finetune:Finetune"),
    ("lora", "lora.plain:LoRA"),
    ("codyra", "lora.codyra:RankSelectiveLoRA"),
    ("clip-finetune", "adaptation.finetune:CLIPFinetune"),
    ("lwf", "adaptation.finetune:LwF"),
    ("wise-ft", "adaptation.finetune:WiseFT"),
    ("zscl", "adaptation.zscl:ZSCL", "data_root"),
    ("moe-adapters", "adaptation.moe_adapters:MoEAdapters", "data_root"),
    ("slca", "adaptation.slca_strategy:SLCA"),
    ("l2p", "prompts.l2p:L2P"),
    ("dualprompt", "prompts.dualprompt:DualPrompt"),
    ("coda-prompt", "prompts.coda_prompt:CodaPrompt"),
    ("magmax", "adaptation.magmax:MagMax"),
    ("diki", "adaptation.diki:DIKI"),
    ("contrastive-ft", "imagetext.base:ContrastiveFinetune"),
    ("er-contrastive", "imagetext.replay:ERContrastive"),
    ("mod-x", "imagetext.modx:ModX"),
    ("ctp", "imagetext.ctp:CTP"),
    ("proof", "cil.proof:PROOF"),
    ("rapf", "cil.rapf:RAPF"),
    ("engine", "cil.engine:ENGINE"),
    ("clap4clip", "cil.clap4clip:CLAP4CLIP"),
):
    STRATEGIES.register(_name, f"strategies.{_target}", reserved=tuple(_reserved))

PLUGINS: Registry[Plugin] = Registry("plugin")
"""Plugins attachable by name (``--plugin NAME``, ``[plugins.NAME]`` in a config)."""
for _name, _target in (
    ("replay", "plugins.replay:ReplayPlugin"),
    ("zero-shot-retention", "plugins.retention:ZeroShotRetention"),
):
    PLUGINS.register(_name, f"strategies.{_target}")
