"""Comparisons that cannot mislead, on real `cl run` directories (nmc on split-digits): each run
identity counted once, only finished runs aggregated (the others listed with the state `cl sweep
--status` reads), one table per protocol, `--over` checked, seeds kept exactly, the class order
following the run seed, and ± 0 of identical runs said to be what it is."""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest

import strategies
import streams
from cl import Runner, create_backbone
from cl.cli import main
from cl.reporting.compare import compare, select
from cl.runtime.seeding import MAX_SEED, derive_seed
from cl.sweep.index import read_index, run_state, write_index
from cl.sweep.local import prepare
from cl.sweep.spec import SweepSpec

FAST = ["--no-progress"]
TWO = ["--set", "stream.n_tasks=2"]


def run(out, *args):
    assert main(["run", "--out", str(out), *FAST, *args]) == 0
    return out


@pytest.fixture(scope="module")
def nmc(tmp_path_factory):
    """nmc on split-digits in 2 tasks: seeds 0 and 1 with the default (fixed) class order, and
    with the class order drawn from the run seed; seed 0 in 5 tasks."""
    root = tmp_path_factory.mktemp("nmc")
    run(root / "fixed", "--seeds", "0,1", *TWO)
    run(root / "five")
    run(root / "orders", "--seeds", "0,1", "--set", "stream.class_order_seed=run", *TWO)
    return root


def results(run_dir):
    return json.loads((run_dir / "results.json").read_text())


def test_a_run_reached_twice_is_counted_once_and_the_duplicate_is_named(nmc, capsys, table_rows):
    assert main(["compare", str(nmc / "fixed" / "seed-0"), str(nmc / "fixed" / "seed-0")]) == 0
    text = capsys.readouterr().out
    (row,) = table_rows(text)
    assert (row["n"], row["seeds"]) == ("1", "0")
    assert "## Duplicates left out (each run counted once)" in text
    assert f"- {nmc / 'fixed' / 'seed-0'} (seed 0): reached more than once; counted once" in text
    # a directory and its parent: the parent's seed-0 is the one already given
    rows = table_rows(compare([nmc / "fixed" / "seed-0", nmc / "fixed"]))
    assert [(r["n"], r["seeds"]) for r in rows] == [("2", "0,1")]


def test_two_directories_of_one_identity_are_one_run(nmc, tmp_path):
    """A copy, or a run of the same config and seed written elsewhere (a grid over `out`), even
    with an option spelled out at its default value."""
    shutil.copytree(nmc / "fixed" / "seed-1", tmp_path / "copy")
    again = run(tmp_path / "again", "--seed", "1", *TWO, "--set", "strategy.metric=cosine")
    comparison = select([nmc / "fixed", tmp_path / "copy", again])
    assert [len(g.runs) for _, groups in comparison.tables for g in groups] == [2]
    assert sorted(d.run.path.name for d in comparison.duplicates) == ["again", "copy"]
    assert {d.kept.path for d in comparison.duplicates} == {nmc / "fixed" / "seed-1"}
    assert all(d.reason == "the same config, seed and code" for d in comparison.duplicates)
    assert not select([nmc / "fixed"]).duplicates  # another seed is another run


def test_seeds_are_kept_exactly_or_refused(tmp_path, capsys):
    """Task seeds are taken modulo 2**31 - 1: 0 and 2**31 - 1 would be one run under two names."""
    assert main(["run", "--seeds", f"0,{MAX_SEED + 1}", "--out", str(tmp_path / "s"), *FAST]) == 2
    err = capsys.readouterr().err
    assert f"got {MAX_SEED + 1}" in err and "would draw exactly what seed 0 draws" in err
    assert not (tmp_path / "s").exists()
    assert main(["run", "--seed", "-1", "--dry-run"]) == 2
    assert "must be between 0 and 2147483646" in capsys.readouterr().err
    with pytest.raises(ValueError, match="Runner seed must be between 0 and 2147483646"):
        Runner(streams.get("split-digits"), strategies.get("nmc"), create_backbone("pixels"),
               out_dir=tmp_path / "r", seed=MAX_SEED + 1)
    # inside the range every seed draws its own task seeds
    edge = [0, 1, MAX_SEED - 1, MAX_SEED]
    assert len({derive_seed(s, t) for s in edge for t in (-1, 0)}) == 2 * len(edge)


def test_different_task_counts_are_two_protocols_never_one_row(nmc, capsys, table_rows, tables):
    text = compare([nmc / "fixed", nmc / "five"])
    sections = [h for h in tables(text) if h and h.startswith("P")]
    assert len(sections) == 2
    assert sections[0].startswith("P1: stream split-digits (n_tasks=2")
    assert sections[1].startswith("P2: stream split-digits (n_tasks=5")
    assert [(r["n"], r["seeds"]) for r in table_rows(text)] == [("2", "0,1"), ("1", "0")]
    assert "numbers of two tables are not directly comparable" in text
    assert main(["compare", str(nmc / "fixed"), str(nmc / "five"),
                 "--over", "seed,stream.n_tasks"]) == 2
    err = capsys.readouterr().err
    assert "cannot aggregate over 'stream.n_tasks'" in err
    assert "the stream and its options (task count, split, class order) define the protocol" in err


