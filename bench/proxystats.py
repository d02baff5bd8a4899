"""What kube-proxy did during one mode, per node, and the prober's connect times: pure.

Issue 10 asks, at every sweep point, how hard kube-proxy works (sync durations, full and
partial separately where the mode has both, the number of syncs, its CPU and RSS) and what
a new connection through the ClusterIP costs. kube-proxy exposes the first part on its
/metrics page, whose counters run from its start; the mode's share is the difference of a
snapshot taken when the mode's trials start and one when they end (as the SLI histogram in
bench.latency). The agents' connect-time histograms (bench/agent/connhist.py) are totals
since each agent started, and are differenced the same way.

Names (Kubernetes 1.35, pkg/proxy/metrics): `kubeproxy_sync_proxy_rules_duration_seconds`
in every mode; `kubeproxy_sync_full_proxy_rules_duration_seconds` and
`kubeproxy_sync_partial_proxy_rules_duration_seconds` registered in iptables and nftables
modes only (not ipvs); `kubeproxy_sync_proxy_rules_iptables_total{table}` in iptables mode
only (nftables mode exposes no rule count). All carry `ip_family`, matched leniently by
bench.prom. Quantiles of a histogram are analysis.quantiles' rule (inverted CDF) over the
bucket upper bounds: an estimate "at most this bucket's bound".

No I/O: the collector (bench.proxycollect) fetches, this module computes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, cast

import numpy as np

from analysis.quantiles import quantiles, sample
from bench import prom
from bench.latency import decumulate

SYNC_ALL = prom.SYNC_DURATION
SYNC_FULL = "kubeproxy_sync_full_proxy_rules_duration_seconds"
SYNC_PARTIAL = "kubeproxy_sync_partial_proxy_rules_duration_seconds"
IPTABLES_RULES = "kubeproxy_sync_proxy_rules_iptables_total"  # iptables mode, per table
CPU = "process_cpu_seconds_total"
RSS = "process_resident_memory_bytes"
_SYNCS = {"sync_all_s": SYNC_ALL, "sync_full_s": SYNC_FULL, "sync_partial_s": SYNC_PARTIAL}


class Buckets(TypedDict):
    """A histogram over the mode: counts per bucket (not cumulative) by upper bound (s),
    the last bound "+Inf"."""

    bounds_s: list[float | str]
    counts: list[float]


class ProxyStats(TypedDict, total=False):
    """One node's kube-proxy over one mode (run.json `modes[mode].proxy_stats[node]`).
    A histogram the mode does not have (full/partial in ipvs mode) is absent."""

    sync_all_s: Buckets
    sync_full_s: Buckets
    sync_partial_s: Buckets
    syncs: int                        # syncs during the mode (sync_all_s's total)
    cpu_s: float                      # process_cpu_seconds_total, end minus start
    rss_bytes: int                    # process_resident_memory_bytes at the end
    kube_proxy_rules: dict[str, int]  # kube-proxy's own rule count per table (iptables)


class ConnectHist(TypedDict):
    """TCP connect times through the ClusterIP on one node over the mode, all targets:
    counts per bucket by upper bound (ms); one more count than bounds (the overflow)."""

    bounds_ms: list[float]
    counts: list[int]


def _parse(text: str) -> list[prom.Sample] | None:
    try:
        return prom.parse(text)
    except prom.MetricsParseError:
        return None


def hist_delta(before: prom.Histogram | None, after: prom.Histogram) -> Buckets | None:
    """The mode's share of a cumulative histogram; None when `after` has no buckets (the
    mode does not register it). The whole of `after` counts when `before` has no usable
    base: absent, another bucket layout, or a smaller total (kube-proxy restarted)."""
    if not after.counts:
        return None
    base = before.counts if before is not None and before.upper_bounds_s == after.upper_bounds_s \
        else None
    if base and after.counts[-1] < base[-1]:
        base = None
    cum = [c - (base[i] if base else 0.0) for i, c in enumerate(after.counts)]
    return Buckets(bounds_s=[prom.bound_label(b) for b in after.upper_bounds_s],
                   counts=decumulate(cum))


def proxy_stats(before_text: str, after_text: str) -> ProxyStats | None:
    """One node's ProxyStats from its /metrics text at the mode's start and end; None when
    the end text is not kube-proxy's metrics (the agent could not fetch it)."""
    after = _parse(after_text)
    if after is None or prom.find(after, SYNC_ALL + "_count") is None:
        return None
    before = _parse(before_text) or []
    out = ProxyStats()
    for key, name in _SYNCS.items():
        d = hist_delta(prom.histogram(before, name, ip_family="IPv4") if before else None,
                       prom.histogram(after, name, ip_family="IPv4"))
        if d is not None:
            out[key] = d  # type: ignore[literal-required]
    out["syncs"] = int(sum(out["sync_all_s"]["counts"])) if "sync_all_s" in out else 0
    cpu_after = prom.value(after, CPU, default=0.0) or 0.0
    cpu_before = prom.value(before, CPU, default=0.0) or 0.0
    out["cpu_s"] = round(cpu_after - cpu_before if cpu_after >= cpu_before else cpu_after, 3)
    out["rss_bytes"] = int(prom.value(after, RSS, default=0.0) or 0.0)
    rules = {s.labels.get("table", ""): int(s.value) for s in after
             if s.name == IPTABLES_RULES and s.labels.get("ip_family", "IPv4") == "IPv4"}
    if rules:
        out["kube_proxy_rules"] = rules
    return out


