"""istiod in a cluster hopbench did not create: found, never installed.

`--mesh istio` with `--kubeconfig` measures the Istio the cluster already runs. Its
discovery server is the Service a real install has: `istiod` in `istio-system` (or any
Service labelled `app=istiod`, as revisioned installs name it `istiod-<rev>`) with the
plaintext xDS port 15010 (`grpc-xds`). The node agents run in the nodes' network
namespaces, so its ClusterIP is reachable through kube-proxy. Without such a Service the
run is refused in preflight, before anything exists: hopbench never installs Istio into a
cluster it did not create.
"""

from __future__ import annotations

from typing import Any

from bench.errors import UserError
from bench.kube import ApiStatusError, Kube

NAMESPACE = "istio-system"
SERVICE = "istiod"
LABEL = "app=istiod"
XDS_PORT = 15010
XDS_PORT_NAME = "grpc-xds"


def xds_port(svc: dict[str, Any]) -> int | None:
    """The Service's plaintext xDS port (15010, or the port named grpc-xds), or None."""
    ports = svc.get("spec", {}).get("ports") or []
    for p in ports:
        if p.get("port") == XDS_PORT:
            return XDS_PORT
    for p in ports:
        if p.get("name") == XDS_PORT_NAME and isinstance(p.get("port"), int):
            return int(p["port"])
    return None


def xds_address(svc: dict[str, Any]) -> str | None:
    """`ClusterIP:port` of a Service serving xDS; None when it has no ClusterIP (headless,
    ExternalName) or no xDS port."""
    ip = svc.get("spec", {}).get("clusterIP") or ""
    port = xds_port(svc)
    if not ip or ip == "None" or port is None:
        return None
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def candidates(api: Kube) -> list[dict[str, Any]]:
    """istio-system/istiod first, then every Service labelled app=istiod (a listing the
    user may not be allowed is skipped: the named Service is the one that counts)."""
    found: list[dict[str, Any]] = []
    named = api.get(f"/api/v1/namespaces/{NAMESPACE}/services/{SERVICE}")
    if named is not None:
        found.append(named)
    try:
        found += api.list("/api/v1/services", labelSelector=LABEL)
    except ApiStatusError as exc:
        if exc.status != 403:
            raise
    return found


def describe(svc: dict[str, Any]) -> str:
    meta = svc.get("metadata", {})
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def find_istiod(api: Kube) -> tuple[str, str]:
    """(xDS address, Service namespace/name) of the cluster's istiod, or one UserError."""
    for svc in candidates(api):
        if addr := xds_address(svc):
            return addr, describe(svc)
    raise UserError(f"--mesh istio: no istiod found in this cluster (--kubeconfig "
                    f"{api.kubeconfig}; looked for Service {NAMESPACE}/{SERVICE} or a "
                    f"Service labelled {LABEL}, with a ClusterIP and port {XDS_PORT}); "
                    "hopbench never installs Istio into a cluster it did not create")
