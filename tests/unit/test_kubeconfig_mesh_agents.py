"""The pieces of `run --kubeconfig --mesh istio` on the agents' side: the DaemonSet runs
the mesh client the agent image carries (only when the run has a mesh), the image's tag
follows the client binary, and the local cluster publishes its istiod as a real install
has it (Service istio-system/istiod, port 15010, and its EndpointSlice)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import kube, workloads
from bench.build import agentimage
from bench.cluster.local.spec import ClusterSpec
from bench.errors import UserError
from bench.mesh.istio import local as istio_local
from bench.providers.kubeconfig import deploy

VALUES: dict[str, object] = {
    "NAMESPACE": "hopbench-system", "IMAGE": "localhost/hopbench/agent:t",
    "PULL_POLICY": "Never", "PORT": 10299, "TOKEN": "s3cret", "PROBE_INTERVAL_MS": 5.0,
    "METRICS_PORT": 10249, "MAX_LIFETIME_S": 21600}


def _agent(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    return dict(c)


def test_daemonset_runs_the_mesh_client_only_with_a_mesh() -> None:
    plain = [deploy.with_mesh(d, "") for d in workloads.render("agent/daemonset.yaml",
                                                                **VALUES)]
    assert "--mesh-client" not in _agent(plain)["args"]
    docs = [deploy.with_mesh(d, "10.96.4.7:15010")
            for d in workloads.render("agent/daemonset.yaml", **VALUES)]
    c = _agent(docs)
    assert c["args"][-6:] == ["--mesh-client", "/opt/hopbench/bin/meshclient",
                              "--mesh-xds", "10.96.4.7:15010", "--node-ip", "$(NODE_IP)"]
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert [d["kind"] for d in docs] == ["Secret", "DaemonSet"]


def test_the_image_carries_the_client_where_the_daemonset_looks() -> None:
    assert deploy.MESH_CLIENT == agentimage.MESH_CLIENT
    assert agentimage.MESH_CLIENT.startswith(agentimage.IN_IMAGE + "/")


def test_mesh_image_tag_follows_the_client_binary(tmp_path: Path) -> None:
    client = tmp_path / "meshclient"
    client.write_bytes(b"\x7fELF one")
    files = agentimage.agent_files(client)
    assert files[agentimage.MESH_CLIENT] == client
    assert agentimage.MESH_CLIENT not in agentimage.agent_files()
    plain, one = agentimage.image_tag(), agentimage.image_tag(mesh_client=client)
    client.write_bytes(b"\x7fELF two")
    two = agentimage.image_tag(mesh_client=client)
    assert len({plain, one, two}) == 3
    assert agentimage.archive_name("x", True) != agentimage.archive_name("x", False)


def test_default_mesh_ref_never_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.build import meshbuild

    monkeypatch.setattr(meshbuild, "mesh_toolset", lambda: None)
    monkeypatch.setattr(meshbuild, "build_mesh", _never)
    with pytest.raises(UserError, match="--mesh with --kubeconfig: .*--agent-image"):
        agentimage.default_ref(mesh=True)


def _never(*a: object, **kw: object) -> None:
    raise AssertionError("built")


def test_local_istiod_is_published_as_in_a_real_install(tmp_path: Path) -> None:
    spec = ClusterSpec(name="hbx", nodes=1, proxy_mode="iptables")
    (svc_path, svc), (eps_path, eps) = istio_local.service_objects(spec)
    assert svc_path == "/api/v1/namespaces/istio-system/services"
    assert "selector" not in svc["spec"]
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"][0]["appProtocol"] == "grpc"
    assert eps_path == "/apis/discovery.k8s.io/v1/namespaces/istio-system/endpointslices"
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == "istiod"
    assert eps["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "hopbench"
    assert eps["endpoints"] == [{"addresses": [spec.cp_ip], "conditions": {"ready": True}}]
    assert eps["ports"][0]["port"] == 15010 and eps["ports"][0]["name"] == "grpc-xds"
    assert svc["spec"]["ports"][0]["port"] == 15010 and svc["spec"]["ports"][0]["name"] == \
        "grpc-xds"


def test_publish_tolerates_an_existing_service() -> None:
    made: list[str] = []

    class Api:
        def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
            made.append(obj["kind"])
            raise kube.ApiStatusError("exists", 409)

    istio_local.publish(Api(), ClusterSpec(name="hbx", nodes=1,  # type: ignore[arg-type]
                                           proxy_mode="iptables"))
    assert made == ["Service", "EndpointSlice"]

