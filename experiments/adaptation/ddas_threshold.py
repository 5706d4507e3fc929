"""Reconstruction errors of DDAS autoencoders on ``toy-clip`` features, seen vs unseen domains.

    python experiments/adaptation/ddas_threshold.py [--n-train 100] [--n-test 50] [--seed 0]

How the DDAS threshold of ``ddas_features = "clip"``
(:data:`strategies.adaptation.options.CLIP_DDAS_THRESHOLD`) was chosen
(docs/adaptation.md, "DDAS threshold"). For every ``toy-mtil`` domain, one autoencoder is
trained exactly as ``moe-adapters`` trains it after a task (:class:`strategies.adaptation.ddas.DDAS`
with the strategy's defaults: 301 Adam steps, batch 64, rate 0.01 ×0.1 every 10 epochs) on the
selector features of the domain's training images (the frozen zero-shot image embedding
scaled to norm √D); the script prints the batch-mean error (the reference's one decision per
evaluation batch) of every domain's test split under every autoencoder. The diagonal is what a
seen domain scores; an off-diagonal entry is what an unseen domain scores against a seen one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def errors(n_train: int, n_test: int, seed: int) -> tuple[list[str], np.ndarray]:
    """(domains, E) with ``E[j, k]`` (T, T) the error of domain j's test split under domain k's AE."""
    import torch

    import streams
    from cl.models.backbones import create_backbone
    from strategies.adaptation.ddas import DDAS
    from strategies.adaptation.moe_adapters import MoEAdapters
    from strategies.adaptation.zscl import ImagesOnly

    backbone = create_backbone("toy-clip")
    model = backbone.model.eval()
    stream = streams.get("toy-mtil", n_train=n_train, n_test=n_test, seed=seed)
    strategy = MoEAdapters()  # its selector features and DDAS settings

    def features(dataset) -> torch.Tensor:
        data = ImagesOnly(dataset, backbone.preprocess)
        images = torch.stack([data[i][0] for i in range(len(data))])
        with torch.no_grad():
            return torch.cat([strategy.selector_features(model, images[i:i + 256])
                              for i in range(0, len(images), 256)])

    train = [features(task.load_train()) for task in stream]
    test = [features(task.load_test()) for task in stream]
    o = strategy.options
    ddas = DDAS(threshold=o.threshold, code_dim=o.ddas_code_dim, iterations=o.ddas_iterations,
                lr=o.ddas_lr, random_state=seed)
    for k, x in enumerate(train):
        ddas.partial_fit(x, torch.full((len(x),), k))
    E = np.array([ddas.decision_function(x)[0].numpy() for x in test], dtype=float)
    return [task.name for task in stream], E


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-train", type=int, default=100)
    parser.add_argument("--n-test", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import torch

    from strategies.adaptation.options import CLIP_DDAS_THRESHOLD

    torch.set_num_threads(1)
    names, E = errors(args.n_train, args.n_test, args.seed)
    print("| test domain \\ autoencoder | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for name, row in zip(names, E, strict=True):
        print(f"| {name} | " + " | ".join(f"{1000 * v:.1f}" for v in row) + " |")
    print(f"\nerrors × 1000; largest seen (diagonal) {1000 * E.diagonal().max():.2f}, "
          f"threshold in use {1000 * CLIP_DDAS_THRESHOLD:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
