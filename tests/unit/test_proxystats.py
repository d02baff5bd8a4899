"""bench.proxystats: kube-proxy's figures over a mode from two /metrics snapshots, the
agents' connect-time histograms, and the quantiles read off bucket counts."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench import prom, proxycollect, proxystats
from bench.agent import connhist

BOUNDS = [0.001 * 2 ** i for i in range(15)]  # kube-proxy's ExponentialBuckets(0.001, 2, 15)


def _hist(name: str, per_bucket: list[int]) -> str:
    """A kube-proxy 1.35 histogram (labelled ip_family) from per-bucket counts; the last
    count is the overflow (+Inf)."""
    assert len(per_bucket) == len(BOUNDS) + 1
    lines = [f"# HELP {name} [ALPHA] x", f"# TYPE {name} histogram"]
    cum = 0
    for le, c in zip([*map(repr, BOUNDS), "+Inf"], per_bucket):
        cum += c
        lines.append(f'{name}_bucket{{ip_family="IPv4",le="{le}"}} {cum}')
    lines.append(f'{name}_sum{{ip_family="IPv4"}} 1.5')
    lines.append(f'{name}_count{{ip_family="IPv4"}} {cum}')
    return "\n".join(lines)


def _metrics(all_: list[int], full: list[int] | None, partial: list[int] | None,
             cpu: float, rss: float, nat_rules: int | None = None) -> str:
    parts = [_hist(proxystats.SYNC_ALL, all_)]
    if full is not None:
        parts.append(_hist(proxystats.SYNC_FULL, full))
    if partial is not None:
        parts.append(_hist(proxystats.SYNC_PARTIAL, partial))
    parts += ["# TYPE process_cpu_seconds_total counter", f"process_cpu_seconds_total {cpu}",
              "# TYPE process_resident_memory_bytes gauge",
              f"process_resident_memory_bytes {rss:e}"]
    if nat_rules is not None:
        parts += [f"# TYPE {proxystats.IPTABLES_RULES} gauge",
                  f'{proxystats.IPTABLES_RULES}{{ip_family="IPv4",table="nat"}} {nat_rules}',
                  f'{proxystats.IPTABLES_RULES}{{ip_family="IPv4",table="filter"}} 7']
    return "\n".join(parts) + "\n"


def _counts(**at: int) -> list[int]:
    """Per-bucket counts: at={"b3": 2} puts 2 in bucket 3."""
    out = [0] * (len(BOUNDS) + 1)
    for k, v in at.items():
        out[int(k[1:])] = v
    return out


def test_mode_share_is_the_difference_per_bucket() -> None:
    before = _metrics(_counts(b2=3), _counts(b5=1), _counts(b2=2), cpu=1.25, rss=4e7)
    after = _metrics(_counts(b2=10, b4=2, b15=1), _counts(b5=1, b6=1), _counts(b2=9, b4=1),
                     cpu=3.5, rss=5.5e7, nat_rules=42)
    s = proxystats.proxy_stats(before, after)
    assert s is not None
    assert s["sync_all_s"]["counts"] == _counts(b2=7, b4=2, b15=1)
    assert s["sync_all_s"]["bounds_s"][-1] == "+Inf" and s["sync_all_s"]["bounds_s"][0] == 0.001
    assert s["sync_full_s"]["counts"] == _counts(b6=1)
    assert s["sync_partial_s"]["counts"] == _counts(b2=7, b4=1)
    assert s["syncs"] == 10
    assert s["cpu_s"] == pytest.approx(2.25)
    assert s["rss_bytes"] == 55_000_000
    assert s["kube_proxy_rules"] == {"nat": 42, "filter": 7}


def test_a_mode_without_full_and_partial_histograms_lacks_them() -> None:
    """ipvs mode registers only the sync_proxy_rules histogram; nftables no rule count."""
    s = proxystats.proxy_stats("", _metrics(_counts(b1=4), None, None, cpu=2.0, rss=1e6))
    assert s is not None
    assert "sync_full_s" not in s and "sync_partial_s" not in s and "kube_proxy_rules" not in s
    assert s["syncs"] == 4 and s["cpu_s"] == 2.0  # no start snapshot: all of it counts


def test_a_restarted_kube_proxy_counts_from_its_restart() -> None:
    before = _metrics(_counts(b2=50), None, None, cpu=9.0, rss=1e6)
    after = _metrics(_counts(b2=3, b9=1), None, None, cpu=0.5, rss=1e6)
    s = proxystats.proxy_stats(before, after)
    assert s is not None and s["syncs"] == 4 and s["cpu_s"] == 0.5


def test_unusable_end_snapshot_leaves_the_node_out() -> None:
    good = _metrics(_counts(b1=1), None, None, cpu=1.0, rss=1e6)
    out = proxystats.per_node({"n1": good, "n2": good},
                              {"n1": good, "n2": "# error: agent on n2: timed out"})
    assert set(out) == {"n1"} and out["n1"]["syncs"] == 0


def test_bucket_quantiles_follow_the_inverted_cdf() -> None:
    bounds: list[float | str] = [1.0, 2.0, 4.0, "+Inf"]
    assert proxystats.bucket_quantiles(bounds, [50, 49, 1, 0], [0.5, 0.99, 1.0]) == [1.0, 2.0,
                                                                                     4.0]
    assert proxystats.bucket_quantiles(bounds, [50, 50, 0, 0], [0.5, 0.51]) == [1.0, 2.0]
    # the overflow is "beyond the last bound": +inf, never the last finite bound
    assert proxystats.bucket_quantiles(bounds, [1, 0, 0, 1], [1.0]) == [math.inf]
    # connect histograms carry one more count than bounds: the overflow
    assert proxystats.bucket_quantiles([1.0, 2.0], [0, 1, 3], [0.5]) == [math.inf]
    assert math.isnan(proxystats.bucket_quantiles(bounds, [0, 0, 0, 0], [0.5])[0])


def _snap(**targets: list[int]) -> dict[str, object]:
    return {"bounds_ms": connhist.BOUNDS_MS, "targets": targets}


def test_connect_delta_sums_targets_and_subtracts_the_start() -> None:
    n = connhist.N_BOUNDS + 1
    a0, a1 = [0] * n, [0] * n
    a0[3], a1[3], a1[40] = 5, 8, 2
    b1 = [0] * n
    b1[10] = 4  # a target armed after the start snapshot: all of it counts
    out = proxystats.connect_delta({"n1": _snap(svc0=a0)}, {"n1": _snap(svc0=a1, svc1=b1),
                                                            "n2": _snap()})
    assert out["n1"]["bounds_ms"] == connhist.BOUNDS_MS
    c = out["n1"]["counts"]
    assert c[3] == 3 and c[40] == 2 and c[10] == 4 and sum(c) == 9
    assert sum(out["n2"]["counts"]) == 0


def test_summary_line_reads_the_block() -> None:
    s = proxystats.proxy_stats("", _metrics(_counts(b2=99, b5=1), _counts(b5=1), None,
                                            cpu=1.5, rss=50 * 2**20))
    counts = [0] * (connhist.N_BOUNDS + 1)
    counts[connhist.bucket(150_000)] = 10
    line = proxystats.summary_line(
        "n1", s, proxystats.ConnectHist(bounds_ms=connhist.BOUNDS_MS, counts=counts), 30.0)
    assert "100 syncs, p50 <= 4 ms p99 <= 4 ms" in line
    assert "1 full (p50 <= 32 ms)" in line and "CPU 5.0%, RSS 50 MB" in line
    assert "connect p50 <= 0.158 ms" in line and "(10 connections)" in line
    lines = proxycollect.lines({"proxy_stats": {"n1": s}, "connect_ms": {}}, 30.0)
    assert "no connect times" in lines[0] and "etcd absent" in lines[-1]


def test_rss_from_a_large_metrics_page() -> None:
    page = "\n".join(f'apiserver_x_bucket{{le="{i}"}} {i}' for i in range(1000))
    page = ("# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
            "# TYPE process_resident_memory_bytes gauge\n"
            + "# TYPE apiserver_x histogram\n" + page
            + "\nprocess_resident_memory_bytes 3.1457e+08\n")
    assert proxystats.rss_from_metrics(page) == 314_570_000
    assert proxystats.rss_from_metrics("") is None


def test_resumed_segments_add_up() -> None:
    """--resume: a mode measured in two segments counts both segments' syncs, CPU and
    connections; RSS is the latest."""
    from bench.results.modeblock import ModeBlock, accumulate

    def seg(syncs_at_b2: int, cpu: float, rss: float, conns: int) -> ModeBlock:
        s = proxystats.proxy_stats("", _metrics(_counts(b2=syncs_at_b2), _counts(b2=1),
                                                _counts(b2=syncs_at_b2 - 1), cpu=cpu, rss=rss))
        counts = [0] * (connhist.N_BOUNDS + 1)
        counts[5] = conns
        return ModeBlock(trials=3, elapsed_s=10.0, proxy_stats={"n1": s},
                         connect_ms={"n1": {"bounds_ms": connhist.BOUNDS_MS, "counts": counts}},
                         apiserver_rss_bytes=int(rss))

    whole = accumulate(accumulate(None, seg(4, 1.0, 2e6, 7)), seg(6, 0.5, 3e6, 5))
    s = whole["proxy_stats"]["n1"]
    assert s["syncs"] == 10 and s["cpu_s"] == 1.5 and s["rss_bytes"] == 3_000_000
    assert sum(s["sync_all_s"]["counts"]) == 10 and sum(s["sync_full_s"]["counts"]) == 2
    assert sum(whole["connect_ms"]["n1"]["counts"]) == 12
    assert whole["apiserver_rss_bytes"] == 3_000_000


def test_real_kube_proxy_pages_count_ipv4_only() -> None:
    """Pages of a real kube-proxy 1.35 (the local cluster's, trimmed to these families):
    it exports IPv6 series too; the figures are the IPv4 family's."""
    from pathlib import Path
    data = Path(__file__).parent / "data"
    ipt = proxystats.proxy_stats("", (data / "kube-proxy-iptables-1.35.metrics").read_text())
    assert ipt is not None
    assert ipt["syncs"] == 170 and sum(ipt["sync_full_s"]["counts"]) == 1
    assert sum(ipt["sync_partial_s"]["counts"]) == 169
    assert ipt["kube_proxy_rules"] == {"filter": 4, "nat": 10}
    assert ipt["cpu_s"] == 2.39 and ipt["rss_bytes"] == 65_200_128
    nft = proxystats.proxy_stats("", (data / "kube-proxy-nftables-1.35.metrics").read_text())
    assert nft is not None and nft["syncs"] == 1 and "kube_proxy_rules" not in nft
    # just after a switch: one full sync, no partial one yet (no series at all)
    assert sum(nft["sync_full_s"]["counts"]) == 1 and "sync_partial_s" not in nft


class _Agents:
    """The two AgentStore calls ModeStats makes, answering from a list of snapshots."""

    def __init__(self) -> None:
        self.now: dict[str, str] = {}

    def kube_proxy_metrics(self) -> dict[str, str]:
        return dict(self.now)

    def mesh_errors(self) -> dict[str, list[str]]:
        return {}

    def connect_histograms(self) -> dict[str, dict[str, object]]:
        return {}


def _with_sli(text: str, per_bucket: list[int]) -> str:
    return text + _hist(prom.NETWORK_PROGRAMMING, per_bucket) + "\n"


def test_a_restart_mid_mode_sums_both_processes_counts() -> None:
    """proxy-restart begins kube-proxy's counters again: the mode's figures are the first
    process's share up to the cut plus the new process's whole count, not only the latter."""
    agents = _Agents()
    start = {"n1": _with_sli(_metrics(_counts(b2=5), _counts(b5=1), _counts(b2=4),
                                      cpu=10.0, rss=1e6), _counts(b3=2)),
             "n2": _with_sli(_metrics(_counts(b2=1), None, None, cpu=1.0, rss=1e6),
                             _counts(b3=1))}
    stats = proxycollect.ModeStats(provider=None, agents=agents,  # type: ignore[arg-type]
                                   kube_proxy_before=start)
    agents.now = {**start, "n1": _with_sli(_metrics(
        _counts(b2=9, b4=1), _counts(b5=1, b6=1), _counts(b2=8), cpu=12.0, rss=1e6),
        _counts(b3=5, b6=1))}
    stats.cut("n1")  # n1's first process: +4 b2, +1 b4 syncs; 2 s CPU; SLI +3 b3, +1 b6
    end = {"n1": _with_sli(_metrics(_counts(b2=2, b10=1), _counts(b10=1), _counts(b2=2),
                                    cpu=3.0, rss=2e6), _counts(b3=1, b11=1)),
           "n2": _with_sli(_metrics(_counts(b2=4), None, None, cpu=1.5, rss=1e6),
                           _counts(b3=3))}
    stats._component_rss = dict  # type: ignore[method-assign]
    stats._apiserver_rss = lambda: None  # type: ignore[method-assign]
    block = stats.block(end)
    n1 = block["proxy_stats"]["n1"]
    assert n1["sync_all_s"]["counts"] == _counts(b2=6, b4=1, b10=1)
    assert n1["sync_full_s"]["counts"] == _counts(b6=1, b10=1)
    assert n1["syncs"] == 8 and n1["cpu_s"] == pytest.approx(5.0)
    assert n1["rss_bytes"] == 2_000_000  # the end's
    assert block["sli"]["n1"]["counts"] == _counts(b3=4, b6=1, b11=1)
    assert block["proxy_stats"]["n2"]["syncs"] == 3  # no restart: end minus start
    assert block["sli"]["n2"]["counts"] == _counts(b3=2)


def test_a_cut_without_metrics_loses_that_segment_only() -> None:
    agents = _Agents()
    start = {"n1": _metrics(_counts(b2=5), None, None, cpu=1.0, rss=1e6)}
    stats = proxycollect.ModeStats(None, agents, start)  # type: ignore[arg-type]
    agents.now = {"n1": "# error: agent on n1: timed out"}
    stats.cut("n1")
    assert stats.banked == {} and stats.kp_before == start  # the next cut or end still works


def _convergence(counts: dict[str, int], total: float) -> str:
    lines = ["# TYPE pilot_proxy_convergence_time histogram"]
    lines += [f'pilot_proxy_convergence_time_bucket{{le="{le}"}} {n}' for le, n in counts.items()]
    n = list(counts.values())[-1]
    lines += [f"pilot_proxy_convergence_time_sum {total}",
              f"pilot_proxy_convergence_time_count {n}"]
    return "\n".join(lines) + "\n"


class _MeshProvider:
    """A provider whose mesh control plane answers /metrics from a list of pages."""

    def __init__(self, pages: list[str | None]) -> None:
        self.pages = pages

    def mesh_metrics(self) -> str | None:
        return self.pages.pop(0)


def test_the_mesh_convergence_histogram_is_the_modes_difference() -> None:
    """istiod's pilot_proxy_convergence_time counts from its start: the mode's share is
    the end page minus the start page, per bucket, under the key `istiod`."""
    before = _convergence({"0.1": 20, "0.5": 22, "+Inf": 22}, 1.0)
    after = _convergence({"0.1": 50, "0.5": 53, "+Inf": 54}, 2.0)
    provider: Any = _MeshProvider([before, after])
    agents: Any = _Agents()
    stats = proxycollect.ModeStats(provider, agents, {})
    stats._component_rss = dict  # type: ignore[method-assign]
    stats._apiserver_rss = lambda: None  # type: ignore[method-assign]
    block = stats.block({})
    assert block["mesh_sli"]["istiod"]["counts"] == [30, 1, 1]
    assert block["mesh_sli"]["istiod"]["buckets_s"] == [0.1, 0.5, "+Inf"]


def test_no_mesh_no_mesh_sli() -> None:
    provider: Any = _MeshProvider([None, None])
    agents: Any = _Agents()
    stats = proxycollect.ModeStats(provider, agents, {})
    stats._component_rss = dict  # type: ignore[method-assign]
    stats._apiserver_rss = lambda: None  # type: ignore[method-assign]
    assert "mesh_sli" not in stats.block({})
