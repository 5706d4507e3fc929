"""The zero-shot head against ``open_clip.build_zero_shot_classifier``.

Reference executed: open_clip's own ``build_zero_shot_classifier`` (imported unmodified) on the
same model and tokenizer: ``cl-tiny-vit`` (random weights, shipped with cl), 10 digit names, with 1 template, open_clip's 18 SIMPLE templates and its 80 OpenAI ImageNet
templates. open_clip's templates are lambdas; ours are format strings
(``cl.models.prompts.template_set``), given the same texts. Compared: the (C, D) head.
"""

from __future__ import annotations

import common

NAME = "zeroshot"
DESCRIPTION = "zero-shot head vs open_clip.build_zero_shot_classifier"
REFERENCES = (common.PyPI("open_clip_torch", "3.3.0"),)


def run(refs: common.Refs) -> list[common.Row]:
    refs.path(REFERENCES[0])
    import open_clip
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    from cl.models.backbones import create_backbone
    from cl.models.prompts import zero_shot_head

    tiny = create_backbone("cl-tiny-vit")
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    sets = {"1": (lambda c: f"a photo of a {c}.",),
            "18 SIMPLE": SIMPLE_IMAGENET_TEMPLATES, "80 OpenAI": OPENAI_IMAGENET_TEMPLATES}
    rows = []
    for label, lambdas in sets.items():
        formats = [t("{}") for t in lambdas]  # the same texts, as format strings
        ours = zero_shot_head(tiny, names, formats, cache=False)
        ref = open_clip.build_zero_shot_classifier(tiny.model, tiny.tokenizer, names, lambdas,
                                                   num_classes_per_batch=7, use_tqdm=False).T
        d, r = common.max_diff(ours, ref)
        rows.append(common.Row("`cl.models.prompts.zero_shot_head`",
                               f"head (10 classes × {label} templates, cl-tiny-vit)", d, r,
                               dtype="float32", tol=1e-5))
    return rows
