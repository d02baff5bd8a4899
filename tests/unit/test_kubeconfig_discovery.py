"""What the kubeconfig provider reads off a cluster before any agent runs (nodes, version,
the kube-proxy ConfigMap when it may be read), what run.json keeps of it, and which
namespaces cleanup takes away. The API server is an httpx MockTransport with
hand-written answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.errors import UserError
from bench.kube import Kube
from bench.providers.kubeconfig import cleanup, discovery, facts
from bench.providers.kubeconfig.deploy import AgentOptions, Footprint
from bench.providers.kubeconfig.provider import KubeconfigProvider
from bench.sources.agents import ClockOffset
from tests.unit.test_kubeconfig_preflight import write_kubeconfig

CONF = "mode: nftables\nmetricsBindAddress: 127.0.0.1:10555\n"


def _node(name: str, ready: bool = True, os: str = "linux") -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/os": os}},
            "status": {"conditions": [{"type": "Ready", "status": str(ready)}],
                       "nodeInfo": {"kernelVersion": f"6.1-{name}", "kubeletVersion": "v1.35.4"}}}


def _api(tmp_path: Path, answers: dict[str, Any], configmap_allowed: bool = True,
         seen: list[httpx.Request] | None = None) -> Kube:
    def handler(req: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(req)
        if req.url.path.endswith("/selfsubjectaccessreviews"):
            return httpx.Response(201, json={"status": {"allowed": configmap_allowed}})
        if req.method == "GET" and req.url.path in answers:
            return httpx.Response(200, json=answers[req.url.path])
        return httpx.Response(404, json={})

    return Kube(write_kubeconfig(tmp_path / "kc", "https://api.test"),
                transport=lambda verify: httpx.MockTransport(handler))


NODES = {"items": [_node("w2"), _node("w1"), _node("down", ready=False),
                   _node("win", os="windows")]}
ANSWERS = {"/version": {"gitVersion": "v1.35.4"}, "/api/v1/nodes": NODES,
           discovery.CONFIGMAP: {"data": {"config.conf": CONF}}}


def test_ready_linux_nodes_only_sorted(tmp_path: Path) -> None:
    assert list(discovery.ready_linux_nodes(_api(tmp_path, ANSWERS))) == ["w1", "w2"]
    with pytest.raises(UserError, match="has no Ready Linux node"):
        discovery.ready_linux_nodes(_api(tmp_path, {"/api/v1/nodes": {"items": []}}))


def test_read_cluster_with_and_without_configmap(tmp_path: Path) -> None:
    view = discovery.read_cluster(_api(tmp_path, ANSWERS))
    assert (view.mode, view.mode_source) == ("nftables", facts.CONFIGMAP_SOURCE)
    assert view.proxy.metrics_port == 10555 and view.version["gitVersion"] == "v1.35.4"
    seen: list[httpx.Request] = []
    view = discovery.read_cluster(_api(tmp_path, ANSWERS, configmap_allowed=False, seen=seen))
    assert (view.mode, view.proxy.metrics_port) == ("", facts.DEFAULT_METRICS_PORT)
    assert discovery.CONFIGMAP not in {r.url.path for r in seen}  # not read when not allowed


def test_provenance_keys_and_values(tmp_path: Path) -> None:
    api = _api(tmp_path, ANSWERS)
    p = KubeconfigProvider(api, AgentOptions(image="localhost/a:1"), max_skew_ms=2.0,
                           say=lambda m: None)
    p._view = discovery.read_cluster(api)
    p._offsets = {"w1": ClockOffset(5, 100, 20), "w2": ClockOffset(0, 0, 0, shared=True)}
    got = p.provenance()
    assert list(got) == [
        "provider", "api_server", "kubernetes_version", "node_count", "nodes", "node_info",
        "kernel", "kube_proxy_mode", "kube_proxy_mode_source", "kube_proxy_config",
        "kube_proxy_observed", "agent_image", "agent_namespace", "agent_transport", "clock",
        "clock_check", "max_skew_ms", "harness_version"]
    assert got["nodes"] == ["w1", "w2"] and got["kernel"] == "6.1-w1, 6.1-w2"
    assert got["kube_proxy_mode"] == "nftables" and got["max_skew_ms"] == 2.0
    assert got["clock"].startswith("one clock per node")
    assert p.kube_proxy_config()["config"]["metricsBindAddress"] == "127.0.0.1:10555"
    assert p.proxy_mode() == "nftables" and p.nodes() == ["w1", "w2"]


def test_cleanup_takes_only_run_namespaces_that_appeared(tmp_path: Path) -> None:
    listed = {"items": [{"metadata": {"name": n}} for n in (
        "hopbench-abc123-ipt", "hopbench-def456-nft", "hopbench-system", "hopbench-mine")]}
    api = _api(tmp_path, {"/api/v1/namespaces": listed})
    assert cleanup.run_namespaces(api, {"hopbench-abc123-ipt"}) == ["hopbench-def456-nft"]


def test_cleanup_keeps_going_after_a_failed_step(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: object) -> None:
        raise RuntimeError("agents: connection reset\nmore")

    done: list[str] = []
    monkeypatch.setattr(cleanup, "remove_agents", boom)
    monkeypatch.setattr(cleanup, "delete_namespaces", lambda *a: done.append("ns"))
    said: list[str] = []
    cleanup.remove_all(_api(tmp_path, {}), AgentOptions(image="x"), Footprint(), said.append)
    assert said == ["warning: cleanup step failed: agents: connection reset"] and done == ["ns"]

