"""What the background population is, as pure data: names, fake addresses, manifests, limits.

The background is N selector-less Services, each with one EndpointSlice of M ready
endpoints that hopbench writes itself (as kube-proxy's own performance tests do), so no
pods are needed. Endpoint addresses come from FAKE_RANGE, which exists nowhere: the local
cluster's fabric drops it (docs/design.md §6), so nothing is ever sent to them.

`check_fits` refuses, before anything is created, a count that cannot fit: the service
CIDR, the fake range, or the memory the control plane and kube-proxy would need.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from bench.errors import UserError

FAKE_RANGE = "10.255.0.0/16"
_FAKE = ipaddress.IPv4Network(FAKE_RANGE)
FAKE_CAPACITY = _FAKE.num_addresses - 2  # no network or broadcast address
PORT = 80
PORT_NAME = "http"
MANAGED_BY = "app.kubernetes.io/managed-by"
ROLE = "hopbench.io/role"
RUN = "hopbench.io/run"
SERVICE_NAME = "kubernetes.io/service-name"
ROLE_VALUE = "background"

# Memory per background Service (M=2 endpoints) and per further endpoint, summed over
# kube-apiserver + etcd + kube-proxy on both nodes of the local cluster, measured (see
# check_fits); SAFETY covers what the measure missed (watch caches growing unevenly,
# etcd compaction lag, a kube-proxy full sync's peak, more nodes).
BYTES_PER_SERVICE = 164_000
BYTES_PER_EXTRA_ENDPOINT = 5_600
SAFETY = 2.0


def namespace(run_id: str) -> str:
    return f"hopbench-bg-{run_id[:6].lower()}"


def labels(run_id: str) -> dict[str, str]:
    return {MANAGED_BY: "hopbench", ROLE: ROLE_VALUE, RUN: run_id}


def selector(run_id: str | None = None) -> str:
    """The label selector of the background objects (of one run, or of any)."""
    sel = f"{MANAGED_BY}=hopbench,{ROLE}={ROLE_VALUE}"
    return f"{sel},{RUN}={run_id}" if run_id else sel


def service_name(i: int) -> str:
    return f"bg-{i:05d}"


def index_of(name: str) -> int | None:
    """The index of a background Service or slice name (`bg-00042` -> 42), else None."""
    if not name.startswith("bg-") or not name[3:].isdigit():
        return None
    return int(name[3:])


def address(i: int, j: int, endpoints: int) -> str:
    """Endpoint j of Service i: distinct for every (i, j) while services*endpoints fits
    FAKE_CAPACITY (check_fits ensures it), always inside FAKE_RANGE."""
    k = (i * endpoints + j) % FAKE_CAPACITY
    return str(_FAKE.network_address + 1 + k)


def service(i: int, run_id: str, ns: str) -> dict[str, Any]:
    """A selector-less ClusterIP Service; the API server allocates its ClusterIP."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": service_name(i), "namespace": ns, "labels": labels(run_id)},
            "spec": {"type": "ClusterIP",
                     "ports": [{"name": PORT_NAME, "port": PORT, "protocol": "TCP",
                                "targetPort": PORT}]}}


def endpoint_list(i: int, endpoints: int, not_ready: frozenset[int] = frozenset()
                  ) -> list[dict[str, Any]]:
    return [{"addresses": [address(i, j, endpoints)],
             "conditions": {"ready": j not in not_ready}} for j in range(endpoints)]


def slice_(i: int, endpoints: int, run_id: str, ns: str,
           not_ready: frozenset[int] = frozenset()) -> dict[str, Any]:
    """Service i's one EndpointSlice, named like it, with `endpoints` endpoints."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": service_name(i), "namespace": ns,
                         "labels": {**labels(run_id), SERVICE_NAME: service_name(i)}},
            "addressType": "IPv4",
            "endpoints": endpoint_list(i, endpoints, not_ready),
            "ports": [{"name": PORT_NAME, "port": PORT, "protocol": "TCP"}]}


def slice_endpoints(obj: dict[str, Any]) -> int:
    return len(obj.get("endpoints") or [])


def estimate_bytes(services: int, endpoints: int) -> int:
    """Memory the population adds to the API server, etcd and kube-proxy (all nodes), with
    the safety factor."""
    per = BYTES_PER_SERVICE + BYTES_PER_EXTRA_ENDPOINT * max(0, endpoints - 2)
    return int(services * per * SAFETY)


def check_fits(services: int, endpoints: int, service_cidr_free: int | None,
               mem_available_bytes: int | None) -> None:
    """Refuse, with one line saying why and the estimate, a population that cannot fit.

    `service_cidr_free`: ClusterIPs still free in the service CIDR (None: unknown, not
    checked); `mem_available_bytes`: MemAvailable of the machine that runs the control
    plane and kube-proxy (None: not checked; only the local cluster knows it).

    Measured on the local cluster (2 nodes, kube-proxy iptables, the 2-core machine
    under load from other clusters): RSS of kube-apiserver + etcd + both kube-proxies
    grew by 164 MB from creating 1000 Services x 2 endpoints (apiserver +110 MB, etcd
    +17 MB, kube-proxies +20 and +18 MB; after an earlier fill of the same size was
    created and removed, so the API server's heap had grown once already), and by 45 MB
    more when the 1000 slices were rewritten to 10 endpoints each (5.6 kB per endpoint).
    SAFETY doubles the estimate.
    """
    if services < 0:
        raise UserError(f"background Services must be 0 or more, not {services}")
    if endpoints < 1:
        raise UserError(f"endpoints per background Service must be 1 or more, not {endpoints}")
    if services == 0:
        return
    if services * endpoints > FAKE_CAPACITY:
        raise UserError(
            f"{services} background Services x {endpoints} endpoints = "
            f"{services * endpoints} endpoint addresses do not fit the fake range "
            f"{FAKE_RANGE} ({FAKE_CAPACITY} addresses)")
    if service_cidr_free is not None and services > service_cidr_free:
        raise UserError(
            f"{services} background Services do not fit the service CIDR: only "
            f"{service_cidr_free} ClusterIPs are free")
    if mem_available_bytes is not None:
        need = estimate_bytes(services, endpoints)
        if need > mem_available_bytes:
            raise UserError(
                f"{services} background Services x {endpoints} endpoints need about "
                f"{need / 2**20:.0f} MiB for the API server, etcd and kube-proxy "
                f"(estimate, x{SAFETY:g} safety), but only {mem_available_bytes / 2**20:.0f}"
                f" MiB are available")


def cidr_free(cidr: str, in_use: int) -> int:
    """ClusterIPs left in a service CIDR: its addresses but network and broadcast, minus
    those already allocated."""
    net = ipaddress.ip_network(cidr, strict=False)
    return max(0, net.num_addresses - 2 - in_use)


def mem_available(meminfo: str) -> int | None:
    """MemAvailable in bytes from /proc/meminfo's text, None if absent."""
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None
