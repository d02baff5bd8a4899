"""workloads and kind on bench.kube: each manifest kind goes to its collection, an existing
namespace is fine, a strategic merge patch restarts kind's kube-proxy. The API server is an
httpx MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bench import workloads
from bench.cluster import kind
from bench.errors import ClusterError, UserError
from bench.kube import Kube
from tests.unit.test_kubeconfig_preflight import write_kubeconfig


def _kube(tmp_path: Path, handler: Callable[[httpx.Request], httpx.Response]) -> Kube:
    return Kube(write_kubeconfig(tmp_path / "kc", "https://api.test"),
                transport=lambda verify: httpx.MockTransport(handler))


def test_apply_posts_each_kind_to_its_collection(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append((req.method, req.url.path))
        if req.url.path == "/api/v1/namespaces" and len(seen) == 1:
            return httpx.Response(409, json={"message": "already exists"})
        return httpx.Response(201, json=json.loads(req.content))

    docs = workloads.render("target.yaml", NAME="web", NAMESPACE="ns1", REPLICAS=2, IMAGE="x")
    with _kube(tmp_path, handler) as api:
        workloads.ensure_namespace(api, "ns1")  # 409: it exists, fine
        workloads.apply(api, docs)
        with pytest.raises(UserError, match="workload kind 'CronJob'"):
            workloads.apply(api, [{"kind": "CronJob", "metadata": {"name": "c"}}])
    assert seen == [("POST", "/api/v1/namespaces"),
                    ("POST", "/apis/apps/v1/namespaces/ns1/deployments"),
                    ("POST", "/api/v1/namespaces/ns1/services")]


def test_ensure_namespace_raises_other_errors(tmp_path: Path) -> None:
    with _kube(tmp_path, lambda r: httpx.Response(500, json={"message": "etcd down"})) as api:
        with pytest.raises(ClusterError, match="etcd down"):
            workloads.ensure_namespace(api, "ns1")


def test_kind_mode_switch_patches_and_waits(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    ds = {"metadata": {"generation": 2}, "status": {
        "observedGeneration": 2, "desiredNumberScheduled": 2, "updatedNumberScheduled": 2,
        "numberAvailable": 2}}

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        if req.url.path.endswith("/configmaps/kube-proxy") and req.method == "GET":
            return httpx.Response(200, json={"data": {"config.conf": "mode: iptables\n"}})
        if req.url.path.endswith("/daemonsets/kube-proxy/status"):
            return httpx.Response(200, json=ds)
        return httpx.Response(200, json={})

    with _kube(tmp_path, handler) as api:
        assert kind._rolled_out(api)
        ds["status"]["numberUnavailable"] = 1
        assert not kind._rolled_out(api)
    with _kube(tmp_path, lambda r: httpx.Response(404)) as api:
        with pytest.raises(ClusterError, match="restarting DaemonSet .*: PATCH .* HTTP 404"):
            kind._call("restarting DaemonSet kube-system/kube-proxy", api.patch, kind.DAEMONSET,
                       {}, "application/strategic-merge-patch+json")
    assert seen[0].url.path == "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy/status"
