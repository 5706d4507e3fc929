"""The memory-aligned view (``cl compare --memory``) and AUC-A / AUC-L (Zhou et al., survey)."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest

import strategies
import streams
from cl.cli.app import main
from cl.core.runner import Runner
from cl.models.backbones import create_backbone
from cl.reporting.memory import (
    SURVEY_BUDGETS_MB,
    SURVEY_IMAGE_BYTES,
    area_under_curve,
    survey_memory_mb,
)


def test_area_is_the_trapezoid_of_the_sorted_points():
    rng = np.random.default_rng(0)
    mem = rng.uniform(1, 50, size=6)
    acc = rng.uniform(0, 1, size=6)
    order = np.argsort(mem)
    expected = float(np.sum(np.diff(mem[order]) * (acc[order][1:] + acc[order][:-1]) / 2))
    assert area_under_curve(mem.tolist(), acc.tolist()) == pytest.approx(expected, rel=1e-12)
    assert area_under_curve(mem.tolist(), acc.tolist()) == pytest.approx(
        float(np.trapezoid(acc[order], mem[order])), rel=1e-12)


def test_area_rejects_what_has_no_area():
    with pytest.raises(ValueError, match="two or more"):
        area_under_curve([1.0], [0.5])
    with pytest.raises(ValueError, match="same memory"):
        area_under_curve([1.0, 1.0], [0.5, 0.6])


def test_survey_memory_counts_float_parameters_and_byte_images():
    # ResNet-32 (463,504 parameters) with 2,000 CIFAR exemplars: the survey's 7.6 MB first budget.
    mb = survey_memory_mb(463504, 2000, SURVEY_IMAGE_BYTES["cifar100"])
    assert mb == pytest.approx(463504 * 4 / 2**20 + 2000 * 3072 / 2**20)
    assert mb == SURVEY_BUDGETS_MB["cifar100"][0] and round(mb, 1) == 7.6  # the docstring's 7.6


def test_compare_memory_prints_auc_of_one_method_at_three_budgets(tmp_path, capsys):
    backbone = create_backbone("toy-clip")
    stream = streams.get("toy-cil", n_tasks=2, n_train=6, n_test=4, seed=0)
    cache = str(tmp_path / "cache")
    points = []
    for budget in (10, 20, 40):  # 1, 2, 4 per class of the 10 seen
        out = tmp_path / f"proof-{budget}"
        strategy = strategies.get("proof", epochs=1, batch_size=8, memory_size=budget)
        Runner(stream, strategy, copy.deepcopy(backbone), out_dir=out, seed=0, progress=False,
               cache_dir=cache).run()
        r = json.loads((out / "results.json").read_text())
        points.append((r["compute"][-1]["memory_bytes"] / 2**20,
                       r["metrics"]["average_incremental_accuracy"],
                       r["metrics"]["average_accuracy"], r["records"][-1]["exemplars"]))
    assert [p[3] for p in points] == [10, 20, 40]
    assert main(["compare", "--memory", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    mem = np.array([p[0] for p in points])
    auc_a = np.trapezoid([p[1] for p in points], mem)
    auc_l = np.trapezoid([p[2] for p in points], mem)
    row = next(line for line in text.splitlines() if line.startswith("| proof |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "yes"
    assert float(cells[4]) == pytest.approx(auc_a, rel=1e-5)
    assert float(cells[5]) == pytest.approx(auc_l, rel=1e-5)
    assert len(re.findall(r"^\| proof-\d+ \|", text, flags=re.MULTILINE)) == 3
