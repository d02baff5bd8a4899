"""A `hopbench run` killed with SIGKILL: show, report and reassemble see every trial it ended,
and --resume completes it with run.json's per-mode block describing the whole run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.results.schema import Ev
from tests.integration.conftest import hopbench

pytestmark = pytest.mark.cluster
NAME = "hbkilled"
TRIALS = 8
KILL_AFTER = 4  # trial_end events in the journal (a delete cycle is one trial)


def _ended(run: Path) -> int:
    try:
        lines = (run / "events.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    return sum(1 for ln in lines if f'"event": "{Ev.TRIAL_END}"' in ln)


def _said(res: subprocess.CompletedProcess[str]) -> str:
    return " ".join(res.stderr.split())


def test_sigkilled_run_is_readable_and_resumable(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "bench.cli", "run", "--cluster", NAME, "--nodes", "2",
           "--trials", str(TRIALS), "--scenario", "delete", "--proxy-mode", "iptables",
           "--out", str(run)]
    try:
        with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) as proc:
            try:
                deadline = time.monotonic() + 600
                while _ended(run) < KILL_AFTER:
                    assert proc.poll() is None, f"run ended on its own: {proc.stderr}"
                    assert time.monotonic() < deadline, "no trials within 600 s"
                    time.sleep(0.5)
            finally:
                proc.send_signal(signal.SIGKILL)
        ended = _ended(run)
        assert json.loads((run / "run.json").read_text())["status"] == "running"

        show = hopbench("show", str(run))
        assert show.returncode == 0, show.stderr
        assert "this run did not finish: killed" in _said(show)
        assert f"it holds {ended} complete trial(s)" in _said(show)

        report = hopbench("report", str(run), "--out", str(tmp_path / "report"))
        assert report.returncode == 0, report.stderr
        summary = pd.read_csv(tmp_path / "report" / "summary.csv")
        e2e = summary[(summary["hop"] == "unready_to_rule_gone")
                      & (summary["scope"] == "all-nodes")]
        assert e2e["n"].sum() >= ended // 2

        again = hopbench("reassemble", str(run))
        assert again.returncode == 0, again.stderr
        hops = pd.read_parquet(run / "hops.parquet")
        assert len(hops[["trial", "direction"]].drop_duplicates()) == ended

        resumed = hopbench("run", "--resume", str(run), timeout=900)
        assert resumed.returncode == 0, resumed.stderr
        meta = json.loads((run / "run.json").read_text())
        block = meta["status"], meta["modes"]["iptables"]
        assert block[0] == "finished"
        assert block[1]["trials"] == sum(s["trials"] for s in block[1]["segments"])
        assert block[1]["trials"] > TRIALS - ended  # the resumed part, and more:
        assert len(block[1]["segments"]) == 2  # the killed segment's last checkpoint
        done = hopbench("show", str(run))
        assert "did not finish" not in _said(done)
        assert f"({block[1]['trials']} in" in done.stdout and "2 segments)" in done.stdout
        hops = pd.read_parquet(run / "hops.parquet")
        assert len(hops[["trial", "direction"]].drop_duplicates()) == TRIALS
    finally:  # a SIGKILLed run leaves its cluster: remove the one this test created
        down = hopbench("cluster", "down", "--name", NAME)
        assert down.returncode == 0, down.stderr
