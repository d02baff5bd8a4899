"""Reading kube-proxy's SLI histogram from run.json in every accepted shape, and refusing junk."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from analysis_synth import hops_frame

from analysis.sli import KUBE_PROXY_BUCKETS_S, direct_programming, parse_sli, pooled
from bench.results.schema import ALL_NODES

ENTRY = {"buckets_s": [0.25, 0.5, 1.0], "counts": [3, 2, 1, 4]}


def test_kube_proxy_buckets_match_upstream() -> None:
    b = KUBE_PROXY_BUCKETS_S
    assert b[:4] == (0.25, 0.5, 1.0, 2.0) and b[-1] == 300.0
    assert len(b) == 2 + 59 + 12 + 7


def test_nested_by_mode_and_node() -> None:
    meta = {"proxy_modes": ["iptables", "ipvs"],
            "sli": {"iptables": {"n1": ENTRY, "n2": ENTRY}, "ipvs": {"n1": ENTRY}}}
    hists, problems = parse_sli(meta, "r")
    assert problems == []
    assert [(h.proxy_mode, h.node) for h in hists] == [("iptables", "n1"), ("iptables", "n2"),
                                                       ("ipvs", "n1")]
    h = hists[0]
    assert h.upper_s == (0.25, 0.5, 1.0, math.inf) and h.counts == (3, 2, 1, 4)
    both = pooled(hists, "iptables")
    assert both is not None and both.counts == (6, 4, 2, 8) and both.total == 20
    assert pooled(hists, "nftables") is None


def test_bare_entry_belongs_to_the_single_mode() -> None:
    hists, _ = parse_sli({"proxy_modes": ["nftables"], "sli": ENTRY}, "r")
    assert [(h.proxy_mode, h.node) for h in hists] == [("nftables", "")]


def test_mode_entry_and_list_forms() -> None:
    hists, _ = parse_sli({"sli": {"ipvs": ENTRY}}, "r")
    assert hists[0].proxy_mode == "ipvs"
    listed = [{"proxy_mode": "iptables", "node": "n1", **ENTRY}]
    hists, _ = parse_sli({"sli": listed}, "r")
    assert (hists[0].proxy_mode, hists[0].node) == ("iptables", "n1")


def test_cumulative_counts_and_inf_bucket() -> None:
    entry = {"buckets_s": [0.25, 0.5, "+Inf"], "counts": [3, 5, 9], "cumulative": True}
    hists, problems = parse_sli({"sli": {"iptables": entry}}, "r")
    assert problems == [] and hists[0].counts == (3, 2, 4)
    assert hists[0].upper_s[-1] == math.inf


def test_absent_sli_is_not_a_problem() -> None:
    assert parse_sli({}, "r") == ([], [])
    assert parse_sli({"sli": {}}, "r") == ([], [])


def test_malformed_entries_are_reported_not_raised() -> None:
    meta = {"sli": {"iptables": {"n1": {"buckets_s": [1, 0.5], "counts": [1, 1]},
                                 "n2": {"buckets_s": ["x"], "counts": [1]},
                                 "n3": {"counts": [1]},
                                 "n4": ENTRY},
                    "ipvs": 7}}
    hists, problems = parse_sli(meta, "r")
    assert [h.node for h in hists] == ["n4"]
    assert len(problems) == 4
    assert parse_sli({"sli": "garbage"}, "r")[1]


def test_direct_programming_is_ready_to_sync() -> None:
    rows = [
        {"trial": 0, "hop": "ready_to_slice", "latency_ms": 10.0},
        {"trial": 0, "hop": "slice_to_sync", "node": "n1", "latency_ms": 100.0},
        {"trial": 0, "hop": "slice_to_sync", "node": "n2", "latency_ms": None},
        {"trial": 0, "hop": "slice_to_sync", "node": ALL_NODES, "latency_ms": None},
        {"trial": 1, "hop": "ready_to_slice", "latency_ms": None},
        {"trial": 1, "hop": "slice_to_sync", "node": "n1", "latency_ms": 5.0},
        {"trial": 2, "hop": "slice_to_sync", "node": "n1", "latency_ms": 5.0,
         "direction": "remove"},
    ]
    direct = direct_programming(hops_frame(rows)).sort_values(["trial", "node"])
    assert list(direct["node"]) == ["n1", "n2", "n1"]
    np.testing.assert_array_equal(direct["latency_ms"], [110.0, np.nan, np.nan])
    assert list(direct["censored"]) == [False, True, True]
    assert isinstance(direct, pd.DataFrame)
