"""MoE-Adapters' noisy top-k gating, expert load and balance terms against its block's methods.

Reference executed: JiazuoYu/MoE-Adapters4CL ``mtil/clip/model.py``
``ResidualAttentionBlock.noisy_top_k_gating``, ``_prob_in_top_k``, ``_gates_to_load`` and
``cv_squared``, ast-extracted unchanged, bound to a stand-in block holding what its
``__init__`` sets for them (``softmax = nn.Softmax(1)``, ``softplus = nn.Softplus()``,
``noisy_gating = True``, ``top_k``, ``experts_num``, buffers ``mean = [0.0]``, ``std = [1.0]``).
The reference draws its noise with ``torch.randn_like`` from the global generator; ours takes the
noise as an argument: the same draws (``torch.manual_seed`` before each side).

Ours: ``strategies.adaptation.moe.noisy_top_k_gating`` and ``balance_loss`` (its ``cv_squared``).
Inputs: 16 tokens × D = 32, 22 experts (the reference's), k = 1, 2, 5, noisy (training) and
clean (evaluation) gating, 5 seeds. Compared: gates, load and the balance term
``cv²(Σ gates) + cv²(load)``. Not compared here: the dispatch of samples to experts (see the
ledger's stated deviation on its unstable sort).
"""

from __future__ import annotations

import common

NAME = "moe-gating"
DESCRIPTION = "MoE-Adapters noisy top-k gating, load and balance terms vs its block methods"
REFERENCES = (common.Git("JiazuoYu/MoE-Adapters4CL", "4572d97d28d3a7b45e8808bee1d3c64263f425f2"),)
EXPERTS = 22


def run(refs: common.Refs) -> list[common.Row]:
    src = refs.path(REFERENCES[0]) / "mtil" / "clip" / "model.py"
    from types import SimpleNamespace

    import torch
    from torch import nn
    from torch.distributions.normal import Normal

    from strategies.adaptation.moe import balance_loss, noisy_top_k_gating

    names = ["ResidualAttentionBlock.noisy_top_k_gating", "ResidualAttentionBlock._prob_in_top_k",
             "ResidualAttentionBlock._gates_to_load", "ResidualAttentionBlock.cv_squared"]
    ref = common.load_source(src, names, namespace={"torch": torch, "Normal": Normal})
    worst = {"gates": 0.0, "load": 0.0, "balance": 0.0}
    cases = 0
    for k in (1, 2, 5):
        block = SimpleNamespace(softmax=nn.Softmax(1), softplus=nn.Softplus(), noisy_gating=True,
                                top_k=k, experts_num=EXPERTS, mean=torch.tensor([0.0]),
                                std=torch.tensor([1.0]))
        for name in ("_prob_in_top_k", "_gates_to_load", "cv_squared"):
            setattr(block, name, getattr(ref, name).__get__(block))
        for seed in range(5):
            g = torch.Generator().manual_seed(100 * k + seed)
            x = torch.randn(16, 32, generator=g)
            w_gate, w_noise = torch.randn(32, EXPERTS, generator=g), torch.randn(32, EXPERTS,
                                                                                  generator=g)
            for train in (True, False):
                torch.manual_seed(seed)
                gates_r, load_r = ref.noisy_top_k_gating(block, x, train, w_gate, w_noise)
                balance_r = block.cv_squared(gates_r.sum(0)) + block.cv_squared(load_r)
                torch.manual_seed(seed)
                noise = torch.randn(16, EXPERTS) if train else None
                gates, load = noisy_top_k_gating(x, w_gate, w_noise, top_k=k, noise=noise)
                worst["gates"] = max(worst["gates"], common.max_diff(gates, gates_r)[0])
                worst["load"] = max(worst["load"], common.max_diff(load, load_r)[0])
                worst["balance"] = max(worst["balance"], common.max_diff(
                    balance_loss(gates, load), balance_r.reshape(()))[0])
                cases += 1
    what = f"{cases} cases (k = 1, 2, 5; noisy and clean; 16 tokens, 22 experts)"
    return [common.Row("`noisy_top_k_gating` (moe-adapters)", f"gates, {what}", worst["gates"],
                       dtype="float32", tol=1e-6),
            common.Row("`noisy_top_k_gating` (moe-adapters)", f"expert load, {what}",
                       worst["load"], dtype="float32", tol=1e-5),
            common.Row("`balance_loss` (moe-adapters)", f"cv²(Σ gates) + cv²(load), {what}",
                       worst["balance"], dtype="float32", tol=1e-5)]
