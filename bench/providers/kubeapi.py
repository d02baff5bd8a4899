"""A small REST client for any cluster, and the checks a kubeconfig run does before it
creates anything: the file exists and loads, the API server answers, and the user may do
everything the run will do (SelfSubjectAccessReview).

Plain httpx on bench.kubehttp's authenticated client: the provider needs a handful of
calls with explicit timeouts and one-line errors, not the generated client's models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench import kubehttp
from bench.errors import ClusterError, UserError

PREFLIGHT_TIMEOUT_S = 8.0
SHOW_MISSING = 5  # permissions named in the error; the rest are counted


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
#: read only if allowed: the kube-proxy ConfigMap kubeadm and kind write
OPTIONAL_CONFIGMAP = Permission("get", "configmaps", namespace="kube-system")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def load_kubeconfig_path(raw: str | Path) -> Path:
    path = Path(os.path.expanduser(str(raw)))
    if not path.exists():
        raise UserError(f"kubeconfig {path} does not exist")
    if not path.is_file():
        raise UserError(f"kubeconfig {path} is not a file")
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"kubeconfig {path} is not readable YAML: {first_line(exc)}") from exc
    if not isinstance(doc, dict) or not doc.get("clusters"):
        raise UserError(f"kubeconfig {path} names no cluster")
    return path


class KubeApi:
    """GET/POST/DELETE against the API server; 404 is an answer, other failures raise."""

    def __init__(self, kubeconfig: Path, timeout: float = 15.0) -> None:
        self.kubeconfig = kubeconfig
        self.http = kubehttp.http_client(kubeconfig, timeout=timeout)
        self.timeout = timeout
        self.server = str(self.http.base_url).rstrip("/")

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, timeout: float | None = None,
              **kw: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, timeout=timeout or self.timeout, **kw)
        except httpx.HTTPError as exc:
            raise ClusterError(f"API server {self.server}: {method} {path}: "
                               f"{first_line(exc)}") from exc

    @staticmethod
    def _raise(resp: httpx.Response, what: str) -> None:
        try:
            msg = resp.json().get("message", "")
        except ValueError:
            msg = resp.text[:200]
        if resp.status_code in (401, 403):
            raise UserError(f"{what}: the API server refused ({resp.status_code}): {msg}")
        raise ClusterError(f"{what}: HTTP {resp.status_code}: {msg}")

    def get(self, path: str, timeout: float | None = None, **params: Any
            ) -> dict[str, Any] | None:
        resp = self._call("GET", path, timeout, params=params or None)
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            self._raise(resp, f"GET {path}")
        return dict(resp.json())

    def get_text(self, path: str, **params: Any) -> str:
        resp = self._call("GET", path, params=params or None)
        return resp.text if resp.status_code == 200 else ""

    def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        resp = self._call("POST", path, json=obj)
        if resp.status_code not in (200, 201, 202):
            self._raise(resp, f"create {obj.get('kind')} {obj['metadata'].get('name')}")
        return dict(resp.json())

    def delete(self, path: str, **body: Any) -> bool:
        """True if it existed. `body` is DeleteOptions (e.g. propagationPolicy)."""
        resp = self._call("DELETE", path, json=body or None)
        if resp.status_code == 404:
            return False
        if resp.status_code not in (200, 202):
            self._raise(resp, f"DELETE {path}")
        return True


def connect(kubeconfig: str | Path) -> KubeApi:
    """A KubeApi for a kubeconfig that loads and reaches an API server, or one clear line."""
    path = load_kubeconfig_path(kubeconfig)
    api = KubeApi(path)
    try:
        resp = api.http.get("/version", timeout=PREFLIGHT_TIMEOUT_S)
    except httpx.TimeoutException:
        api.close()
        raise UserError(f"the API server at {api.server} (kubeconfig {path}) did not answer "
                        f"within {PREFLIGHT_TIMEOUT_S:.0f}s") from None
    except httpx.HTTPError as exc:
        api.close()
        raise UserError(f"cannot reach the API server at {api.server} (kubeconfig {path}): "
                        f"{first_line(exc)}") from None
    if resp.status_code == 401:
        api.close()
        raise UserError(f"the API server at {api.server} rejected the credentials in "
                        f"kubeconfig {path} (401 Unauthorized)")
    if resp.status_code != 200 or "gitVersion" not in resp.text:
        api.close()
        raise UserError(f"{api.server} (kubeconfig {path}) does not look like a Kubernetes "
                        f"API server: GET /version -> HTTP {resp.status_code}")
    return api


def allowed(api: KubeApi, perm: Permission) -> bool:
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": {
                  "verb": perm.verb, "group": perm.group, "resource": perm.resource,
                  "subresource": perm.subresource, "namespace": perm.namespace}}}
    out = api.create("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
    return bool(out.get("status", {}).get("allowed"))


def require_permissions(api: KubeApi, perms: tuple[Permission, ...] = REQUIRED) -> None:
    missing = [p.describe() for p in perms if not allowed(api, p)]
    if missing:
        shown = ", ".join(missing[:SHOW_MISSING])
        more = f" and {len(missing) - SHOW_MISSING} more" if len(missing) > SHOW_MISSING else ""
        raise UserError(f"kubeconfig {api.kubeconfig}: missing RBAC permissions for a "
                        f"hopbench run: {shown}{more}")
