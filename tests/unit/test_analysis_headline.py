"""report.html opens on the answer: end to end per mode, the dominant hop and why.

Hand-written hops where the answer is known (a planted dominant hop, a planted slow node,
a planted minSyncPeriod, a censored median), and one synthetic run end to end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from analysis_synth import hops_frame, make_run

from analysis.frame import with_scope
from analysis.headline import chain, headline, min_sync_periods_s
from analysis.load import RunData
from analysis.report import render_html, write_report
from analysis.stats import Settings, summary_tables
from bench.results.schema import ALL_NODES

FAST = Settings(n_boot=100)
TRIALS = 5


def _add_trial(mode: str, trial: int, chain_ms: dict[str, dict[str, float]],
               cluster: dict[str, float]) -> list[dict[str, Any]]:
    """One add trial: cluster hops, per-node hops, their sums and the all-nodes maxima."""
    common = {"proxy_mode": mode, "trial": trial, "direction": "add", "scenario": "scale-up"}
    rows = [{**common, "hop": h, "latency_ms": v} for h, v in cluster.items()]
    e2e: dict[str, float] = {}
    for node, hops in chain_ms.items():
        rows += [{**common, "hop": h, "node": node, "latency_ms": v} for h, v in hops.items()]
        e2e[node] = sum(cluster.values()) + sum(hops.values())
        rows.append({**common, "hop": "ready_to_traffic", "node": node, "latency_ms": e2e[node]})
    for hop in [*next(iter(chain_ms.values())), "ready_to_traffic"]:
        values = [r["latency_ms"] for r in rows if r["hop"] == hop and r.get("node")]
        rows.append({**common, "hop": hop, "node": ALL_NODES, "latency_ms": max(values)})  # type: ignore[type-var]
    return rows


def _remove_trial(mode: str, trial: int, gone: float | None) -> list[dict[str, Any]]:
    """One removal trial on one node; `gone` None = the rule never went (censored)."""
    common = {"proxy_mode": mode, "trial": trial, "direction": "remove", "scenario": "delete"}
    sync = None if gone is None else gone - 10.0
    return [{**common, "hop": "unready_to_slice", "latency_ms": 5.0},
            *({**common, "hop": h, "node": n, "latency_ms": v}
              for n in ("n1", ALL_NODES)
              for h, v in (("slice_to_sync", sync), ("sync_to_rule", None if gone is None
                                                     else 5.0),
                           ("unready_to_rule_gone", gone)))]


def planted() -> RunData:
    """iptables: the EndpointSlice controller dominates (100 + i ms; a batch period is
    recorded in component_args), node n2 is the slow
    node because of its prober hop, though n1 has the longer sync. nftables: kube-proxy's
    sync dominates (300 + i ms) with a minSyncPeriod of 250ms; its removal median is
    censored (3 of 5 trials never lost the rule)."""
    rows: list[dict[str, Any]] = []
    for i in range(TRIALS):
        rows += _add_trial("iptables", i, {
            "n1": {"slice_to_sync": 40.0, "sync_to_rule": 1.0, "rule_to_traffic": 2.0},
            "n2": {"slice_to_sync": 20.0, "sync_to_rule": 1.0, "rule_to_traffic": 50.0 + i}},
            {"ready_to_slice": 100.0 + i})
        rows += _add_trial("nftables", i, {
            "n1": {"slice_to_sync": 300.0 + i, "sync_to_rule": 1.0, "rule_to_traffic": 3.0}},
            {"ready_to_slice": 10.0})
        rows += _remove_trial("nftables", i, 400.0 + i if i < 2 else None)
    hops = with_scope(hops_frame(rows))
    runs = pd.DataFrame([{"run_id": "r", "status": "finished", "provider": "local",
                          "kubernetes_version": "v1", "node_count": 2}])
    configz = {"kubeproxy.config.k8s.io": {"MinSyncPeriod": "250ms", "SyncPeriod": "30s"}}
    meta = {"r": {"run_id": "r", "modes": {"nftables": {"kube_proxy_config": {"n1": configz}}},
                  "component_args": {"kube-controller-manager": [
                      "--endpointslice-updates-batch-period=100ms"]}}}
    return RunData(hops=hops, events=pd.DataFrame(), runs=runs, meta=meta)


@pytest.fixture(scope="module")
def data() -> RunData:
    return planted()


def test_chain_is_derived_from_the_schema() -> None:
    assert [h.name for h in chain("add")] == ["ready_to_slice", "slice_to_sync",
                                             "sync_to_rule", "rule_to_traffic"]
    assert [h.name for h in chain("remove")] == ["unready_to_slice", "slice_to_sync",
                                                "sync_to_rule"]


def test_headline_finds_the_planted_numbers_and_dominant_hops(data: RunData) -> None:
    answers = {m.proxy_mode: m for m in headline(data, summary_tables(data.hops, FAST))}
    assert list(answers) == ["iptables", "nftables"]
    (ipt_add,) = answers["iptables"].directions
    # slowest node n2 per trial: (100+i) + 20 + 1 + (50+i) = 171 + 2i, i = 0..4
    assert (ipt_add.p50.value_ms, ipt_add.p99.value_ms) == (175.0, 179.0)
    assert ipt_add.dominant is not None and ipt_add.dominant.hop == "ready_to_slice"
    assert ipt_add.dominant.median_ms == 102.0
    assert ipt_add.dominant.share == pytest.approx(102.0 / 175.0)
    parts = {p.hop: p.median_ms for p in ipt_add.parts}
    assert parts["slice_to_sync"] == 20.0  # on the slowest node n2, not n1's 40 ms
    assert parts["rule_to_traffic"] == 52.0
    assert "--endpointslice-updates-batch-period=100ms" in ipt_add.why

    nft_add, nft_remove = answers["nftables"].directions
    assert nft_add.dominant is not None and nft_add.dominant.hop == "slice_to_sync"
    assert nft_add.dominant.median_ms == 302.0
    assert "minSyncPeriod is 250 ms" in nft_add.why
    assert nft_remove.p50.censored and nft_remove.dominant is None
    assert nft_remove.n_censored == 3


def test_report_opens_on_the_answer_before_any_table(data: RunData, tmp_path: Path) -> None:
    tables = summary_tables(data.hops, FAST)
    figure = tmp_path / "waterfall.png"
    figure.write_bytes(b"\x89PNG fake")
    page = render_html(data, tables, {"waterfall": figure}, FAST)
    opening = page.index('<section id=answer')
    assert opening < page.index("<table")
    answer = page[opening:page.index("</section>", opening)]
    assert answer.index("<h3>iptables</h3>") < answer.index("<h3>nftables</h3>")
    assert "p50 <b>175 ms</b>" in answer and "p99 <b>179 ms</b>" in answer
    assert "EndpointSlice controller: Ready → slice</b>, median 102 ms, 58% of" in answer
    assert "kube-proxy: slice → sync done</b>, median 302 ms" in answer
    assert "minSyncPeriod is 250 ms" in answer
    assert "p50 <b>censored</b> (&gt; 401 ms)" in answer  # the removal median
    assert 'id=waterfall' in answer  # the waterfall beside the answer ...
    assert page.count("id=waterfall") == 1  # ... and not again among the figures


def test_min_sync_period_prefers_the_modes_own_section() -> None:
    kubeconfig_shape = {"mode": "iptables", "config": {
        "minSyncPeriod": "1s", "iptables": {"minSyncPeriod": "2s"}}}
    meta = {"_mode": "iptables", "_mode_block": {"kube_proxy_config": kubeconfig_shape}}
    assert min_sync_periods_s([meta]) == [2.0]
    agents_only = {"_mode": "ipvs", "_mode_block": {"resolution": {"agents": {
        "n1": {"kube_proxy_min_sync_s": 0.0}}}}}
    assert min_sync_periods_s([agents_only]) == [0.0]
    assert min_sync_periods_s([{"_mode": "ipvs", "_mode_block": {}}]) == []


def test_synthetic_run_report_opens_on_its_planted_answer(tmp_path: Path) -> None:
    """make_run plants a slow kube-proxy sync (iptables 180 ms median vs a 12 ms slice)."""
    run = make_run(tmp_path / "run", trials=80, modes=("iptables",), censor_frac=0.0,
                   extra_meta={"modes": {"iptables": {"kube_proxy_config": {"n": {
                       "kubeproxy.config.k8s.io": {"MinSyncPeriod": "1s"}}}}}})
    paths = write_report(run, tmp_path / "out", settings=FAST)
    page = paths["html"].read_text(encoding="utf-8")
    assert page.index("<section id=answer") < page.index("<table")
    summary = pd.read_csv(paths["summary_csv"])
    e2e = summary.loc[(summary["hop"] == "ready_to_traffic") & (summary["scope"] == "all-nodes")]
    from analysis.plotkit import fmt_ms
    answer = page[page.index("<section id=answer"):page.index("</section>")]
    assert f"p50 <b>{fmt_ms(float(e2e['p50_ms'].iloc[0]))}</b>" in answer
    assert answer.count("Dominant hop: <b>kube-proxy: slice → sync done</b>") == 2
    assert answer.count("minSyncPeriod is 1 s") == 2
