"""LoRA merging and the explicit attention against peft and torch.

References executed (imported unmodified): peft's ``LoraModel`` / ``Linear.get_delta_weight`` /
``merge_and_unload`` and torch's ``nn.MultiheadAttention`` (the attention open_clip 3.x uses).

On ``cl-tiny-vit`` (random weights, float64, both towers, all 6 targets, 24 linears):

* ``lora`` strategy merge: the strategy's own ``_inject`` (peft, r = 4) and ``_unload(merge=True)``
  followed by ``restore_attention``; every ``lora_B`` random. Compared: image and text
  embeddings of the merged plain open_clip model vs the unmerged peft model, and each merged
  linear (read back from ``in_proj_weight`` / ``out_proj`` / ``c_fc`` / ``c_proj``) vs
  ``W + get_delta_weight("default")`` taken from peft before merging.
* ``GatedLoRALinear`` (CoDyRA's layer, ours): with gate g, ``delta_weight`` and ``merged`` vs
  peft's ``get_delta_weight`` of a peft layer holding A and B·diag(g) (scale α/r = 1).
* ``ExplicitAttention`` (``placement.prepare``): ``encode_image`` / ``encode_text`` vs the
  original model with ``nn.MultiheadAttention`` (float32 and float64), and after
  ``restore_attention`` the state dict vs the original.
"""

from __future__ import annotations

import common

NAME = "lora-peft"
DESCRIPTION = "LoRA merge, gated LoRA layer and explicit attention vs peft and torch"
REFERENCES = (common.PyPI("peft", "0.22.0"), common.PyPI("torch", "2.14.1"))


def _inputs(backbone, dtype):
    import torch

    g = torch.Generator().manual_seed(1)
    images = torch.randn(4, 3, 32, 32, generator=g, dtype=dtype)
    tokens = backbone.tokenizer(["a photo of a 0.", "a photo of a 7.", "a cat", "digits"])
    return images, tokens


def _encode(model, images, tokens):
    import torch

    with torch.no_grad():
        return torch.cat([model.encode_image(images), model.encode_text(tokens)])


def _merged_weight(model, name):
    """The plain open_clip weight an adapted linear ``name`` was merged into."""
    block, _, target = name.rpartition(".")
    if target in ("c_fc", "c_proj", "out_proj"):
        return model.get_submodule(name).weight
    d = model.get_submodule(block).in_proj_weight.shape[1]
    i = ("q_proj", "k_proj", "v_proj").index(target)
    return model.get_submodule(block).in_proj_weight[i * d:(i + 1) * d]


def run(refs: common.Refs) -> list[common.Row]:
    for ref in REFERENCES:
        refs.path(ref)
    import copy

    import torch
    from peft import LoraConfig
    from peft.tuners.lora import LoraModel

    from cl.models.backbones import create_backbone
    from strategies.lora import TARGETS, GatedLoRALinear
    from strategies.lora.placement import prepare, restore_attention
    from strategies.lora.plain import LoRA

    backbone = create_backbone("cl-tiny-vit")
    rows = []

    # the lora strategy's peft injection and merge
    model = copy.deepcopy(backbone.model).double()
    images, tokens = _inputs(backbone, torch.float64)
    strategy = LoRA(rank=4)
    names = prepare(model, "both", TARGETS)
    strategy._inject(model, names, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for layer in strategy._layers().values():
            w = layer.lora_B["default"].weight
            w.copy_(0.1 * torch.randn(w.shape, generator=g, dtype=w.dtype))
        unmerged = _encode(model, images, tokens)
        expected = {n: layer.base_layer.weight + layer.get_delta_weight("default")
                    for n, layer in strategy._layers().items()}
    strategy._unload(model, merge=True)
    restore_attention(model)
    merged = _encode(model, images, tokens)
    wd = max(common.max_diff(_merged_weight(model, n), e)[0] for n, e in expected.items())
    rows.append(common.Row("`lora` merge (`_unload(merge=True)` + `restore_attention`)",
                           f"{len(expected)} merged open_clip weights vs W + peft "
                           "get_delta_weight", wd, tol=1e-14))
    d, r = common.max_diff(merged, unmerged)
    rows.append(common.Row("`lora` merge", "image and text embeddings, merged vs peft unmerged",
                           d, r, tol=1e-12))

    # CoDyRA's gated layer vs a peft layer holding the same factors
    worst = 0.0
    for shape, rank in (((32, 32), 3), ((64, 16), 5), ((16, 48), 8)):
        base = torch.nn.Linear(shape[1], shape[0]).double()
        gated = GatedLoRALinear(copy.deepcopy(base), rank, generator=torch.Generator().manual_seed(rank))
        with torch.no_grad():
            gated.lora_B.normal_(0, 0.3, generator=g)
            gated.gate[0] = 0.0
        holder = torch.nn.Sequential(copy.deepcopy(base))
        peft_model = LoraModel(holder, LoraConfig(r=rank, lora_alpha=rank, target_modules=["0"]),
                               "default")
        layer = peft_model.model[0]
        with torch.no_grad():
            layer.lora_A["default"].weight.copy_(gated.lora_A)
            layer.lora_B["default"].weight.copy_(gated.lora_B * gated.gate)
            ref = layer.get_delta_weight("default")
            worst = max(worst, common.max_diff(gated.delta_weight(), ref)[0])
            merged_w = copy.deepcopy(gated).merged().weight
            worst = max(worst, common.max_diff(merged_w, base.weight + ref)[0])
    rows.append(common.Row("`GatedLoRALinear` (codyra)", "ΔW and merged W vs peft "
                           "get_delta_weight of A, B·diag(g) (3 shapes, a zero gate)", worst,
                           tol=1e-15))

    # explicit q/k/v/out attention vs nn.MultiheadAttention
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
        original = copy.deepcopy(backbone.model).to(dtype)
        images, tokens = _inputs(backbone, dtype)
        split = copy.deepcopy(original)
        prepare(split, "both", TARGETS)
        d, r = common.max_diff(_encode(split, images, tokens), _encode(original, images, tokens))
        rows.append(common.Row("`ExplicitAttention` (`placement.prepare`)",
                               "image and text embeddings vs nn.MultiheadAttention", d, r,
                               dtype=str(dtype).removeprefix("torch."), tol=tol))
    restore_attention(split)
    state, ref_state = split.state_dict(), original.state_dict()
    folded = sum(not torch.equal(state[k], ref_state[k]) for k in ref_state)
    folded += len(set(state) ^ set(ref_state))
    rows.append(common.Row("`restore_attention`", "state dict entries differing from the "
                           "original after folding back", folded, dtype="count", tol=0))
    return rows
