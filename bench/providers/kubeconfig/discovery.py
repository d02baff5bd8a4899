"""What a kubeconfig run learns about the cluster it measures: the Ready Linux nodes, the
API server's version, kube-proxy's mode and configuration, and what the node agents see
on each node; and the provenance run.json keeps of it.

The kube-proxy mode and configuration come from the `kube-system/kube-proxy` ConfigMap
that kubeadm and kind write, when it exists and may be read. Otherwise (clusters whose
kube-proxy runs from flags, like the local cluster) the mode is what the agents see in
every node's rules (nftables table, IPVS services, else iptables), accepted only where
the agent also reaches kube-proxy's metrics (facts.mode_from_agents). Either way the
agents' view is recorded next to the ConfigMap's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bench import prom
from bench.errors import ClusterError, UserError
from bench.kube import Kube
from bench.providers.kubeconfig import facts, preflight
from bench.providers.kubeconfig.podstate import short
from bench.providers.podproxy import PodProxyTransport
from bench.ready import is_ready

Say = Callable[[str], None]
CONFIGMAP = "/api/v1/namespaces/kube-system/configmaps/kube-proxy"


@dataclass
class ClusterView:
    """The cluster as the run found it; filled in by the steps below, in order."""

    version: dict[str, Any] = field(default_factory=dict)   # GET /version
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> nodeInfo
    proxy: facts.ProxyConfig = field(default_factory=lambda: facts.from_configmap(None))
    mode: str = ""          # the kube-proxy mode ("" until known)
    mode_source: str = ""   # where the mode was read: the ConfigMap, or the agents
    observed: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> agent's view


def read_cluster(api: Kube) -> ClusterView:
    """Everything known before any agent runs; the mode too, when a ConfigMap states it."""
    view = ClusterView(version=api.get("/version") or {}, nodes=ready_linux_nodes(api))
    if preflight.allowed(api, preflight.OPTIONAL_CONFIGMAP):
        cm = api.get(CONFIGMAP)
        view.proxy = facts.from_configmap((cm or {}).get("data"))
    if view.proxy.mode:
        view.mode, view.mode_source = view.proxy.mode, view.proxy.source
    return view


def ready_linux_nodes(api: Kube) -> dict[str, dict[str, Any]]:
    """Ready Linux node -> its nodeInfo, sorted by name; a UserError when there is none."""
    items = (api.get("/api/v1/nodes") or {}).get("items", [])
    nodes = {}
    for n in items:
        linux = n["metadata"].get("labels", {}).get("kubernetes.io/os", "linux") == "linux"
        if is_ready(n) and linux:
            nodes[n["metadata"]["name"]] = n.get("status", {}).get("nodeInfo", {})
    if not nodes:
        raise UserError(f"the cluster of {api.kubeconfig} has no Ready Linux node")
    return dict(sorted(nodes.items()))


def observe(view: ClusterView, transports: Iterable[PodProxyTransport], say: Say) -> None:
    """Ask each agent what it sees, then settle the mode (warnings said, not raised)."""
    for t in transports:
        view.observed[t.node] = agent_view(t)
    view.mode, view.mode_source, warnings = facts.mode_from_agents(view.proxy, view.observed)
    for w in warnings:
        say("warning: " + w)


def agent_view(t: PodProxyTransport) -> dict[str, Any]:
    """One node as its agent sees it: the rules' mode, and kube-proxy's metrics."""
    info = t.request("GET", "/collect", timeout=10)
    seen: dict[str, Any] = {"rule_mode": info.get("rule_mode", ""),
                            "rule_method": info.get("rule_method", "")}
    try:
        metrics = str(t.request("GET", "/kube-proxy-metrics", timeout=10))
        version = prom.label(prom.parse(metrics), prom.BUILD_INFO, "git_version")
        seen["kube_proxy_metrics"] = "reachable"
        seen["kube_proxy_version"] = version or "unknown"
    except ClusterError as exc:
        seen["kube_proxy_metrics"] = f"unreachable: {short(str(exc))}"
    return seen


def provenance(view: ClusterView, api_server: str) -> dict[str, Any]:
    """run.json's account of the cluster: versions per node, the mode and its source."""
    infos = list(view.nodes.values())
    kernels = sorted({i.get("kernelVersion", "unknown") for i in infos})
    return {
        "provider": "kubeconfig", "api_server": api_server,
        "kubernetes_version": view.version.get("gitVersion", "unknown"),
        "node_count": len(view.nodes), "nodes": list(view.nodes),
        "node_info": {n: {"kubelet": i.get("kubeletVersion"),
                          "container_runtime": i.get("containerRuntimeVersion"),
                          "kernel": i.get("kernelVersion"), "os": i.get("osImage"),
                          "arch": i.get("architecture")} for n, i in view.nodes.items()},
        "kernel": ", ".join(kernels),
        "kube_proxy_mode": view.mode, "kube_proxy_mode_source": view.mode_source,
        "kube_proxy_config": view.proxy.config or None,
        "kube_proxy_observed": view.observed,
    }


def kube_proxy_config(view: ClusterView) -> dict[str, Any]:
    """What run.json keeps per mode: the ConfigMap's config and each node's view."""
    return {"mode": view.mode, "source": view.mode_source,
            "config": view.proxy.config or None, "nodes": view.observed}

