"""`run --kubeconfig --mesh istio`: the cluster's own istiod is found (never installed),
the agents run the mesh client the image carries against its ClusterIP, and a cluster
without istiod is refused in preflight, before anything is created.

The API server is an httpx MockTransport (nothing leaves the machine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bench import kube
from bench.cluster.local.spec import ClusterSpec
from bench.errors import UserError
from bench.mesh.istio import existing
from bench.mesh.istio import local as istio_local
from bench.providers.kubeconfig import deploy, preflight
from bench.providers.kubeconfig.provider import KubeconfigProvider

SERVER = "https://api.test:6443"


def _kubeconfig(path: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": SERVER,
                                               "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "abc"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return path


def _svc(name: str, ns: str, ip: str, *ports: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": list(ports)}}


XDS = {"name": "grpc-xds", "port": 15010}
REAL = _svc("istiod", "istio-system", "10.96.4.7", {"name": "https-dns", "port": 15012},
            XDS, {"name": "http-monitoring", "port": 15014})


class FakeApi:
    """What the discovery asks of the API server: one GET, one labelled list."""

    def __init__(self, named: dict[str, Any] | None, labelled: list[dict[str, Any]],
                 list_status: int = 200) -> None:
        self.named, self.labelled, self.list_status = named, labelled, list_status
        self.kubeconfig = Path("/k/config")
        self.calls: list[str] = []

    def get(self, path: str, **params: Any) -> dict[str, Any] | None:
        self.calls.append(path)
        return self.named

    def list(self, path: str, **params: Any) -> list[dict[str, Any]]:
        self.calls.append(f"{path}?{params}")
        if self.list_status != 200:
            raise kube.ApiStatusError("forbidden", self.list_status)
        return self.labelled


def _find(api: FakeApi) -> tuple[str, str]:
    return existing.find_istiod(api)  # type: ignore[arg-type]


def test_the_named_service_of_a_real_install() -> None:
    api = FakeApi(REAL, [REAL])
    assert _find(api) == ("10.96.4.7:15010", "istio-system/istiod")
    assert api.calls[0] == "/api/v1/namespaces/istio-system/services/istiod"


def test_a_revisioned_install_by_its_label() -> None:
    rev = _svc("istiod-1-26", "istio-system", "10.96.9.9", {"name": "grpc-xds", "port": 15010})
    assert _find(FakeApi(None, [rev])) == ("10.96.9.9:15010", "istio-system/istiod-1-26")


def test_ipv6_and_a_renumbered_grpc_xds_port() -> None:
    v6 = _svc("istiod", "istio-system", "fd00::a", {"name": "grpc-xds", "port": 16010})
    assert _find(FakeApi(v6, [])) == ("[fd00::a]:16010", "istio-system/istiod")


@pytest.mark.parametrize("named,labelled,list_status", [
    (None, [], 200),                                                   # no Istio at all
    (None, [], 403),                                                   # may not list
    (_svc("istiod", "istio-system", "None", XDS), [], 200),            # headless
    (_svc("istiod", "istio-system", "10.96.0.5", {"name": "https-dns", "port": 15012}),
     [], 200),                                                          # no plaintext xDS
], ids=["absent", "list-forbidden", "headless", "no-15010"])
def test_no_istiod_is_one_line(named: dict[str, Any] | None, labelled: list[dict[str, Any]],
                               list_status: int) -> None:
    with pytest.raises(UserError) as err:
        _find(FakeApi(named, labelled, list_status))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("--mesh istio: no istiod found in this cluster")
    assert "--kubeconfig /k/config" in msg and "istio-system/istiod" in msg and "15010" in msg
    assert msg.endswith("hopbench never installs Istio into a cluster it did not create")


def test_other_list_errors_are_not_hidden() -> None:
    with pytest.raises(kube.ApiStatusError):
        _find(FakeApi(None, [], 500))


def _fake_cluster(monkeypatch: pytest.MonkeyPatch, istiod: dict[str, Any] | None
                  ) -> list[tuple[str, str]]:
    """An API server that allows everything and has `istiod` (or none); the requests."""
    seen: list[tuple[str, str]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append((req.method, req.url.path))
        path = req.url.path
        if path == "/version":
            return httpx.Response(200, json={"gitVersion": "v1.35.0"})
        if path.endswith("/selfsubjectaccessreviews"):
            return httpx.Response(201, json={"status": {"allowed": True}})
        if path == "/api/v1/namespaces/istio-system/services/istiod":
            return (httpx.Response(200, json=istiod) if istiod
                    else httpx.Response(404, json={"message": "not found"}))
        if path == "/api/v1/services":
            return httpx.Response(200, json={"items": [istiod] if istiod else []})
        return httpx.Response(500, json={"message": f"unexpected {req.method} {path}"})

    real = kube.Kube
    monkeypatch.setattr(preflight, "Kube", lambda kubeconfig, **kw: real(
        kubeconfig, transport=lambda verify: httpx.MockTransport(handler)))
    return seen


def test_open_without_istiod_creates_nothing(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _fake_cluster(monkeypatch, None)
    built: list[str] = []

    def image() -> str:
        built.append("built")
        return "img"

    with pytest.raises(UserError, match="no istiod found in this cluster"):
        KubeconfigProvider.open(_kubeconfig(tmp_path / "kc"), agent_image=image,
                                mesh="istio", say=lambda m: None)
    assert not built  # the mesh image is made only for a cluster that runs istiod
    assert [p for m, p in seen if m != "GET" and "selfsubjectaccessreviews" not in p] == []


def test_open_checks_the_mesh_permission(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _fake_cluster(monkeypatch, None)
    asked: list[dict[str, Any]] = []
    real = kube.Kube.create

    def create(self: kube.Kube, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        asked.append(obj["spec"]["resourceAttributes"])
        return real(self, path, obj)

    monkeypatch.setattr(kube.Kube, "create", create)
    with pytest.raises(UserError):
        KubeconfigProvider.open(_kubeconfig(tmp_path / "kc"), agent_image="img",
                                mesh="istio", say=lambda m: None)
    assert {"verb": "get", "group": "", "resource": "services", "subresource": "",
            "namespace": "istio-system"} in asked
    assert seen


def test_preflight_refusals_of_a_mesh_run_name_both_options(tmp_path: Path) -> None:
    (tmp_path / "kc").write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    with pytest.raises(UserError) as err:
        KubeconfigProvider.open(tmp_path / "kc", agent_image="img", mesh="istio",
                                say=lambda m: None)
    msg = str(err.value)
    assert "names no cluster" in msg and "--mesh istio" in msg and "--kubeconfig" in msg
    with pytest.raises(UserError) as err:
        KubeconfigProvider.open(tmp_path / "kc", agent_image="img", say=lambda m: None)
    assert "--mesh" not in str(err.value)


def test_provider_mesh_has_no_local_client_nor_log() -> None:
    p = KubeconfigProvider(FakeApi(None, []), deploy.AgentOptions(image="i"),  # type: ignore[arg-type]
                           say=lambda m: None)
    assert p.mesh() is None
    p._mesh = {"name": "istio", "xds": "10.96.4.7:15010", "found": "istio-system/istiod"}
    assert p.mesh() == {"name": "istio", "xds": "10.96.4.7:15010", "client": "", "log": ""}


def test_the_local_clusters_published_istiod_is_found() -> None:
    (_, svc), _ = istio_local.service_objects(ClusterSpec(name="hbx", nodes=1,
                                                          proxy_mode="iptables"))
    svc = {**svc, "spec": {**svc["spec"], "clusterIP": "10.96.0.9"}}  # as the API fills in
    assert _find(FakeApi(svc, [svc])) == ("10.96.0.9:15010", "istio-system/istiod")
