"""`cl run --seeds`: one run directory per seed, aggregated by `cl compare`."""

import json

import numpy as np
import pytest

from cl.cli import main
from cl.cli.run import parse_seeds


def test_seeds_run_once_each_and_compare_prints_mean_std_with_n(tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["run", "--seeds", "0,1", "--strategy", "finetune", "--set", "strategy.epochs=2",
                 "--set", "stream.n_tasks=2", "--out", str(out), "--no-progress"]) == 0
    results = [json.loads((out / f"seed-{s}" / "results.json").read_text()) for s in (0, 1)]
    assert [r["seed"] for r in results] == [0, 1]
    capsys.readouterr()
    assert main(["compare", str(out)]) == 0
    text = capsys.readouterr().out
    (row,) = [ln for ln in text.splitlines() if ln.startswith("| finetune")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    acc = np.array([r["metrics"]["average_accuracy"] for r in results])
    assert cells[2:4] == ["2", "0,1"]  # n = 2, the seeds
    assert f"{100 * acc.mean():.1f} ± {100 * acc.std(ddof=1):.1f}" in cells


def test_bad_seed_lists_are_errors(capsys):
    assert parse_seeds("3, 1,2") == [3, 1, 2]
    for text in ("0,a", "1,1", ","):
        with pytest.raises(ValueError, match="--seeds expects"):
            parse_seeds(text)
    assert main(["run", "--seeds", "0,1", "--seed", "2", "--dry-run"]) == 2
    assert "cannot be combined with --seed" in capsys.readouterr().err
