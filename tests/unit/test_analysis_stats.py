"""Summary tables of analysis.stats on hand-written hops with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_synth import hops_frame, latencies, make_run

from analysis.load import load_run
from analysis.stats import (
    GROUP,
    Settings,
    compare_modes,
    node_spread,
    node_stats,
    summarize,
    summary_tables,
)
from bench.results.schema import ALL_NODES

FAST = Settings(n_boot=300, seed=1)


def _one(summary: pd.DataFrame, **where: str) -> pd.Series:
    rows = summary
    for col, value in where.items():
        rows = rows[rows[col] == value]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_known_quantiles_and_counts() -> None:
    hops = hops_frame(latencies([float(v) for v in range(1, 101)]))
    row = _one(summarize(hops, FAST))
    assert (row["n"], row["n_trials"], row["n_censored"]) == (100, 100, 0)
    assert (row["p50_ms"], row["p90_ms"], row["p99_ms"], row["max_ms"]) == (50, 90, 99, 100)
    assert row["p50_lo_ms"] <= 50 <= row["p50_hi_ms"]
    assert row["max_hi_ms"] == 100  # the bootstrap max never exceeds the sample max
    assert not row["p99_censored"] and np.isnan(row["censored_above_ms"])
    assert row["label"] == "EndpointSlice controller: Ready → slice" and row["scope"] == "cluster"


def test_censored_quantiles_are_flagged_not_computed_from_the_rest() -> None:
    values: list[float | None] = [float(v) for v in range(1, 96)] + [None] * 5
    row = _one(summarize(hops_frame(latencies(values)), FAST))
    assert row["n"] == 100 and row["n_censored"] == 5 and row["censored_frac"] == 0.05
    assert row["p50_ms"] == 50 and row["p90_ms"] == 90
    assert np.isposinf(row["p99_ms"]) and row["p99_censored"]
    assert np.isposinf(row["max_ms"]) and row["max_censored"]
    assert not row["p90_censored"]
    assert row["censored_above_ms"] == 95
    timed = _one(summarize(hops_frame(latencies(values)), Settings(n_boot=50,
                                                                     timeout_ms=30_000)))
    assert timed["censored_above_ms"] == 30_000


def test_parallel_services_count_as_trials_but_resample_together() -> None:
    rows = [{"trial": t, "service": svc, "latency_ms": float(10 * t + i)}
            for t in range(50) for i, svc in enumerate(("svc-a", "svc-b"))]
    row = _one(summarize(hops_frame(rows), FAST))
    assert (row["n"], row["n_trials"]) == (100, 100)
    same = _one(summarize(hops_frame([{**r, "trial": 0} for r in rows[:2]]), FAST))
    assert (same["n"], same["n_trials"]) == (2, 2)


def test_negative_intervals_are_kept_and_counted() -> None:
    rows = latencies([-2.0, 1.0, 3.0])
    rows[0]["flag"] = "negative"
    row = _one(summarize(hops_frame(rows), FAST))
    assert row["n_flagged"] == 1 and row["p50_ms"] == 1.0
    assert _one(summarize(hops_frame(rows), FAST))["max_ms"] == 3.0


def test_scopes_are_separate_groups() -> None:
    rows = []
    for trial in range(4):
        for node, ms in (("n1", 10.0 + trial), ("n2", 20.0 + trial)):
            rows.append({"trial": trial, "node": node, "hop": "slice_to_sync", "latency_ms": ms})
        rows.append({"trial": trial, "node": ALL_NODES, "hop": "slice_to_sync",
                     "latency_ms": 20.0 + trial})
    summary = summarize(hops_frame(rows), FAST)
    pooled = _one(summary, scope="node")
    assert (pooled["n"], pooled["n_trials"]) == (8, 4)
    every = _one(summary, scope="all-nodes")
    assert (every["n"], every["p50_ms"]) == (4, 21.0)


def test_mode_ratio_of_medians() -> None:
    rng = np.random.default_rng(0)
    base = rng.lognormal(3, 0.3, 400)
    rows = latencies(list(base), proxy_mode="iptables")
    rows += latencies(list(base * 0.5), proxy_mode="nftables")
    rows += latencies(list(base * 2.0), proxy_mode="ipvs")
    ratios = compare_modes(hops_frame(rows), FAST)
    assert list(ratios["proxy_mode"]) == ["nftables", "ipvs"]
    assert set(ratios["baseline"]) == {"iptables"}
    nft, ipvs = ratios.iloc[0], ratios.iloc[1]
    assert nft["ratio"] == pytest.approx(0.5) and ipvs["ratio"] == pytest.approx(2.0)
    assert nft["ratio_lo"] < 0.5 < nft["ratio_hi"] and ipvs["ratio_lo"] < 2 < ipvs["ratio_hi"]
    chosen = compare_modes(hops_frame(rows), FAST, baseline="ipvs")
    assert chosen.set_index("proxy_mode").loc["iptables", "ratio"] == pytest.approx(0.5)


def test_mode_ratio_with_censored_median_is_flagged() -> None:
    rows = latencies([1.0, 2.0, 3.0], proxy_mode="iptables")
    rows += latencies([1.0, None, None], proxy_mode="nftables")
    row = compare_modes(hops_frame(rows), FAST).iloc[0]
    assert row["censored"] and np.isposinf(row["ratio"])


def test_node_spread_finds_the_slow_node() -> None:
    rng = np.random.default_rng(1)
    rows = []
    for trial in range(300):
        base = rng.lognormal(4, 0.4)
        for node, factor in (("a", 1.0), ("b", 1.05), ("c", 2.0)):
            rows.append({"trial": trial, "node": node, "hop": "slice_to_sync",
                         "latency_ms": base * factor * rng.lognormal(0, 0.1)})
    hops = hops_frame(rows)
    per_node = node_stats(hops, FAST)
    assert list(per_node["node"]) == ["a", "b", "c"]
    spread = node_spread(per_node).iloc[0]
    assert spread["slowest_node"] == "c" and spread["fastest_node"] == "a"
    assert spread["n_nodes"] == 3 and spread["separated"]
    assert spread["spread_p50_ms"] == pytest.approx(
        spread["slowest_p50_ms"] - spread["fastest_p50_ms"])


def test_node_spread_not_separated_when_nodes_alike() -> None:
    rng = np.random.default_rng(2)
    rows = [{"trial": t, "node": n, "hop": "slice_to_sync", "latency_ms": rng.lognormal(4, 0.5)}
            for t in range(200) for n in ("a", "b")]
    assert not node_spread(node_stats(hops_frame(rows), FAST)).iloc[0]["separated"]


def test_seeded_and_independent_of_other_groups() -> None:
    rng = np.random.default_rng(3)
    rows = latencies(list(rng.exponential(10, 200)), proxy_mode="iptables")
    other = latencies(list(rng.exponential(10, 200)), proxy_mode="ipvs")
    alone = summarize(hops_frame(rows), FAST)
    again = summarize(hops_frame(rows), FAST)
    together = summarize(hops_frame(rows + other), FAST)
    pd.testing.assert_frame_equal(alone, again)
    pd.testing.assert_frame_equal(alone, together[together["proxy_mode"] == "iptables"]
                                  .reset_index(drop=True))
    assert not summarize(hops_frame(rows), Settings(n_boot=300, seed=2)).equals(alone)


def test_tables_on_a_synthetic_run(tmp_path: Path) -> None:
    data = load_run(make_run(tmp_path / "run", trials=90, modes=("iptables", "nftables", "ipvs")))
    tables = summary_tables(data.hops, FAST)
    assert not tables.summary.empty and tables.summary[list(GROUP)].duplicated().sum() == 0
    assert set(tables.ratios["proxy_mode"]) == {"nftables", "ipvs"}
    assert set(tables.nodes["node"]) == {"node-0", "node-1", "node-2"}
    assert (tables.spread["n_nodes"] == 3).all()
    # iptables syncs slower than nftables in the generator
    sync = tables.ratios[(tables.ratios["hop"] == "slice_to_sync")
                         & (tables.ratios["scope"] == "node")
                         & (tables.ratios["proxy_mode"] == "nftables")]
    assert (sync["ratio_hi"] < 1).all()


def test_empty_hops_give_empty_tables() -> None:
    empty = hops_frame([]).iloc[0:0]
    tables = summary_tables(empty, FAST)
    assert tables.summary.empty and tables.ratios.empty and tables.spread.empty
    assert "p50_ms" in tables.summary.columns
