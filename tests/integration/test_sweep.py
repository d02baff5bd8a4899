"""A sweep through the real CLI on a local cluster: the point column separates the trials
of each point, run.json records every point, and `show` lists them (issue 10, part 3).

The run brings its own cluster up (`--cluster sweep1`) and removes it afterwards, as a
user's run does. With the background population (bench.background) the sweep has two
points, 0 and 200 background Services; without it, the point 0 alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.results.store import load_hops
from bench.sweep import FROM_SPAWN
from tests.integration.conftest import hopbench

pytestmark = pytest.mark.cluster
NAME = "sweep1"


def sweep(out: Path, services: str) -> None:
    try:
        res = hopbench("run", "--cluster", NAME, "--nodes", "2", "--proxy-mode", "iptables",
                       "--scenario", "scale-up,delete", "--trials", "2", "--trial-timeout",
                       "20", "--background-services", services, "--out", str(out),
                       timeout=900)
        assert res.returncode == 0, res.stderr[-3000:]
    finally:
        hopbench("cluster", "down", "--name", NAME)  # the run removes it; this if it failed


def check(out: Path, labels: list[str]) -> None:
    hops = load_hops(out)
    assert sorted(hops["point"].unique()) == sorted(labels)
    e2e = hops[(hops["hop"] == "ready_to_traffic") & (hops["node"] == "*")]
    per_point = e2e.groupby("point")["trial"].apply(lambda t: sorted(t))
    assert {k: list(v) for k, v in per_point.items()} == {lb: [0, 1] for lb in labels}
    assert not e2e["censored"].any(), e2e[["point", "trial", "censor_reason"]]
    meta = json.loads((out / "run.json").read_text())
    assert list(meta["points"]) == labels
    assert meta["modes"]["iptables"]["trials"] == 4  # the first point's, as before sweeps
    for lb in labels:
        assert meta["points"][lb]["modes"]["iptables"]["trials"] == 4
    show = hopbench("show", str(out), env={**os.environ, "COLUMNS": "200"})
    assert show.returncode == 0, show.stderr
    for lb in labels:
        assert f"@ {lb}" in show.stdout


def test_single_point_run_carries_its_point(tmp_path: Path) -> None:
    out = tmp_path / "one"
    sweep(out, "0")
    check(out, ["bg0x2c0"])


def test_two_points_are_separated(tmp_path: Path) -> None:
    out = tmp_path / "two"
    sweep(out, "0,200")
    check(out, ["bg0x2c0", "bg200x2c0"])
    meta = json.loads((out / "run.json").read_text())
    at = meta["points"]["bg200x2c0"]
    assert at["fill"]["created"] >= 200
    block = at["modes"]["iptables"]
    # exact on the local cluster: kube-proxy's spawn to its first sync's end
    assert block["program_s"] > 0 and block["program_from"] == FROM_SPAWN
    assert block["program_upper_bound"] is False
    assert block["program_seen_s"] >= block["program_s"]  # the agents look after it
    assert min(block["bg_routed"].values()) >= 200
    assert "program_s" not in meta["points"]["bg0x2c0"]["modes"]["iptables"]
