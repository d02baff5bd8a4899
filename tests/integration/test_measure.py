"""The main job on the real local cluster: every hop per node, causality, ground truth."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from bench import runner
from bench.cluster.local import cluster, teardown
from bench.cluster.local.spec import ClusterSpec
from bench.providers.local import LocalProvider
from bench.results.schema import ALL_NODES, HOPS, Ev
from bench.results.store import load_events, load_hops, load_meta
from bench.scenarios import ScenarioConfig

TRIALS = 8
MS_NS = 1_000_000


def _run(spec: ClusterSpec, tools, out: Path, modes: tuple[str, ...], trials: int = TRIALS,  # type: ignore[no-untyped-def]
         interval_ms: float = 5.0, spacing_s: float = 0.0,
         scenarios: tuple[str, ...] = ("scale-up", "delete")) -> Path:
    provider = LocalProvider(spec, tools)
    cfg = runner.RunConfig(modes=modes, out_dir=out, scenario=ScenarioConfig(
        scenarios=scenarios, trials=trials, probe_interval_ms=interval_ms, trial_timeout_s=20,
        spacing_s=spacing_s))
    try:
        return runner.run(provider, cfg, say=lambda m: None)
    finally:
        provider.close()


@pytest.fixture(scope="module")
def meas_cluster(tools) -> Iterator[ClusterSpec]:  # type: ignore[no-untyped-def]
    spec = cluster.up(ClusterSpec(name="hbmeas", nodes=2), say=lambda m: None, tools=tools)
    yield spec
    teardown.teardown(spec)


@pytest.fixture(scope="module")
def default_run(meas_cluster: ClusterSpec, tools, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return _run(meas_cluster, tools, tmp_path_factory.mktemp("run") / "default",
                ("iptables", "nftables"))


def test_every_node_has_every_hop_or_a_reason(default_run: Path) -> None:
    hops = load_hops(default_run)
    for mode in ("iptables", "nftables"):
        for direction in ("add", "remove"):
            sub = hops[(hops.proxy_mode == mode) & (hops.direction == direction)]
            assert sub.trial.nunique() == TRIALS
            for hop in (h for h in HOPS if h.direction == direction and h.per_node
                        and h.path == "kube-proxy"):  # no --mesh: no mesh rows at all
                rows = sub[sub.hop == hop.name]
                for node in ("n1", "n2", ALL_NODES):
                    r = rows[rows.node == node]
                    assert len(r) == TRIALS, (mode, hop.name, node)
                    ok = r.latency_ms.notna() | (r.censored & (r.censor_reason != ""))
                    assert ok.all(), r[~ok]
    assert hops.censored.mean() < 0.05, hops[hops.censored]


def _t(ev: pd.DataFrame, event: str) -> pd.DataFrame:
    sub = ev[ev.event == event].copy()
    sub["t"] = sub.t_ns + sub.offset_ns
    sub["res"] = sub.resolution_ns + sub.uncertainty_ns
    return sub.groupby(["proxy_mode", "trial", "node"])[["t", "res"]].min().reset_index()


def test_causality_within_resolution(default_run: Path) -> None:
    ev = load_events(default_run)
    ev = ev[ev.direction == "add"]
    key = ["proxy_mode", "trial"]
    t1 = _t(ev, Ev.POD_READY).drop(columns="node")
    t2 = _t(ev, Ev.SLICE_READY).drop(columns="node")
    t12 = t1.merge(t2, on=key, suffixes=("1", "2"))
    assert len(t12) == 2 * TRIALS
    assert (t12.t2 - t12.t1 >= -(t12.res1 + t12.res2)).all(), t12
    t4 = _t(ev, Ev.RULE_PRESENT)
    t5 = _t(ev, Ev.FIRST_SUCCESS)
    chain = t4.merge(t5, on=[*key, "node"], suffixes=("4", "5")).merge(t2, on=key)
    assert len(chain) == 2 * 2 * TRIALS
    assert (chain.t4 - chain.t >= -(chain.res4 + chain.res)).all(), chain
    assert (chain.t5 - chain.t4 >= -(chain.res5 + chain.res4)).all(), chain


def test_run_json_records_instruments(default_run: Path) -> None:
    meta = load_meta(default_run)
    assert meta["status"] == "finished" and meta["provider"] == "local"
    for mode in ("iptables", "nftables"):
        m = meta["modes"][mode]
        assert m["trials_per_minute"] > 0
        agents = m["resolution"]["agents"]
        assert set(agents) == {"n1", "n2"}
        expected = "netlink"  # nftables mode, and iptables-nft on this host
        assert all(a["rule_method"] == expected for a in agents.values())
        assert all(0 < c < 1 for c in m["agent_cpu_fraction"].values())
        # the fine interval waits for kube-proxy's next possible sync: read from its
        # /configz, and no rule changed while a focus was still waiting for it
        assert all(a["kube_proxy_min_sync_s"] == 1.0 for a in agents.values())
        assert all(a["early_rule_changes"] == 0 for a in agents.values()), agents
        assert all(0 < a["probe_focused_s"] < m["elapsed_s"] for a in agents.values())
        assert all(o == {"offset_ns": 0, "uncertainty_ns": 0, "clock": "harness"}
                   for o in m["clock_offsets"].values()), m["clock_offsets"]
        assert any(sum(s["counts"]) > 0 for s in m["sli"].values())


def test_nodes_share_the_harness_clock(meas_cluster: ClusterSpec, tools, tmp_path: Path  # type: ignore[no-untyped-def]
                                       ) -> None:
    """Every node of the local cluster runs on the harness's kernel: node stamps are on the
    harness clock, with no estimated offset applied (exactly 0, uncertainty 0)."""
    out = _run(meas_cluster, tools, tmp_path / "clock", ("iptables",), trials=1,
               scenarios=("scale-up",))
    offsets = load_meta(out)["modes"]["iptables"]["clock_offsets"]
    assert offsets == {n: {"offset_ns": 0, "uncertainty_ns": 0, "clock": "harness"}
                       for n in ("n1", "n2")}
    ev = load_events(out)
    node = ev[ev.source.str.startswith("agent-")]
    assert set(node.node) == {"n1", "n2"} and node.event.isin([Ev.FIRST_SUCCESS]).any()
    assert (node.offset_ns == 0).all() and (node.uncertainty_ns == 0).all()
    assert (node.clock == "harness").all()


def test_first_and_last_answers_have_the_fine_resolution(default_run: Path) -> None:
    """The focus is on before the rules change: the request before a first answer (after
    a last one) went out one fine interval away, not an idle one."""
    ev = load_events(default_run)
    res = ev[ev.event.isin([Ev.FIRST_SUCCESS, Ev.LAST_SUCCESS])].resolution_ns / 1e6
    assert len(res) == 2 * 2 * 2 * TRIALS
    # a robust share, not every sample: on a loaded 2-core CI machine a focus can come a
    # little late (60 of 64 within 2 intervals and one at the idle interval were seen in
    # CI, 84-92 % under heavier load); the run records the share of time at the fine
    # interval per node (instruments), which is where a regression shows as a figure
    assert res.median() <= 2 * 5.0, res.describe()
    assert (res <= 2 * 5.0).mean() >= 0.85, res.describe()
    assert (res < 100).mean() >= 0.95, res.describe()  # rarely the idle interval


def test_crash_and_readiness_flap(meas_cluster: ClusterSpec, tools, tmp_path: Path,  # type: ignore[no-untyped-def]
                                  default_run: Path) -> None:
    """A crash black-holes requests from the exit on; a readiness flap keeps the container
    serving until its IP leaves the rules. Both come back, every node sees it all."""
    trials = 4
    out = _run(meas_cluster, tools, tmp_path / "flap", ("nftables",), trials=trials,
               scenarios=("crash", "readiness-flap"))
    hops = load_hops(out)
    per_node = hops[hops.node.isin(["n1", "n2"])]
    for (scenario, direction), sub in per_node.groupby(["scenario", "direction"]):
        assert sub.trial.nunique() == trials, (scenario, direction)
        for hop in (h for h in HOPS if h.direction == direction and h.per_node
                    and h.name != "blackhole" and h.path == "kube-proxy"):
            rows = sub[sub.hop == hop.name]
            assert len(rows) == 2 * trials, (scenario, direction, hop.name)
            ok = rows.latency_ms.notna() | (rows.censored & (rows.censor_reason != ""))
            assert ok.all(), rows[~ok]
    ev = load_events(out)
    crash = ev[(ev.scenario == "crash") & (ev.direction == "remove")]
    fails = crash[crash.event == Ev.FAIL_FIRST]
    # the exit refuses connections at once: failures on (nearly) every node and trial,
    # seen at the fine interval (the crash is focused from its trigger)
    assert len(fails) >= 2 * trials - 1, crash.event.value_counts()
    # at the fine interval, not the idle one: robust shares, since one gap on a loaded
    # 2-core machine can stretch past two intervals (14.7 ms once in CI)
    assert fails.resolution_ns.median() <= 2 * 5 * MS_NS, fails.resolution_ns
    assert (fails.resolution_ns < 100 * MS_NS).all(), fails.resolution_ns
    trig = crash[crash.event == Ev.TRIGGER].set_index("trial").t_ns
    assert (fails.t_ns + fails.offset_ns >= fails.trial.map(trig) - 5 * MS_NS).all()
    flap = ev[(ev.scenario == "readiness-flap") & (ev.direction == "remove")]
    assert not (flap.event == Ev.FAIL_FIRST).any(), "a flapped pod keeps serving"
    last = _t(flap, Ev.LAST_SUCCESS)
    gone = _t(flap, Ev.RULE_ABSENT)
    both = last.merge(gone, on=["proxy_mode", "trial", "node"], suffixes=("_last", "_gone"))
    assert len(both) == 2 * trials
    assert (both.t_last <= both.t_gone + both.res_last + both.res_gone).all(), both
    meta = load_meta(out)
    agents = meta["modes"]["nftables"]["resolution"]["agents"]
    assert all(a["early_rule_changes"] == 0 for a in agents.values()), agents


def test_prober_interval_bounds_rule_to_traffic(meas_cluster: ClusterSpec, tools,  # type: ignore[no-untyped-def]
                                                tmp_path: Path, default_run: Path) -> None:
    slow = _run(meas_cluster, tools, tmp_path / "slow", ("nftables",), trials=6,
                interval_ms=50.0)
    fast = load_hops(default_run)
    fast = fast[(fast.proxy_mode == "nftables") & (fast.hop == "rule_to_traffic")
                & (fast.node != ALL_NODES)].latency_ms.median()
    slow_h = load_hops(slow)
    slow_m = slow_h[(slow_h.hop == "rule_to_traffic")
                    & (slow_h.node != ALL_NODES)].latency_ms.median()
    print(f"median rule->first answer: {fast:.1f} ms at 5 ms, {slow_m:.1f} ms at 50 ms")
    assert fast < 4 * 5 + 10  # a new pod gets half the requests: ~2 intervals expected
    assert slow_m > fast and slow_m < 4 * 50 + 10


def test_ground_truth_endpointslice_batch_period(default_run: Path, tools, tmp_path: Path  # type: ignore[no-untyped-def]
                                                 ) -> None:
    spec = cluster.up(ClusterSpec(name="hbbatch", nodes=2, component_args={
        "kube-controller-manager": ["--endpointslice-updates-batch-period=1s"]}),
        say=lambda m: None, tools=tools)
    try:
        # spacing >= the batch period: no other update of the Service's pods is still
        # queued when the delete arrives, so the removal waits the full period
        batched = _run(spec, tools, tmp_path / "batched", ("nftables",), spacing_s=1.5)
    finally:
        teardown.teardown(spec)
    base = load_hops(default_run)
    base = base[base.proxy_mode == "nftables"]
    slow = load_hops(batched)
    rise = {}
    for hop in ("unready_to_slice", "ready_to_slice"):
        rise[hop] = slow[slow.hop == hop].latency_ms.median() - \
            base[base.hop == hop].latency_ms.median()
    print(f"median rise with a 1 s batch period: {rise}")
    assert abs(rise["unready_to_slice"] - 1000) <= 100
    # an add is batched with the pod's earlier status writes (container started), which
    # precede Ready by the readiness probe's random first delay: up to, not exactly, 1 s
    assert 0 < rise["ready_to_slice"] <= 1100
