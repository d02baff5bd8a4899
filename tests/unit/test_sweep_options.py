"""`run --background-services N[,N...] --endpoints-per-service M --churn R`: parsed into
sweep points, and bad input refused up front with one line, nothing created (issue 10)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench import cli, runopts
from bench.errors import UserError
from bench.results.point import Point


def test_points_ascend_and_carry_m_and_r() -> None:
    assert runopts.parse_points("5000, 0,1000", "3", "2.5") == (
        Point(0, 3, 0.0), Point(1000, 3, 2.5), Point(5000, 3, 2.5))  # N=0: nothing to churn
    assert runopts.parse_points("0", "2", "0") == (Point(),)


@pytest.mark.parametrize(("services", "endpoints", "churn", "says"), [
    ("-5", "2", "0", "'-5' must be 0 or more"),
    ("0,-1", "2", "0", "'-1' must be 0 or more"),
    ("lots", "2", "0", "'lots' is not a whole number"),
    ("1.5", "2", "0", "'1.5' is not a whole number"),
    ("0,,10", "2", "0", "'' is not a whole number"),
    ("10,10", "2", "0", "given twice"),
    ("10", "0", "0", "--endpoints-per-service 0: must be >= 1"),
    ("10", "two", "0", "--endpoints-per-service two: not a whole number"),
    ("10", "2", "-1", "--churn -1: must be >= 0"),
    ("10", "2", "fast", "--churn fast: not a number"),
    ("10", "2", "inf", "--churn inf: must be a finite number"),
    ("0", "2", "5", "--churn 5: churn changes background endpoints"),
])
def test_bad_input_is_one_line_naming_the_option(services: str, endpoints: str, churn: str,
                                                 says: str) -> None:
    with pytest.raises(UserError, match=says) as caught:
        runopts.parse_points(services, endpoints, churn)
    assert "\n" not in str(caught.value)


def refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    """Run `hopbench run` in process up to the provider (never reached: the test fails if
    it is) and return the one-line refusal; no run directory may exist."""
    def no_provider(*a: object, **k: object) -> None:
        raise AssertionError("a provider was made: the refusal came too late")

    monkeypatch.setattr(cli, "_provider", no_provider)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli.app, ["run", "--out", str(out), *args])
    assert result.exit_code != 0
    assert isinstance(result.exception, UserError), result.exception
    assert not out.exists()
    message = str(result.exception)
    assert "\n" not in message
    return message


def test_cli_refuses_before_anything_exists(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert "must be 0 or more" in refused(tmp_path, monkeypatch, "--background-services", "-3")
    assert "not a whole number" in refused(tmp_path, monkeypatch,
                                           "--background-services", "1k")
    assert "--churn 10" in refused(tmp_path, monkeypatch, "--churn", "10")


def test_beyond_the_cidr_is_refused_with_the_estimate(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    said = refused(tmp_path, monkeypatch, "--background-services", "0,65534",
                   "--endpoints-per-service", "1")
    assert "65534" in said and "service CIDR" in said


def test_beyond_memory_is_refused_with_the_estimate(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 4000000 kB\nMemAvailable:  102400 kB\n")  # 100 MiB
    monkeypatch.setattr(runopts, "MEMINFO", meminfo)
    said = refused(tmp_path, monkeypatch, "--background-services", "5000")
    assert "MiB" in said and "100 MiB are available" in said


def test_the_real_cli_prints_one_line(tmp_path: Path) -> None:
    """Through the installed entry point (main: no traceback). --kubeconfig to a missing
    file is a second fence: were the check late, that file would be refused instead."""
    out = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "-c", "from bench.cli import main; main()", "run", "--out",
         str(out), "--kubeconfig", str(tmp_path / "missing"), "--background-services",
         "0,-7"], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("hopbench: error: --background-services")
    assert not out.exists()
