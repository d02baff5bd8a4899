"""istiod's convergence histogram read from run.json's mode blocks, and its figure."""

from __future__ import annotations

import math

import pandas as pd

from analysis.plots_chain import mesh_sli_figure
from analysis.sli import direct_push, parse_mesh_sli


def test_each_modes_mesh_sli_is_read_as_one_histogram() -> None:
    meta = {"proxy_modes": ["iptables", "nftables"], "modes": {
        "iptables": {"mesh_sli": {"istiod": {"buckets_s": [0.1, 0.5, "+Inf"],
                                             "counts": [30, 1, 0], "cumulative": False}}},
        "nftables": {"trials": 3}}}
    hists, problems = parse_mesh_sli(meta, "r1")
    assert problems == []
    assert [(h.proxy_mode, h.node, h.counts) for h in hists] == [("iptables", "istiod",
                                                                  (30, 1, 0))]
    assert math.isinf(hists[0].upper_s[-1])
    assert parse_mesh_sli({"modes": {"iptables": {}}}, "r1") == ([], [])


def test_the_direct_counterpart_is_push_to_sent_per_node() -> None:
    rows = [{"run_id": "r1", "trial": t, "scenario": "scale-up", "proxy_mode": "iptables",
             "point": "", "direction": d, "node": n, "hop": hop, "latency_ms": 1.5,
             "censored": False, "censor_reason": "", "flag": "", "resolution_ms": 0.002,
             "value": math.nan, "service": "svc0", "start_event": "", "end_event": ""}
            for t in (0, 1) for d in ("add", "remove") for n in ("n1", "n2", "*")
            for hop in ("push_to_sent", "slice_to_push")]
    direct = direct_push(pd.DataFrame(rows))
    assert len(direct) == 8 and set(direct["node"]) == {"n1", "n2"}
    fig = mesh_sli_figure(pd.DataFrame(rows), parse_mesh_sli({"modes": {"iptables": {
        "mesh_sli": {"istiod": {"buckets_s": [0.1, "+Inf"], "counts": [8, 0]}}}}}, "r1")[0])
    labels = [t.get_text() for ax in fig.axes if (leg := ax.get_legend()) is not None
              for t in leg.get_texts()]
    assert any("istiod convergence time (n=8" in s for s in labels), labels
    assert any("push → EDS sent (n=8" in s for s in labels), labels
