"""`run --kubeconfig --mesh istio` on the real local cluster, reached only through its
kubeconfig as any cluster would be: istiod is found as in a real install (the Service
istio-system/istiod, port 15010, that `cluster up --mesh istio` publishes), the agent
DaemonSet runs the mesh client its image carries against that ClusterIP, and every node
reports the client-side mesh events. A cluster without istiod is refused in one line
before anything is created; hopbench installs nothing of Istio into it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from bench.cluster.local import cluster, live, teardown
from bench.cluster.local.spec import ClusterSpec
from bench.results.schema import Ev
from bench.results.store import load_meta
from tests.integration.conftest import hopbench
from tests.integration.test_bad_input import _one_line
from tests.integration.test_kubeconfig_provider import leftovers

NAME, BARE = "hbkmesh", "hbknomesh"
TRIALS = "3"
WIDE = {**os.environ, "COLUMNS": "400"}  # one error line stays one line in a pipe
#: what the agents' mesh clients stamp on every node (no istiod log: no M1-M3)
CLIENT_EVENTS = {Ev.EDS_RECEIVED, Ev.LB_UPDATE, Ev.MESH_FIRST}


@pytest.fixture(scope="module")
def mesh_cluster(tools) -> Iterator[ClusterSpec]:  # type: ignore[no-untyped-def]
    spec = cluster.up(ClusterSpec(name=NAME, nodes=2, proxy_mode="iptables", mesh="istio"),
                      say=lambda m: None, tools=tools)
    try:
        yield spec
    finally:
        teardown.teardown(spec)


@pytest.fixture(scope="module")
def mesh_run(mesh_cluster: ClusterSpec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kmesh") / "run"
    res = hopbench("run", "--kubeconfig", str(mesh_cluster.kubeconfig), "--mesh", "istio",
                   "--trials", TRIALS, "--proxy-mode", "iptables", "--out", str(out),
                   env=WIDE, timeout=900)
    print(res.stderr[-4000:])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out


def test_istiod_is_published_as_in_a_real_install(mesh_cluster: ClusterSpec) -> None:
    with live.api_client(mesh_cluster, timeout=10) as api:
        svc = api.get("/api/v1/namespaces/istio-system/services/istiod")
        slices = api.list("/apis/discovery.k8s.io/v1/namespaces/istio-system/endpointslices",
                          labelSelector="kubernetes.io/service-name=istiod")
    assert svc is not None and svc["spec"]["clusterIP"] not in ("", "None")
    assert [p["port"] for p in svc["spec"]["ports"]] == [15010]
    assert [e["addresses"] for s in slices for e in s["endpoints"]] == [[mesh_cluster.cp_ip]]


def test_client_side_mesh_events_on_every_node(mesh_run: Path) -> None:
    ev = pd.read_parquet(mesh_run / "events.parquet")
    for node in ("n1", "n2"):
        got = set(ev[ev.node == node].event)
        assert CLIENT_EVENTS <= got, (node, sorted(got))
    meta = load_meta(mesh_run)
    assert meta["provider"] == "kubeconfig" and meta["status"] == "finished"
    assert meta["mesh"] == "istio" and meta["mesh_service"] == "istio-system/istiod"
    hops = pd.read_parquet(mesh_run / "hops.parquet")
    names = set(hops.hop)
    # the client's hops are derived; the control plane's are absent (its log is not read)
    assert {"eds_to_lb", "eds_to_mesh_traffic", "ready_to_mesh_traffic",
            "unready_to_lb_gone"} <= names, sorted(names)
    assert not names & {"slice_to_mesh", "mesh_debounce", "slice_to_push", "push_to_eds",
                        "push_to_sent"}, sorted(names)
    e2e = hops[(hops.hop == "ready_to_mesh_traffic") & hops.node.isin(["n1", "n2"])]
    assert len(e2e) and not e2e.censored.any(), e2e


def test_nothing_left_after_the_mesh_run(mesh_run: Path, mesh_cluster: ClusterSpec) -> None:
    assert leftovers(mesh_cluster) == {
        "namespaces": ["istio-system"]}  # cluster up's own istiod, untouched by the run


@pytest.fixture(scope="module")
def bare_cluster(tools) -> Iterator[ClusterSpec]:  # type: ignore[no-untyped-def]
    spec = cluster.up(ClusterSpec(name=BARE, nodes=1, proxy_mode="iptables"),
                      say=lambda m: None, tools=tools)
    try:
        yield spec
    finally:
        teardown.teardown(spec)


def test_no_istiod_is_refused_before_anything_exists(bare_cluster: ClusterSpec,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = hopbench("run", "--kubeconfig", str(bare_cluster.kubeconfig), "--mesh", "istio",
                   "--trials", "1", "--proxy-mode", "iptables", "--out", str(out), env=WIDE,
                   timeout=120)
    _one_line(res, "--mesh istio: no istiod found in this cluster", "--kubeconfig",
              "istio-system/istiod", "15010", "never installs Istio")
    assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1, res.stderr
    assert not out.exists()
    assert leftovers(bare_cluster) == {}
    with live.api_client(bare_cluster, timeout=10) as api:
        assert api.get("/api/v1/namespaces/istio-system") is None
        assert api.get("/api/v1/namespaces/hopbench-system") is None
