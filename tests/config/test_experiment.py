"""Every config under experiments/ parses, validates and dry-runs offline (no data, no weights)."""

import re
from pathlib import Path

import pytest

import streams
from cl.cli import main
from cl.config import RunConfig

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
CONFIGS = sorted(EXPERIMENTS.rglob("*.toml"))
#: streams that read nothing from the data root (their factories take no ``data_root``)
OFFLINE_STREAMS = {e.name for e in streams.STREAMS.entries() if "data_root" not in e.reserved}


def test_the_published_protocols_have_configs():
    names = {p.relative_to(EXPERIMENTS).as_posix() for p in CONFIGS}
    for strategy in ("zeroshot", "nmc", "gda", "lora", "codyra"):
        assert f"mtil/order1-{strategy}.toml" in names
    for folder in ("mtil", "xtail", "nevis", "split-cifar100"):
        assert any(n.startswith(folder + "/") for n in names), folder


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(EXPERIMENTS).as_posix())
def test_config_dry_runs_offline(path, tmp_path, capsys):
    config = RunConfig.from_file(path)
    data_root = tmp_path / "data"  # exists, but holds no dataset
    data_root.mkdir()
    code = main(["run", "--config", str(path), "--dry-run", "--data-root", str(data_root)])
    captured = capsys.readouterr()
    assert code == 0, f"{path.name}: {captured.err.strip()}"
    plan = captured.out
    m = re.search(r"^stream\s+\S+ \((\d+) tasks, ([a-z-]+)\)", plan, re.MULTILINE)
    assert m, plan
    task_lines = [ln for ln in plan.splitlines() if re.match(r"^\s+\d+\s+\S", ln)]
    assert len(task_lines) == int(m.group(1)) > 0
    assert re.search(rf"^strategy\s+{re.escape(config.strategy)}\b", plan, re.MULTILINE)
    assert re.search(rf"^backbone\s+{re.escape(config.backbone)}$", plan, re.MULTILINE)
    if config.stream not in OFFLINE_STREAMS:  # where each task's data is expected
        assert all(f"data: {data_root}" in ln for ln in task_lines), plan


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(EXPERIMENTS).as_posix())
def test_config_backbone_is_a_known_spec(path):
    import open_clip

    from cl.models.weights import TINY_MODELS

    backbone = RunConfig.from_file(path).backbone
    known = {"pixels", *TINY_MODELS, *open_clip.list_pretrained(as_str=True)}
    assert backbone in known or backbone.startswith(("pixels:", "hf-hub:")), backbone


@pytest.mark.parametrize("path", [p for p in CONFIGS if not {"benchmarks", "examples"} & set(p.parts)],
                         ids=lambda p: p.relative_to(EXPERIMENTS).as_posix())
def test_config_is_listed_in_its_readme(path):
    """Each protocol folder's README says what every one of its configs reproduces."""
    readme = path.parent / "README.md"
    assert readme.is_file(), f"{path.parent} has no README.md"
    assert path.name in readme.read_text(), f"{path.name} is not in {readme}"
