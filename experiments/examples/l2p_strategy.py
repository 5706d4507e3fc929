"""An L2P-style prompt-pool strategy written as a user would: the method, not a training loop.

Run it from this file, no installation needed::

    cl run --stream toy-cil --backbone toy-clip \\
        --strategy experiments/examples/l2p_strategy.py:PromptPool --set strategy.iterations=20

A pool of prompts with keys (Wang et al., CVPR 2022, §4.2); each image's frozen [CLS]
embedding picks the ``top_k`` prompts whose keys are most cosine-similar; they are inserted
after [CLS] (``cl.models.tokens``), and a linear head reads the prompted [CLS]. The loss is
cross-entropy over the current task's classes minus the similarity of the chosen keys
(L2P eq. 5). ``strategies.TrainingStrategy`` runs the loop (optimiser, schedule, AMP,
FLOPs, plugins, ``torchrun``) and keeps ``trainable_parameters``, ``memory_bytes`` and the
resumable state. The library's faithful implementation is ``--strategy l2p``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cl.models import tokens
from strategies import TrainingStrategy


class PromptPool(TrainingStrategy):
    """Prompt pool with learnable keys, top-k by cosine, prompts after [CLS], linear head."""

    pool_size, length, top_k = 10, 5, 3

    def build(self, model, ctx):  # the runner seeds torch's RNG before every hook
        width, dim = model.visual.transformer.width, model.visual.output_dim
        return {"prompts": nn.Embedding(self.pool_size, self.length * width),
                "key": nn.Embedding(self.pool_size, dim),
                "head": nn.Linear(dim, ctx.stream.n_classes)}

    def forward(self, model, images):
        """Logits over every class of the stream, and the mean similarity of the chosen keys."""
        with torch.no_grad():
            query = F.normalize(model.encode_image(images), dim=-1)
        sim = query @ F.normalize(self.key.weight, dim=-1).T  # (B, pool)
        chosen = sim.topk(self.top_k, dim=1).indices  # (B, top_k)
        prompts = self.prompts(chosen).reshape(len(images), -1, model.visual.transformer.width)
        x = tokens.insert_prompts(tokens.embed_tokens(model.visual, images), prompts)
        x = tokens.run_blocks(model.visual, x)
        features = tokens.pool_and_project(model.visual, x, prompt_tokens=prompts.shape[1])
        return self.head(features), sim.gather(1, chosen).sum(1).mean()

    def loss(self, model, images, targets, ctx):
        logits, pull = self.forward(model, images)
        mine = list(ctx.stream.task_label_space([ctx.task_index]).class_ids)
        return F.cross_entropy(logits[:, mine], targets - mine[0]) - 0.1 * pull

    def logits(self, model, images, label_space):
        return self.forward(model, images)[0][:, list(label_space.class_ids)]
