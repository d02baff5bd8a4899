"""istiod on the local cluster: its namespace and CRDs, the process, its readiness.

istiod runs as a daemon of the control-plane namespace, like the API server, with the
cluster's admin kubeconfig. It serves plaintext xDS on the fabric address (the node
agents' gRPC clients dial it there, with no istio-agent and no certificates) and its debug
and readiness endpoints on the namespace's loopback. Its log level names the debug scopes
whose lines date the mesh hops (bench.mesh.istio.logparse). A start that fails stops the
process and removes what it installed, and says where the log is.

Once ready, istiod is discoverable as in a real install: a selector-less Service
istio-system/istiod (port 15010, grpc-xds) with an EndpointSlice naming the fabric
address, so the cluster's kube-proxy routes its ClusterIP there and `run --kubeconfig
--mesh istio` finds it (bench.mesh.istio.existing) on this cluster as on any other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench.cluster.local import nshttp, procs
from bench.cluster.local.spec import ClusterSpec
from bench.errors import ClusterError
from bench.kube import ApiStatusError, Kube
from bench.mesh import registry as meshes
from bench.poll import WaitTimeout, wait_until

NAMESPACE = "istio-system"
XDS_PORT = meshes.get("istio").xds_port
HTTP_PORT = 8080          # /ready and /debug/*, on the control-plane namespace's loopback
MONITORING_PORT = meshes.get("istio").monitoring_port   # /metrics (pilot_*)
#: ads:debug names each EDS push per client; kube:debug each EndpointSlice event it handles
LOG_LEVELS = "default:info,ads:debug,kube:debug"
READY_TIMEOUT_S = 90.0
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
SERVICE = "istiod"
XDS_PORT_NAME = "grpc-xds"

Start = Callable[[str, list[str], str, dict[str, str]], int]  # key, argv, netns, env -> pid


def xds_address(spec: ClusterSpec) -> str:
    return f"{spec.cp_ip}:{XDS_PORT}"


def log_path(spec: ClusterSpec) -> Path:
    return spec.logs / "istiod.log"


def argv(spec: ClusterSpec, binary: Path) -> list[str]:
    return [str(binary), "discovery",
            f"--kubeconfig={spec.state_dir / 'admin-inside.kubeconfig'}",
            f"--grpcAddr={xds_address(spec)}", f"--httpAddr=127.0.0.1:{HTTP_PORT}",
            f"--monitoringAddr=127.0.0.1:{MONITORING_PORT}", "--secureGRPCAddr=",
            "--domain=cluster.local", f"--log_output_level={LOG_LEVELS}",
            *spec.component_args.get("istiod", [])]


def env(spec: ClusterSpec) -> dict[str, str]:
    """POD_NAMESPACE tells istiod where it lives; the user's --component-env istiod:K=V last."""
    return {"POD_NAMESPACE": NAMESPACE, **spec.component_env.get("istiod", {})}


def crds(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def install(api: Kube, crd_file: Path) -> None:
    """The namespace and Istio's CRDs (created; an existing one is left as it is)."""
    objects: list[tuple[str, dict[str, Any]]] = [("/api/v1/namespaces", {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "hopbench"}}})]
    objects += [(CRD_PATH, d) for d in crds(crd_file)]
    for path, obj in objects:
        try:
            api.create(path, obj)
        except ApiStatusError as exc:
            if exc.status != 409:
                raise


def uninstall(api: Kube, crd_file: Path) -> None:
    """Remove what `install` created (best effort: the cluster may be going away)."""
    for d in crds(crd_file):
        api.delete(f"{CRD_PATH}/{d['metadata']['name']}")
    api.delete(f"/api/v1/namespaces/{NAMESPACE}")


def service_objects(spec: ClusterSpec) -> list[tuple[str, dict[str, Any]]]:
    """(collection path, object): the Service istiod has in a real install, without a
    selector (istiod is no pod here), and its EndpointSlice with the fabric address."""
    labels = {"app": "istiod", "istio": "pilot", "app.kubernetes.io/part-of": "hopbench"}
    port = {"name": XDS_PORT_NAME, "port": XDS_PORT, "protocol": "TCP",
            "appProtocol": "grpc"}
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": labels},
           "spec": {"type": "ClusterIP", "ports": [{**port, "targetPort": XDS_PORT}]}}
    eps = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": f"{SERVICE}-hopbench", "namespace": NAMESPACE,
                        "labels": {"kubernetes.io/service-name": SERVICE,
                                   "endpointslice.kubernetes.io/managed-by": "hopbench",
                                   "app.kubernetes.io/part-of": "hopbench"}},
           "addressType": "IPv4", "ports": [port],
           "endpoints": [{"addresses": [spec.cp_ip], "conditions": {"ready": True}}]}
    return [(f"/api/v1/namespaces/{NAMESPACE}/services", svc),
            (f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices", eps)]


def publish(api: Kube, spec: ClusterSpec) -> None:
    """Create istiod's Service and EndpointSlice (an existing one is left as it is)."""
    for path, obj in service_objects(spec):
        try:
            api.create(path, obj)
        except ApiStatusError as exc:
            if exc.status != 409:
                raise


def ready(spec: ClusterSpec) -> bool:
    try:
        status, _ = nshttp.get(spec.cp_ns, "127.0.0.1", HTTP_PORT, "/ready", timeout=2.0)
    except OSError:
        return False
    return status == 200


def start(spec: ClusterSpec, api: Kube, start_fn: Start, log_hint: Path | None = None) -> int:
    """Install, start istiod, wait for /ready; on failure undo all of it and raise one
    line naming the log (`log_hint`: where the log will be kept, if not at its place).
    The mesh tools are built already (bench.build.meshbuild, before the cluster came up)."""
    from bench.build.meshbuild import require_mesh

    tools = require_mesh()
    binary, crd_file = tools.path("pilot-discovery"), tools.crds
    install(api, crd_file)
    log = log_path(spec)
    pid = start_fn("istiod", argv(spec, binary), spec.cp_ns, env(spec))

    def up() -> bool:
        if not procs.alive(pid):
            raise ClusterError(f"istiod exited while starting; see {log_hint or log}")
        return ready(spec)

    try:
        wait_until(up, READY_TIMEOUT_S, 0.25, "istiod /ready", hint=str(log_hint or log))
    except (WaitTimeout, ClusterError) as exc:
        procs.stop([pid])
        uninstall(api, crd_file)
        msg = str(exc).splitlines()[0]
        raise ClusterError(f"istiod did not start: {msg}") from None
    try:
        publish(api, spec)
    except BaseException:
        procs.stop([pid])
        uninstall(api, crd_file)
        raise
    return pid
