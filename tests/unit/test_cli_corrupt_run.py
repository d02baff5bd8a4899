"""A run whose hops.parquet is damaged: show and report say to reassemble, which repairs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "results" / "sample"


def hopbench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True,
                          text=True, timeout=300, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(SAMPLE, run)
    (run / "hops.parquet").write_bytes(b"PAR1 not a parquet file at all PAR1")
    return run


@pytest.mark.parametrize("command", ["show", "report"])
def test_one_line_naming_reassemble(damaged: Path, command: str) -> None:
    res = hopbench(command, str(damaged))
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    assert res.stderr.count("hopbench: error:") == 1, res.stderr
    err = " ".join(res.stderr.split("hopbench: error:")[1].split())  # rich may wrap it
    assert err.startswith(f"{damaged}/hops.parquet: unreadable (ArrowInvalid"), res.stderr
    assert f"hopbench reassemble {damaged}" in err


def test_reassemble_repairs_it(damaged: Path) -> None:
    res = hopbench("reassemble", str(damaged))
    assert res.returncode == 0, res.stderr
    res = hopbench("show", str(damaged))
    assert res.returncode == 0, res.stderr
    assert "scale-up" in res.stdout or "add" in res.stdout, res.stdout
