"""`run --cluster` on a cluster in trouble (issue 9, defects 6 and 7a).

A run must never destroy a cluster it did not create: a degraded one is refused with the
dead component named. A cluster that goes away mid-run ends the run in one ClusterError
line, and the run directory keeps what it recorded, ready to resume.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.cluster.local import live, procs, teardown
from bench.cluster.local.spec import ClusterSpec
from tests.integration.conftest import hopbench

pytestmark = pytest.mark.cluster


def _up(name: str) -> Iterator[ClusterSpec]:
    res = hopbench("cluster", "up", "--name", name, "--nodes", "1", "--proxy-mode",
                   "iptables", timeout=600)
    assert res.returncode == 0, res.stderr
    try:
        yield ClusterSpec.load(name)
    finally:
        res = hopbench("cluster", "down", "--name", name)
        assert res.returncode == 0, res.stderr


@pytest.fixture
def degraded() -> Iterator[ClusterSpec]:
    yield from _up("guardr2")


@pytest.fixture
def doomed() -> Iterator[ClusterSpec]:
    yield from _up("guardr4")


def test_degraded_cluster_is_refused_and_kept(degraded: ClusterSpec, tmp_path: Path) -> None:
    spec = degraded
    pids = live.read_state(spec)["pids"]
    os.kill(pids["kube-proxy-n1"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while procs.alive(pids["kube-proxy-n1"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    netns_before = teardown.cluster_netns(spec)

    res = hopbench("run", "--cluster", spec.name, "--trials", "1", "--proxy-mode", "iptables",
                   "--scenario", "scale-up", "--out", str(tmp_path / "run"), timeout=600)

    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("hopbench: error: cluster 'guardr2' is degraded "
                               "(dead: kube-proxy-n1)"), res.stderr
    assert f"hopbench cluster down --name {spec.name}" in lines[0]
    assert f"hopbench cluster up --name {spec.name}" in lines[0]
    # still there, untouched: its state, its namespaces, its other daemons
    state = live.read_state(ClusterSpec.load(spec.name))
    assert state["status"] == "up" and state["pids"] == pids
    assert all(procs.alive(p) for k, p in pids.items() if k != "kube-proxy-n1")
    assert teardown.cluster_netns(spec) == netns_before
    assert not (tmp_path / "run").exists()


def _wait_for_trial(run: Path, proc: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    journal = run / "events.jsonl"
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before its first trial"
        if journal.exists() and '"trial_end"' in journal.read_text():
            return
        time.sleep(0.5)
    raise AssertionError(f"no trial recorded in {timeout:.0f}s")


def test_cluster_down_mid_run_is_one_line(doomed: ClusterSpec, tmp_path: Path) -> None:
    run = tmp_path / "run"
    err = tmp_path / "stderr"
    with open(err, "w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.cli", "run", "--cluster", doomed.name,
             "--proxy-mode", "iptables", "--scenario", "scale-up,delete", "--trials", "500",
             "--out", str(run)], stdout=subprocess.DEVNULL, stderr=err_file, text=True)
        try:
            _wait_for_trial(run, proc, 300)
            res = hopbench("cluster", "down", "--name", doomed.name)
            assert res.returncode == 0, res.stderr
            rc = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderr = err.read_text()
    assert rc == 3, stderr
    assert "Traceback" not in stderr, stderr
    assert stderr.count("hopbench: error:") == 1, stderr
    line = stderr.split("hopbench: error:", 1)[1].strip()
    assert "\n" not in line, stderr  # the error is the last line, and one line
    assert "stopped answering" in line, stderr
    assert f"hopbench run --resume {run}" in line, stderr
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "interrupted"
    assert '"trial_end"' in (run / "events.jsonl").read_text()
