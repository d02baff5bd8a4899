"""Fetch, at a mode's start and end, what bench.proxystats computes the mode's figures from.

kube-proxy's /metrics comes through the agents (the runner's SLI snapshots: the same texts),
the connect-time histograms from each agent's GET /connect, the API server's RSS from its
own /metrics through the run's Kubernetes client, and etcd's RSS from the provider's
optional `component_rss()` (the local provider knows the pids it started; on a kubeconfig
cluster etcd is out of reach and its RSS is absent from the block, not 0).
"""

from __future__ import annotations

from typing import Any

from bench import prom, proxystats
from bench.errors import ClusterError
from bench.latency import SliBuckets, add_sli, sli_delta
from bench.providers.base import Provider
from bench.results.modeblock import ModeBlock
from bench.sources.agents import AgentStore


class ModeStats:
    """Start snapshot on construction (pass the runner's kube-proxy metrics taken then),
    `cut(node)` just before kube-proxy restarts on a node, `block` at the end.

    A restart begins kube-proxy's counters again: `cut` banks what the node counted since
    its last base and starts a new one, so the mode's figures sum every segment."""

    def __init__(self, provider: Provider, agents: AgentStore,
                 kube_proxy_before: dict[str, str]) -> None:
        self.provider, self.agents = provider, agents
        self.kp_before = dict(kube_proxy_before)
        self.connect_before = agents.connect_histograms()
        self.banked: dict[str, proxystats.ProxyStats] = {}
        self.banked_sli: dict[str, SliBuckets] = {}
        self.mesh_before = self._mesh_metrics()

    def cut(self, node: str) -> None:
        """kube-proxy on `node` is about to restart: bank its counts so far."""
        now = self.agents.kube_proxy_metrics().get(node, "")
        before = self.kp_before.get(node, "")
        s = proxystats.proxy_stats(before, now)
        if s is None:
            return  # no metrics now: the segment is lost, not mixed into the next
        self.banked[node] = proxystats.add(self.banked.get(node), s)
        self.banked_sli = add_sli(self.banked_sli, sli_delta(
            sli_buckets({node: before}), sli_buckets({node: now})))
        self.kp_before[node] = ""  # the restarted process counts from nothing

    def sli(self, kube_proxy_after: dict[str, str]) -> dict[str, SliBuckets]:
        """The network-programming SLI's per-bucket counts of the whole mode, per node."""
        return add_sli(self.banked_sli, sli_delta(sli_buckets(self.kp_before),
                                                  sli_buckets(kube_proxy_after)))

    def block(self, kube_proxy_after: dict[str, str]) -> ModeBlock:
        """The mode block's keys sli, proxy_stats, connect_ms, apiserver_rss_bytes and
        etcd_rss_bytes (the last two only when measured)."""
        stats = proxystats.per_node(self.kp_before, kube_proxy_after)
        out = ModeBlock(
            sli=self.sli(kube_proxy_after),
            proxy_stats={n: proxystats.add(self.banked.get(n), s) for n, s in stats.items()},
            connect_ms=proxystats.connect_delta(self.connect_before,
                                                self.agents.connect_histograms()))
        rss = self._component_rss()
        api = self._apiserver_rss() or rss.get("kube-apiserver")
        if api:
            out["apiserver_rss_bytes"] = api
        if rss.get("etcd"):
            out["etcd_rss_bytes"] = rss["etcd"]
        if rss.get("istiod"):
            out["istiod_rss_bytes"] = rss["istiod"]
        if self.mesh_before is not None and (after := self._mesh_metrics()) is not None:
            out["mesh_sli"] = sli_delta(
                sli_buckets({"istiod": self.mesh_before}, prom.MESH_CONVERGENCE),
                sli_buckets({"istiod": after}, prom.MESH_CONVERGENCE))
        errors = self.agents.mesh_errors()
        if errors:
            out["mesh_client_errors"] = errors
        return out

    def _mesh_metrics(self) -> str | None:
        """The mesh control plane's /metrics text, where the provider reaches it."""
        get = getattr(self.provider, "mesh_metrics", None)
        return get() if get is not None else None

    def _apiserver_rss(self) -> int | None:
        try:
            return proxystats.rss_from_metrics(self.provider.kube().get_text("/metrics"))
        except (ClusterError, OSError):
            return None  # no permission on /metrics, or the API server is gone: absent

    def _component_rss(self) -> dict[str, int]:
        get = getattr(self.provider, "component_rss", None)
        return dict(get()) if get is not None else {}


def lines(block: ModeBlock, elapsed_s: float) -> list[str]:
    """The mode's end in the CLI: one line per node, then the control plane's RSS."""
    stats: dict[str, Any] = dict(block.get("proxy_stats") or {})
    connect: dict[str, Any] = dict(block.get("connect_ms") or {})
    out = [proxystats.summary_line(node, stats.get(node), connect.get(node), elapsed_s)
           for node in sorted({*stats, *connect})]
    api, etcd = block.get("apiserver_rss_bytes"), block.get("etcd_rss_bytes")
    out.append("  control plane RSS: API server "
               + (f"{api / 2**20:.0f} MB" if api else "absent")
               + ", etcd " + (f"{etcd / 2**20:.0f} MB" if etcd else "absent (not visible to "
                                                                    "this provider)"))
    return out


def sli_buckets(metrics: dict[str, str], name: str = prom.NETWORK_PROGRAMMING
                ) -> dict[str, SliBuckets]:
    """kubeproxy_network_programming_duration_seconds (or `name`'s) buckets per node
    (cumulative); an empty text (no base: a node whose kube-proxy just restarted) gives no
    buckets."""
    out: dict[str, SliBuckets] = {}
    for node, text in metrics.items():
        try:
            h = prom.histogram(prom.parse(text), name)
        except prom.MetricsParseError:
            h = prom.histogram([], name)
        out[node] = {"buckets_s": [prom.bound_label(b) for b in h.upper_bounds_s],
                     "counts": h.counts}
    return out

