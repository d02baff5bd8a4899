"""The repository keeps build artefacts out (issue 9, defect 4: twelve .whl files were
committed at its root and used by nothing)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout")
def test_no_wheel_or_archive_is_tracked_and_new_ones_are_ignored() -> None:
    tracked = _git("ls-files", "*.whl", "*.tar.gz").stdout.split()
    assert tracked == [], tracked
    probe = _git("check-ignore", "--no-index", "hopbench-0.1.0-py3-none-any.whl", "x.tar.gz")
    assert probe.stdout.split() == ["hopbench-0.1.0-py3-none-any.whl", "x.tar.gz"]
