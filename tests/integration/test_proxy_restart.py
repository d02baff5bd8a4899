"""The proxy-restart scenario on the real local cluster, in iptables and nftables mode:
kube-proxy restarted on one node under a serving pod, every restart hop on that node,
the other node serving throughout, and the report built from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from analysis.report import write_report
from bench import runner
from bench.cluster.local import cluster, teardown
from bench.cluster.local.spec import ClusterSpec
from bench.cluster.toolset import Toolset
from bench.errors import UserError
from bench.providers.local import LocalProvider
from bench.results.schema import ALL_NODES, HOPS, Ev
from bench.results.store import load_events, load_hops
from bench.scenarios import ScenarioConfig
from bench.scenarios.proxy_restart import pick_node

pytestmark = pytest.mark.cluster

TRIALS = 3
MODES = ("iptables", "nftables")
RESTART_HOPS = [h for h in HOPS if h.direction == "restart"]


@pytest.fixture(scope="module")
def restart_run(tools, tmp_path_factory) -> Iterator[tuple[Path, list[str]]]:  # type: ignore[no-untyped-def]
    spec = cluster.up(ClusterSpec(name="restart1", nodes=2), say=lambda m: None, tools=tools)
    try:
        provider = LocalProvider(spec, tools)
        out = tmp_path_factory.mktemp("restart") / "run"
        cfg = runner.RunConfig(modes=MODES, out_dir=out, scenario=ScenarioConfig(
            scenarios=("proxy-restart",), trials=TRIALS, trial_timeout_s=30))
        try:
            runner.run(provider, cfg, say=lambda m: None)
        finally:
            provider.close()
        yield out, spec.node_names()
    finally:
        teardown.teardown(spec)


def _t(ev: pd.DataFrame, node: str, event: str) -> list[int]:
    sel = ev[(ev.node == node) & (ev.event == event)]
    return sorted((sel.t_ns + sel.offset_ns).tolist())


def test_every_restart_trial_has_every_hop_on_the_restarted_node_only(
        restart_run: tuple[Path, list[str]]) -> None:
    out, nodes = restart_run
    hops = load_hops(out)
    for mode in MODES:
        sub = hops[(hops.proxy_mode == mode) & (hops.direction == "restart")]
        assert sorted(sub.trial.unique()) == list(range(TRIALS)), mode
        for trial in range(TRIALS):
            target = pick_node(nodes, trial)
            rows = sub[sub.trial == trial]
            assert set(rows.node) == {target, ALL_NODES}, (mode, trial)  # only that node
            for hop in RESTART_HOPS:
                for node in (target, ALL_NODES):
                    r = rows[(rows.hop == hop.name) & (rows.node == node)]
                    assert len(r) == 1, (mode, trial, hop.name, node)
                    ok = r.latency_ms.notna() | (r.censored & (r.censor_reason != ""))
                    assert ok.all(), r.to_dict("records")


def test_the_restart_chain_is_in_order_on_the_restarted_node(
        restart_run: tuple[Path, list[str]]) -> None:
    out, nodes = restart_run
    ev = load_events(out)
    hops = load_hops(out)
    for mode in MODES:
        for trial in range(TRIALS):
            target = pick_node(nodes, trial)
            t = ev[(ev.proxy_mode == mode) & (ev.direction == "restart") & (ev.trial == trial)]
            (kill,), (started,) = _t(t, target, Ev.PROXY_KILLED), _t(t, target, Ev.PROXY_STARTED)
            syncs = [s for s in _t(t, target, Ev.PROXY_SYNC) if s >= started]
            (rule,), (first,) = _t(t, target, Ev.RULE_PRESENT), _t(t, target, Ev.FIRST_SUCCESS)
            assert syncs, (mode, trial)
            assert kill < started < syncs[0], (mode, trial)
            assert started < rule, (mode, trial)
            # the rule watcher stamps when it read the monitor line (nftables: up to 5 ms
            # late), so the first answer may be sent just before it: within the resolution
            res = hops[(hops.proxy_mode == mode) & (hops.trial == trial)
                       & (hops.direction == "restart") & (hops.node == target)
                       & (hops.hop == "rule_to_traffic")].resolution_ms.iloc[0]
            assert first >= rule - res * 1e6, (mode, trial, (first - rule) / 1e6, res)
            # kube-proxy stamps its sync's end after the commit the rule watcher saw: the
            # rule may lead the full sync's stamp by a few ms, never by a sync period
            assert rule > syncs[0] - 100_000_000, (mode, trial, (syncs[0] - rule) / 1e6)
            # the Service truly stopped answering there: no answer between the cleanup and
            # the new process (a probe in flight may retry its SYN into the new rules and
            # succeed, so failed requests are not certain in every trial)
            assert first > started, (mode, trial)
            h = hops[(hops.proxy_mode == mode) & (hops.trial == trial)
                     & (hops.direction == "restart") & (hops.node == target)]
            e2e = h[h.hop == "kill_to_traffic"].latency_ms.iloc[0]
            assert e2e == pytest.approx((first - kill) / 1e6)


def test_the_other_node_keeps_serving(restart_run: tuple[Path, list[str]]) -> None:
    out, nodes = restart_run
    ev = load_events(out)
    for mode in MODES:
        for trial in range(TRIALS):
            target = pick_node(nodes, trial)
            t = ev[(ev.proxy_mode == mode) & (ev.direction == "restart") & (ev.trial == trial)]
            (first_there,) = _t(t, target, Ev.FIRST_SUCCESS)
            for other in (n for n in nodes if n != target):
                # failures there are not asserted away: one iptables trial saw a request
                # fail on the other node (its pod on the restarted node); a finding, noted
                answers = _t(t, other, Ev.FIRST_SUCCESS)  # answered again once forgotten
                assert answers and answers[0] < first_there, (mode, trial, other)


def test_the_report_shows_the_restart_hops(restart_run: tuple[Path, list[str]],
                                           tmp_path: Path) -> None:
    out, _ = restart_run
    paths = write_report(out, tmp_path / "report")
    page = paths["html"].read_text()
    assert "kube-proxy killed → first answer" in page
    assert {"ecdf_restart", "box_restart"} <= set(paths)
    summary = pd.read_csv(paths["summary_csv"])
    assert {h.name for h in RESTART_HOPS} == set(
        summary.loc[summary.direction == "restart", "hop"])


def test_a_provider_without_restart_is_refused_up_front(tmp_path: Path) -> None:
    class NoRestart:
        name = "kubeconfig"

    cfg = runner.RunConfig(modes=("iptables",), out_dir=tmp_path / "run",
                           scenario=ScenarioConfig(scenarios=("proxy-restart",), trials=1))
    with pytest.raises(UserError, match="cannot restart kube-proxy"):
        runner.run(NoRestart(), cfg, say=lambda m: None)  # type: ignore[arg-type]
    assert not (tmp_path / "run").exists()


def test_with_parallel_lanes_the_restart_cycle_runs_alone_after_the_others(
        tools: Toolset, tmp_path: Path) -> None:
    """--parallel 2 with proxy-restart: the restart's cycle (a solo scenario) waits until
    the shared cycles are done, and every trial completes (a restart on an idle cluster
    once hung here, waiting for a kube-proxy sync after the one that made the change)."""
    spec = cluster.up(ClusterSpec(name="restart2", nodes=2), say=lambda m: None, tools=tools)
    try:
        provider = LocalProvider(spec, tools)
        out = tmp_path / "run"
        cfg = runner.RunConfig(modes=("iptables",), out_dir=out, scenario=ScenarioConfig(
            scenarios=("scale-up", "delete", "proxy-restart"), trials=3, parallel=2,
            counts={"proxy-restart": 1}, trial_timeout_s=30))
        try:
            runner.run(provider, cfg, say=lambda m: None)
        finally:
            provider.close()
    finally:
        teardown.teardown(spec)
    ev = load_events(out)
    ends = ev[ev.event == Ev.TRIAL_END]
    assert len(ends) == 3 + 3 + 1  # every add, remove and the one restart
    trig = ev[ev.event == Ev.TRIGGER]
    solo = trig[trig.trial == 0].t_ns.min()  # cycle 0 records the restart: it runs alone
    assert (trig[trig.trial != 0].t_ns < solo).all()
    assert set(trig[trig.trial != 0].service) == {"svc0", "svc1"}  # two lanes shared them
    censored = load_hops(out)
    timeouts = censored[censored.censor_reason.str.contains("timeout", na=False)]
    assert timeouts.empty, timeouts[["trial", "scenario", "censor_reason"]].to_dict("records")
