"""The NEVIS'22 protocol's per-task search values against dm_nevis's own ``hype.py``.

Reference executed: deepmind/dm_nevis ``experiments_jax/training/hype.py``, imported unmodified
(it needs only the standard library). Its functions are called with the arguments
``experiments_jax/configs/finetuning_dknn.py`` ``search_space_creator`` passes them
(``zipit`` of ``sweep("…init_learning_rate", log_uniform_random_values(1e-4, 1e-1,
seed=seed + 1, n))`` and ``sweep("label_smoothing", uniform_random_values(0.0, 0.3,
seed=seed + 2, n))``), with ``seed`` the number of tasks seen before, as
``finetuning_dknn_learner.py`` seeds it. That composition is the config's, re-stated here (it is
a closure inside ``get_config``, which imports JAX).

Ours: ``cl.core.selection.sample_trials(Finetune.searchable, n, seed=task)``, the trial values
the ``finetune`` strategy's per-task search draws. Compared: tasks 0 … 105 × 1, 2, 16 and 64
trials, every value, bitwise.
"""

from __future__ import annotations

import common

NAME = "protocol"
DESCRIPTION = "NEVIS'22 per-task hyper-parameter trial values vs dm_nevis hype.py"
REFERENCES = (common.Git("deepmind/dm_nevis", "37ccf1e2dd894a13a8a4f6ceb150d2e7599301d0"),)


def run(refs: common.Refs) -> list[common.Row]:
    src = refs.path(REFERENCES[0])
    from cl.core.selection import sample_trials
    from strategies.finetune import Finetune

    hype = common.import_file(src / "experiments_jax" / "training" / "hype.py",
                              "fidelity_ref_dm_nevis_hype")
    lr_key = "optimization.learning_rate_schedule.init_learning_rate"
    worst, count = 0.0, 0
    for task in range(106):
        for n in (1, 2, 16, 64):
            ref = list(hype.zipit(
                hype.sweep(lr_key, hype.log_uniform_random_values(1e-4, 1e-1, seed=task + 1,
                                                                  n=n)),
                hype.sweep("label_smoothing", hype.uniform_random_values(0.0, 0.3,
                                                                         seed=task + 2, n=n))))
            ours = sample_trials(Finetune.searchable, n, seed=task)
            for r, o in zip(ref, ours, strict=True):
                worst = max(worst, abs(r[lr_key] - o["lr"]),
                            abs(r["label_smoothing"] - o["label_smoothing"]))
                count += 1
    return [common.Row("`cl.core.selection.sample_trials` (`finetune` searchable)",
                       f"learning rate and label smoothing of {count:,} trials (tasks 0 … 105 "
                       "× 1, 2, 16, 64 trials)", worst, tol=0.0)]