def _hist(s: ProxyStats, key: str) -> Buckets | None:
    h = s.get(key)
    return cast(Buckets, h) if isinstance(h, dict) else None


def add(a: ProxyStats | None, b: ProxyStats) -> ProxyStats:
    """`a` then `b`, kube-proxy restarted between them (its counters began again):
    histograms, syncs and CPU summed; RSS and rule counts are the later ones (`b`'s)."""
    if not a:
        return b
    out = ProxyStats(**b)
    for key in _SYNCS:
        x, y = _hist(a, key), _hist(b, key)
        if x is not None and y is not None and x["bounds_s"] == y["bounds_s"]:
            out[key] = Buckets(bounds_s=list(y["bounds_s"]),  # type: ignore[literal-required]
                               counts=[p + q for p, q in zip(x["counts"], y["counts"])])
    out["syncs"] = a.get("syncs", 0) + b.get("syncs", 0)
    out["cpu_s"] = round(a.get("cpu_s", 0.0) + b.get("cpu_s", 0.0), 3)
    return out


def per_node(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, ProxyStats]:
    """ProxyStats per node of `after` (a node whose end snapshot failed is left out)."""
    out = {}
    for node, text in after.items():
        s = proxy_stats(before.get(node, ""), text)
        if s is not None:
            out[node] = s
    return out


def connect_delta(before: Mapping[str, Mapping[str, Any]],
                  after: Mapping[str, Mapping[str, Any]]) -> dict[str, ConnectHist]:
    """Per node, the agents' connect histograms (GET /connect replies) summed over targets,
    end minus start. A target whose counts went down (the agent restarted) counts whole."""
    out: dict[str, ConnectHist] = {}
    for node, a in after.items():
        bounds = [float(b) for b in a.get("bounds_ms", [])]
        b = before.get(node) or {}
        same = [float(x) for x in b.get("bounds_ms", [])] == bounds
        total = [0] * (len(bounds) + 1)
        for target, counts in (a.get("targets") or {}).items():
            base = (b.get("targets") or {}).get(target) if same else None
            if base is None or len(base) != len(counts) or any(
                    x < y for x, y in zip(counts, base)):
                base = [0] * len(counts)
            for i, (x, y) in enumerate(zip(counts, base)):
                if i < len(total):
                    total[i] += int(x) - int(y)
        out[node] = ConnectHist(bounds_ms=bounds, counts=total)
    return out


def bucket_quantiles(bounds: Sequence[float | str], counts: Sequence[float],
                     qs: Sequence[float]) -> list[float]:
    """Quantiles of a per-bucket histogram by analysis.quantiles' rule, each value the
    upper bound of its bucket; +inf in the overflow (a count past the last bound or a
    "+Inf" bound); NaN when empty."""
    ub = [math.inf if b == "+Inf" else float(b) for b in bounds]
    ub += [math.inf] * (len(counts) - len(ub))
    n = [max(0, int(round(c))) for c in counts]
    values = np.repeat(np.asarray(ub[:len(n)], dtype=np.float64), n)
    finite = np.isfinite(values)
    return [float(x) for x in quantiles(sample(np.where(finite, values, np.nan), ~finite), qs)]


def _ms(x: float) -> str:
    if math.isnan(x):
        return "-"
    if math.isinf(x):
        return "inf"
    return f"{x:.3g}"


def summary_line(node: str, stats: ProxyStats | None, connect: ConnectHist | None,
                 elapsed_s: float) -> str:
    """One line per node for the mode's end: kube-proxy's syncs, CPU, RSS; connect times."""
    parts = [f"  {node}:"]
    if stats is None:
        parts.append("kube-proxy metrics not available;")
    else:
        sync = stats.get("sync_all_s")
        if sync:
            p50, p99 = bucket_quantiles(sync["bounds_s"], sync["counts"], [0.5, 0.99])
            parts.append(f"{stats.get('syncs', 0)} syncs, p50 <= {_ms(p50 * 1e3)} ms "
                         f"p99 <= {_ms(p99 * 1e3)} ms;")
        full = stats.get("sync_full_s")
        if full and sum(full["counts"]):
            (fp50,) = bucket_quantiles(full["bounds_s"], full["counts"], [0.5])
            parts.append(f"{int(sum(full['counts']))} full (p50 <= {_ms(fp50 * 1e3)} ms);")
        cpu = stats.get("cpu_s", 0.0) / elapsed_s * 100 if elapsed_s > 0 else math.nan
        parts.append(f"kube-proxy CPU {cpu:.1f}%, RSS {stats.get('rss_bytes', 0) / 2**20:.0f} MB;")
    if connect and sum(connect["counts"]):
        c50, c99 = bucket_quantiles(connect["bounds_ms"], connect["counts"], [0.5, 0.99])
        parts.append(f"connect p50 <= {_ms(c50)} ms p99 <= {_ms(c99)} ms "
                     f"({sum(connect['counts'])} connections)")
    else:
        parts.append("no connect times")
    return " ".join(parts)


def rss_from_metrics(text: str) -> int | None:
    """process_resident_memory_bytes from a component's /metrics text (the API server's is
    megabytes: only that family's lines are parsed); None when absent."""
    lines = [ln for ln in text.splitlines() if ln.startswith(RSS) or
             (ln.startswith("# ") and f" {RSS} " in ln)]
    samples = _parse("\n".join(lines) + "\n")
    v = prom.value(samples, RSS) if samples else None
    return int(v) if v is not None else None
