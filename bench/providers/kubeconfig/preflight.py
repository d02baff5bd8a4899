"""The checks a kubeconfig run does before it creates anything: the file exists and loads,
the API server answers, the user may do everything the run will do
(SelfSubjectAccessReview), the agent namespace is free, and with `--mesh istio` the
cluster runs istiod (bench.mesh.istio.existing). The client itself is
bench.kube's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.errors import UserError
from bench.kube import ApiUnreachable, Kube, TransportFactory, kubeconfig_path
from bench.poll import WaitTimeout, wait_until

PREFLIGHT_TIMEOUT_S = 8.0
SHOW_MISSING = 5  # permissions named in the error; the rest are counted
NAMESPACE_FREE_WAIT_S = 60.0  # for an earlier run's agent namespace to finish terminating


@dataclass(frozen=True)
class Permission:
    verb: str
    resource: str
    group: str = ""
    subresource: str = ""
    namespace: str = ""  # "" = every namespace (the run creates its namespaces as it goes)

    def describe(self) -> str:
        res = f"{self.resource}.{self.group}" if self.group else self.resource
        res += f"/{self.subresource}" if self.subresource else ""
        return f"{self.verb} {res}" + (f" in {self.namespace}" if self.namespace else "")


#: everything a kubeconfig run does: its namespaces, the agent's ServiceAccount, Secret and
#: DaemonSet, the pod proxy to the agents, the trial pods and Services, the watches
REQUIRED = (
    Permission("create", "namespaces"), Permission("delete", "namespaces"),
    Permission("list", "nodes"),
    Permission("create", "serviceaccounts"), Permission("create", "secrets"),
    Permission("create", "daemonsets", "apps"), Permission("delete", "daemonsets", "apps"),
    Permission("list", "pods"), Permission("watch", "pods"),
    Permission("create", "pods"), Permission("delete", "pods"),
    Permission("get", "pods", subresource="proxy"),
    Permission("create", "pods", subresource="proxy"),
    Permission("create", "services"),
    Permission("watch", "endpointslices", "discovery.k8s.io"),
)
#: `--mesh istio` also reads the cluster's istiod Service (bench.mesh.istio.existing); the
#: cluster-wide listing by label is used only where it is allowed
MESH = (Permission("get", "services", namespace="istio-system"),)
#: read only if allowed: the kube-proxy ConfigMap kubeadm and kind write
OPTIONAL_CONFIGMAP = Permission("get", "configmaps", namespace="kube-system")


def connect(kubeconfig: str | Path, transport: TransportFactory | None = None) -> Kube:
    """The run's client, for a kubeconfig that loads and reaches an API server, or one clear
    line. `transport`: tests stand in for the API server."""
    path = kubeconfig_path(kubeconfig)
    api = Kube(path, transport=transport)
    try:
        resp = api.request("GET", "/version", timeout=PREFLIGHT_TIMEOUT_S)
    except ApiUnreachable as exc:
        api.close()
        if exc.timed_out:
            raise UserError(f"the API server at {api.server} (kubeconfig {path}) did not "
                            f"answer within {PREFLIGHT_TIMEOUT_S:.0f}s") from None
        raise UserError(f"cannot reach the API server at {api.server} (kubeconfig {path}): "
                        f"{exc.reason}") from None
    if resp.status_code == 401:
        api.close()
        raise UserError(f"the API server at {api.server} rejected the credentials in "
                        f"kubeconfig {path} (401 Unauthorized)")
    if resp.status_code != 200 or "gitVersion" not in resp.text:
        api.close()
        raise UserError(f"{api.server} (kubeconfig {path}) does not look like a Kubernetes "
                        f"API server: GET /version -> HTTP {resp.status_code}")
    return api


def allowed(api: Kube, perm: Permission) -> bool:
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": {
                  "verb": perm.verb, "group": perm.group, "resource": perm.resource,
                  "subresource": perm.subresource, "namespace": perm.namespace}}}
    out = api.create("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
    return bool(out.get("status", {}).get("allowed"))


def require_permissions(api: Kube, perms: tuple[Permission, ...] = REQUIRED) -> None:
    missing = [p.describe() for p in perms if not allowed(api, p)]
    if missing:
        shown = ", ".join(missing[:SHOW_MISSING])
        more = f" and {len(missing) - SHOW_MISSING} more" if len(missing) > SHOW_MISSING else ""
        raise UserError(f"kubeconfig {api.kubeconfig}: missing RBAC permissions for a "
                        f"hopbench run: {shown}{more}")


def find_mesh(api: Kube, mesh: str) -> tuple[str, str]:
    """(xDS address, where it was found) of the mesh the cluster already runs, or one line:
    a kubeconfig run never installs a mesh."""
    from bench.mesh import registry as meshes
    from bench.mesh.istio import existing

    if meshes.check(mesh) != "istio":
        raise UserError(f"--mesh {mesh} with --kubeconfig: only istio is found in an "
                        "existing cluster")
    return existing.find_istiod(api)


def claim_namespace(api: Kube, ns: str, part_of: str) -> set[str]:
    """Wait for `ns` to be free (an earlier run's may still be terminating), or one clear
    line; then the hopbench namespaces (label `part_of`) already there, which cleanup
    leaves alone."""

    def free() -> bool:
        obj = api.get(f"/api/v1/namespaces/{ns}")
        if obj is not None and obj.get("status", {}).get("phase") != "Terminating":
            raise UserError(f"namespace {ns} already exists: another hopbench run is "
                            f"using this cluster, or an earlier one was killed "
                            f"(kubectl delete namespace {ns})")
        return obj is None

    try:
        wait_until(free, NAMESPACE_FREE_WAIT_S, 1, f"namespace {ns} to be deleted")
    except WaitTimeout as exc:
        raise UserError(f"namespace {ns} is still being deleted after "
                        f"{NAMESPACE_FREE_WAIT_S:.0f}s") from exc
    listed = api.get("/api/v1/namespaces", labelSelector=part_of) or {}
    return {i["metadata"]["name"] for i in listed.get("items", [])}
