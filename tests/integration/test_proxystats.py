"""What kube-proxy did per node per mode, the connect times, the control plane's RSS: a
short `hopbench run` on a 2-node local cluster it creates and removes, as a user runs it."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.cluster.local import live
from tests.integration.conftest import hopbench

NAME = "kpstats1"


def test_run_json_holds_proxy_stats_connect_times_and_rss(tmp_path: Path) -> None:
    out = tmp_path / "run"
    try:
        r = hopbench("run", "--cluster", NAME, "--trials", "3", "--out", str(out),
                     timeout=900)
    finally:  # the run removes the cluster it created; this, whatever went wrong
        live.down(NAME, say=lambda m: None)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    modes = json.loads((out / "run.json").read_text())["modes"]
    assert set(modes) == {"iptables", "nftables"}
    for mode, block in modes.items():
        stats, connect = block["proxy_stats"], block["connect_ms"]
        assert set(stats) == set(connect) == {"n1", "n2"}, mode
        for node, s in stats.items():
            assert s["syncs"] > 0 and s["cpu_s"] > 0 and s["rss_bytes"] > 0, (mode, node, s)
            assert sum(s["sync_all_s"]["counts"]) == s["syncs"]
            # both modes sync fully and partially (1.35); the two add up to all syncs
            assert (sum(s["sync_full_s"]["counts"]) + sum(s["sync_partial_s"]["counts"])
                    == s["syncs"]), (mode, node)
            assert ("kube_proxy_rules" in s) == (mode == "iptables")
            c = connect[node]
            assert len(c["counts"]) == len(c["bounds_ms"]) + 1 and sum(c["counts"]) > 0
            # the last probe intervals' connections: established well within a second
            below_1s = sum(n for b, n in zip(c["bounds_ms"], c["counts"]) if b <= 1000)
            assert below_1s == sum(c["counts"]), (mode, node)
        assert block["apiserver_rss_bytes"] > 0 and block["etcd_rss_bytes"] > 0
        assert block["apiserver_rss_bytes"] != block["etcd_rss_bytes"]
    # the mode's end in the CLI (stderr, wrapped to the console's width): a line per node
    said = " ".join(r.stderr.split())
    assert said.count("syncs, p50 <=") == said.count("connect p50 <=") == 2 * len(modes), said
    assert said.count("n1: ") >= len(modes) and said.count("n2: ") >= len(modes)
    assert said.count("control plane RSS: API server") == len(modes)
    assert not math.isnan(modes["iptables"]["agent_cpu_fraction"]["n1"])
