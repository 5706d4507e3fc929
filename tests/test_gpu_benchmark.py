"""``experiments/benchmarks/gpu.py`` (the prepared device benchmark) runs on this CPU with
``--device cpu --quick`` and prints every section, so device time is never spent on a broken
script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # ~30 s of CPU: toy-clip through extraction, three training families, RanPAC
def test_gpu_benchmark_runs_quick_on_cpu():
    out = subprocess.run([sys.executable, str(ROOT / "experiments/benchmarks/gpu.py"),
                          "--device", "cpu", "--quick"], capture_output=True, text=True,
                         cwd=ROOT, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    for line in ("extraction:", "model FLOP utilisation", "JPEG decode + preprocess: on cpu",
                 "training step, adapting (clip-finetune):", "training step, LoRA (codyra):",
                 "training step, image-text (contrastive-ft):", "analytic head (RanPAC, M=200"):
        assert line in out.stdout, (line, out.stdout)
