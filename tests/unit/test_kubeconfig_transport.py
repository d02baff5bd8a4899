"""PodProxyTransport speaks the agent protocol through the API server's pod proxy."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bench.errors import ClusterError
from bench.kube import Kube
from bench.providers.podproxy import PodProxyTransport, proxy_path
from tests.unit.test_kubeconfig_preflight import write_kubeconfig


def _fake(handler: Callable[[httpx.Request], httpx.Response], tmp_path: Path) -> Kube:
    cfg = write_kubeconfig(tmp_path / "kc", "https://api.example:6443")
    return Kube(cfg, transport=lambda verify: httpx.MockTransport(handler))


def _client(seen: list[httpx.Request], tmp_path: Path) -> Kube:
    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        if req.url.path.endswith("/proxy/clock"):
            return httpx.Response(200, json={"t_ns": 42})
        if req.url.path.endswith("/proxy/kube-proxy-metrics"):
            return httpx.Response(200, text="kubeproxy_x 1\n",
                                  headers={"content-type": "text/plain"})
        if req.url.path.endswith("/proxy/arm"):
            return httpx.Response(200, json={"armed": json.loads(req.content)["targets"]})
        return httpx.Response(503, text="error trying to reach service: connection refused")

    return _fake(handler, tmp_path)


def test_path() -> None:
    assert proxy_path("ns", "agent-x", 10299) == "/api/v1/namespaces/ns/pods/agent-x:10299/proxy"


def test_json_text_and_body(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    t = PodProxyTransport(_client(seen, tmp_path), "n1", "hopbench-system", "agent-abc", 10299,
                          "tok")
    assert t.node == "n1"
    assert t.request("GET", "/clock") == {"t_ns": 42}
    assert t.request("GET", "/kube-proxy-metrics") == "kubeproxy_x 1\n"
    assert t.request("POST", "/arm", {"targets": ["svc0"]}) == {"armed": ["svc0"]}
    assert seen[0].url.path == "/api/v1/namespaces/hopbench-system/pods/agent-abc:10299/proxy/clock"
    assert all(r.headers["X-Hopbench-Token"] == "tok" for r in seen)
    assert seen[2].method == "POST"


def test_errors_name_the_node(tmp_path: Path) -> None:
    t = PodProxyTransport(_client([], tmp_path), "n2", "ns", "p", 1, "tok")
    with pytest.raises(ClusterError, match=r"agent on n2: GET /collect -> 503"):
        t.request("GET", "/collect")

    def boom(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=req)

    t = PodProxyTransport(_fake(boom, tmp_path), "n3", "ns", "p", 1, "tok")
    with pytest.raises(ClusterError, match="agent on n3 .*GET /clock: .*refused"):
        t.request("GET", "/clock")
