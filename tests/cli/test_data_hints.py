"""Missing data names where to get it: the download source and `stream.download` where the stream
has one; CORe50 says why every task needs the held-out test sessions instead of repeating them."""

from __future__ import annotations

from cl.cli import main
from streams.benchmarks.core50 import SOURCE_URL


def test_core50_with_an_empty_data_root_names_the_archive_and_the_test_sessions(tmp_path, capsys):
    assert main(["run", "--stream", "core50", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"Download core50_128x128.zip from {SOURCE_URL}" in err
    assert "no stream.download" in err
    assert "held-out sessions s3, s7, s10 (stream.test_sessions)" in err
    session_lines = [line for line in err.splitlines() if line.startswith("  - session")]
    assert len(session_lines) == 8
    assert not any("s3" in line or "s10" in line for line in session_lines)  # said once, above


def test_mtil_with_an_empty_data_root_names_torchvision_and_stream_download(tmp_path, capsys):
    assert main(["run", "--stream", "mtil", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "torchvision.datasets.FGVCAircraft" in err and "torchvision.datasets.SUN397" in err
    assert "--set stream.download=true" in err
