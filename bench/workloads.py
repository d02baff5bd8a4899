"""Render and apply the manifests in workloads/ (target Service, agents, load).

Manifests are plain YAML with ${VAR} placeholders so they stay readable and usable with
kubectl; this module fills them in and creates them through bench.kube.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import yaml

from bench.errors import UserError
from bench.imagenames import AGNHOST
from bench.kube import ApiStatusError, Kube
from bench.paths import shipped
from bench.poll import WaitTimeout, wait_until
from bench.ready import is_ready

#: kind -> (API group path, plural, namespaced) for the kinds in workloads/
KINDS = {
    "Namespace": ("/api/v1", "namespaces", False),
    "Pod": ("/api/v1", "pods", True),
    "Service": ("/api/v1", "services", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Secret": ("/api/v1", "secrets", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "DaemonSet": ("/apis/apps/v1", "daemonsets", True),
}
PART_OF = "app.kubernetes.io/part-of"

REPO_WORKLOADS = shipped("workloads")


def manifest_path(name: str) -> Path:
    path = REPO_WORKLOADS / name
    if not path.exists():
        raise UserError(f"workload manifest {name!r} not found in {REPO_WORKLOADS}")
    return path


def render(name: str, **values: object) -> list[dict[str, Any]]:
    text = string.Template(manifest_path(name).read_text()).substitute(
        {k: str(v) for k, v in values.items()})
    return [d for d in yaml.safe_load_all(text) if d]


def collection_path(doc: dict[str, Any]) -> str:
    """Where `doc` is created: /api/v1/namespaces/NS/pods, /apis/apps/v1/..., ..."""
    try:
        group, plural, namespaced = KINDS[doc["kind"]]
    except KeyError:
        raise UserError(f"workload kind {doc.get('kind')!r} is not one hopbench creates "
                        f"({', '.join(KINDS)})") from None
    if not namespaced:
        return f"{group}/{plural}"
    return f"{group}/namespaces/{doc['metadata'].get('namespace', 'default')}/{plural}"


def ensure_namespace(api: Kube, name: str) -> None:
    try:
        api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                          "metadata": {"name": name,
                                                       "labels": {PART_OF: "hopbench"}}})
    except ApiStatusError as exc:
        if exc.status != 409:
            raise


def apply(api: Kube, docs: list[dict[str, Any]]) -> None:
    """Create each document (they are new: a run's own namespace holds them)."""
    for doc in docs:
        api.create(collection_path(doc), doc)


#: the trial pods' gRPC port on a mesh run: agnhost grpc-health-checking answers there
#: (its HTTP side moves off netexec's 8080); the Service names it `grpc` with
#: appProtocol grpc, or istiod sends no routes for it
GRPC_PORT = 5000


def add_grpc(docs: list[dict[str, Any]], image: str) -> None:
    """Give a trial pod (trial-pod.yaml) the gRPC server a mesh client calls; the pod is
    Ready only once it serves, so a first RPC is never refused by a server still starting."""
    pod = docs[0]
    pod["spec"]["containers"].append({
        "name": "grpc", "image": image, "imagePullPolicy": "IfNotPresent",
        "args": ["grpc-health-checking", f"--port={GRPC_PORT}", f"--http-port={GRPC_PORT + 1}"],
        "ports": [{"containerPort": GRPC_PORT, "name": "grpc"}],
        "readinessProbe": {"grpc": {"port": GRPC_PORT}, "periodSeconds": 1,
                           "failureThreshold": 1, "successThreshold": 1}})


def add_grpc_port(docs: list[dict[str, Any]]) -> None:
    """The gRPC port on a trial Service (trial-service.yaml); it adds kube-proxy rules too."""
    docs[0]["spec"]["ports"].append({"name": "grpc", "port": GRPC_PORT,
                                     "targetPort": GRPC_PORT, "appProtocol": "grpc"})


def target_image(tag: str) -> str:
    return f"{AGNHOST}:{tag}"


def deploy_target(api: Kube, namespace: str, name: str, replicas: int, image: str) -> None:
    ensure_namespace(api, namespace)
    apply(api, render("target.yaml", NAME=name, NAMESPACE=namespace, REPLICAS=replicas,
                      IMAGE=image))


def wait_ready_pods(api: Kube, namespace: str, name: str, count: int,
                    timeout: float = 120) -> list[dict[str, Any]]:
    def enough() -> list[dict[str, Any]]:
        pods = api.list(f"/api/v1/namespaces/{namespace}/pods",
                        labelSelector=f"app.kubernetes.io/name={name}")
        ready = [p for p in pods if is_ready(p)]
        return ready if len(ready) >= count else []

    return wait_until(enough, timeout, 0.2, f"{count} Ready pod(s) of {namespace}/{name}")


def delete_namespace(api: Kube, name: str, wait: float = 60) -> None:
    path = f"/api/v1/namespaces/{name}"
    if not api.delete(path):
        return
    try:
        wait_until(lambda: api.get(path) is None, wait, 0.5, f"namespace {name} to be deleted")
    except WaitTimeout:
        pass  # still terminating: left to the cluster
