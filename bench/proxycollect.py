"""Fetch, at a mode's start and end, what bench.proxystats computes the mode's figures from.

kube-proxy's /metrics comes through the agents (the runner's SLI snapshots: the same texts),
the connect-time histograms from each agent's GET /connect, the API server's RSS from its
own /metrics through the run's Kubernetes client, and etcd's RSS from the provider's
optional `component_rss()` (the local provider knows the pids it started; on a kubeconfig
cluster etcd is out of reach and its RSS is absent from the block, not 0).
"""

from __future__ import annotations

from typing import Any

from bench import proxystats
from bench.errors import ClusterError
from bench.providers.base import Provider
from bench.results.modeblock import ModeBlock
from bench.sources.agents import AgentStore


class ModeStats:
    """Start snapshot on construction (pass the runner's kube-proxy metrics taken then),
    `block` at the end."""

    def __init__(self, provider: Provider, agents: AgentStore,
                 kube_proxy_before: dict[str, str]) -> None:
        self.provider, self.agents = provider, agents
        self.kp_before = kube_proxy_before
        self.connect_before = agents.connect_histograms()

    def block(self, kube_proxy_after: dict[str, str]) -> ModeBlock:
        """The mode block's keys proxy_stats, connect_ms, apiserver_rss_bytes and
        etcd_rss_bytes (the last two only when measured)."""
        out = ModeBlock(
            proxy_stats=proxystats.per_node(self.kp_before, kube_proxy_after),
            connect_ms=proxystats.connect_delta(self.connect_before,
                                                self.agents.connect_histograms()))
        rss = self._component_rss()
        api = self._apiserver_rss() or rss.get("kube-apiserver")
        if api:
            out["apiserver_rss_bytes"] = api
        if rss.get("etcd"):
            out["etcd_rss_bytes"] = rss["etcd"]
        return out

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
