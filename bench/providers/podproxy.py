"""Reach a node agent through the API server's pod proxy.

On any cluster the harness may sit outside the node network (a laptop, a bastion), so it
never connects to a node IP: it asks the API server to forward
`/api/v1/namespaces/NS/pods/POD:PORT/proxy/PATH` to the agent pod (a hostNetwork pod, so
POD's IP is its node's IP). The same path works on the local cluster, where the API
server reaches the node namespaces through the fabric. Implements the Transport protocol
of bench.sources.agents.
"""

from __future__ import annotations

from typing import Any

from bench.errors import ClusterError
from bench.kube import Kube

TOKEN_HEADER = "X-Hopbench-Token"


def proxy_path(namespace: str, pod: str, port: int) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy"


class PodProxyTransport:
    """One node's agent; `request` returns parsed JSON, or text for text/plain answers."""

    def __init__(self, api: Kube, node: str, namespace: str, pod: str, port: int,
                 token: str) -> None:
        self.node = node
        self.pod = pod
        self._api = api
        self._base = proxy_path(namespace, pod, port)
        self._headers = {TOKEN_HEADER: token}

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                timeout: float = 5.0) -> Any:
        try:
            resp = self._api.request(method, self._base + path, json=body,
                                     headers=self._headers, timeout=timeout)
        except ClusterError as exc:
            raise ClusterError(f"agent on {self.node} (via the API server's pod proxy): "
                               f"{method} {path}: {exc}") from exc
        if resp.status_code != 200:
            raise ClusterError(f"agent on {self.node}: {method} {path} -> "
                               f"{resp.status_code} {resp.text[:200]!r}")
        if "application/json" in resp.headers.get("content-type", ""):
            return resp.json()
        return resp.text