def test_over_keys_must_exist_and_leave_the_protocol_alone(nmc, capsys):
    assert main(["compare", str(nmc / "fixed"), "--over", "strategy.bogus"]) == 2
    err = capsys.readouterr().err
    assert "no run has the setting 'strategy.bogus'" in err and "strategy.metric" in err
    assert main(["compare", str(nmc / "fixed"), "--over", "stream.class_order_seed"]) == 2
    assert "stream.class_order_seed=run" in capsys.readouterr().err
    assert main(["compare", str(nmc / "fixed"), "--over", "backbone"]) == 2
    assert "the backbone and its weights define the protocol" in capsys.readouterr().err
    assert main(["compare", str(nmc / "fixed"), "--over", "strategy.metric"]) == 0


def test_the_class_order_follows_the_run_seed_and_the_std_is_real(nmc, table_rows):
    orders = [results(nmc / "orders" / f"seed-{s}")["class_order"] for s in (0, 1)]
    assert orders[0] != orders[1] and sorted(orders[0]) == sorted(orders[1]) == list(range(10))
    names = [results(nmc / "orders" / f"seed-{s}")["class_names"][0] for s in (0, 1)]
    assert names == [[str(c) for c in o[:5]] for o in orders]  # the tasks were cut in that order
    assert results(nmc / "fixed" / "seed-1")["class_order"] == list(range(10))
    text = compare([nmc / "orders"])
    (row,) = table_rows(text)
    assert row["n"] == "2" and "class order drawn from each run's seed" in text
    values = [results(nmc / "orders" / f"seed-{s}")["metrics"]["average_incremental_accuracy"]
              for s in (0, 1)]
    mean, std = sum(values) / 2, abs(values[0] - values[1]) / 2**0.5
    assert std > 0 and row["avg inc acc (%)"] == f"{100 * mean:.1f} ± {100 * std:.1f}"
    assert "†" not in row["avg inc acc (%)"]


def test_a_zero_std_of_identical_runs_says_the_seed_changes_nothing(nmc, table_rows):
    text = compare([nmc / "fixed"])
    (row,) = table_rows(text)
    assert row["avg inc acc (%)"].endswith("± 0.0†")
    assert "† The runs of this row gave identical score matrices: on this protocol the seed " \
           "changes nothing" in text


FAILING = """
from strategies.heads.nmc import NMCStrategy


class FailsOnSeed1(NMCStrategy):
    def train_task(self, data, ctx):
        if ctx.seed == 1 and ctx.task_index == 1:
            raise RuntimeError("injected failure on seed 1")
        return super().train_task(data, ctx)
"""


def test_a_sweep_with_failed_and_pending_runs_aggregates_only_finished_ones(tmp_path, capsys, table_rows, tables):
    (tmp_path / "failing.py").write_text(FAILING)
    config = tmp_path / "exp.toml"
    config.write_text(textwrap.dedent(f"""
        [stream]
        name = "split-digits"
        n_tasks = 2

        [strategy]
        name = "{tmp_path / 'failing.py'}:FailsOnSeed1"

        [sweep]
        out = "{tmp_path / 'sw'}"
        seeds = [0, 1, 2]
    """))
    spec = SweepSpec.from_file(config)
    runs = spec.expand()
    write_index(spec.out, spec.name, str(config), runs, {"executor": "local"})
    prepare(runs[0])
    assert main(["run", "--resume", str(runs[0].dir), *FAST]) == 0
    prepare(runs[1])
    with pytest.raises(RuntimeError, match="injected failure on seed 1"):
        main(["run", "--resume", str(runs[1].dir), *FAST])
    # seed 2 is never started
    capsys.readouterr()
    assert [run_state(r.dir).status for r in runs] == ["completed", "failed", "pending"]
    assert len(read_index(spec.out)["runs"]) == 3
    assert main(["compare", str(spec.out), str(runs[1].dir)]) == 0  # the failed run twice
    text = capsys.readouterr().out
    (row,) = table_rows(text)
    assert (row["strategy"], row["n"], row["seeds"]) == ("FailsOnSeed1", "1", "0")
    accuracy = results(runs[0].dir)["metrics"]["average_accuracy"]
    assert row["avg acc (%)"] == f"{100 * accuracy:.1f}"
    listed = tables(text)["Not aggregated: unfinished runs"]
    assert [(r["run"], r["status"], r["tasks"]) for r in listed] == [
        (runs[1].id, "failed", "1/2"), (runs[2].id, "pending", "0/?")]
    assert "injected failure on seed 1" in listed[0]["error"]


def test_memory_budgets_are_protocols_and_exemplar_free_runs_join_each(nmc, tmp_path, tables,
                                                                       capsys):
    replay = ["--strategy", "finetune", "--set", "strategy.epochs=1", "--plugin", "replay", *TWO]
    for size in (20, 40):
        run(tmp_path / f"replay-{size}", *replay, "--set", f"plugins.replay.memory_size={size}")
    text = compare([tmp_path / "replay-20", tmp_path / "replay-40", nmc / "fixed" / "seed-0"])
    sections = {h: rows for h, rows in tables(text).items() if h and h.startswith("P")}
    assert [h.rpartition("; ")[2] for h in sections] == [
        "memory budget plugins.replay.memory_size=20", "memory budget plugins.replay.memory_size=40"]
    for rows in sections.values():  # nmc keeps no examples: it meets either budget
        assert [r["strategy"] for r in rows] == ["finetune", "nmc"]
    assert main(["compare", str(tmp_path / "replay-20"), str(tmp_path / "replay-40"),
                 "--over", "plugins.replay.memory_size"]) == 2
    assert "the memory budget is part of the protocol" in capsys.readouterr().err
