"""Put the node agents on a cluster: the agent namespace (Namespace, ServiceAccount
without any Role or token, Secret), the DaemonSet, and the wait until every agent is Ready
and answers through the API server's pod proxy, or the first clear reason why not.

What it creates is noted in a Footprint as it goes, so cleanup (cleanup.py) removes
exactly that, even when the deploy stops half way.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench import workloads
from bench.errors import ClusterError, UserError
from bench.kube import Kube
from bench.poll import WaitTimeout, wait_until
from bench.providers.kubeconfig import podstate
from bench.providers.podproxy import PodProxyTransport
from bench.ready import is_ready

Say = Callable[[str], None]
AGENT_NAMESPACE = "hopbench-system"
AGENT_PORT = 10299
AGENT_NAME = "hopbench-agent"
AGENT_SELECTOR = f"app.kubernetes.io/name={AGENT_NAME}"
PART_OF = "app.kubernetes.io/part-of=hopbench"
RUN_NAMESPACE = re.compile(r"^hopbench-[0-9a-f]{6}-[a-z]{3}$")  # the runner's per-mode ns
#: where the agent image keeps the mesh client (bench.build.agentimage MESH_CLIENT)
MESH_CLIENT = "/opt/hopbench/bin/meshclient"
NOT_CREATED_AFTER_S = 10.0  # no agent pod by then: look for the DaemonSet's FailedCreate
#: where the API server keeps each kind the agent manifests hold
PATHS = {"Namespace": "/api/v1/namespaces",
         "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
         "Secret": "/api/v1/namespaces/{ns}/secrets",
         "DaemonSet": "/apis/apps/v1/namespaces/{ns}/daemonsets"}


@dataclass(frozen=True)
class AgentOptions:
    image: str
    namespace: str = AGENT_NAMESPACE
    port: int = AGENT_PORT
    ready_timeout_s: float = 120.0
    max_lifetime_s: float = 6 * 3600
    mesh_xds: str = ""  # the cluster's xDS server: the agents run the mesh client against it

    @property
    def pull_policy(self) -> str:
        """A `localhost/` image exists only where it was imported: never try a registry."""
        return "Never" if self.image.startswith("localhost/") else "IfNotPresent"


@dataclass
class Footprint:
    """What a run has put on the cluster, for cleanup to take away."""

    namespace_created: bool = False  # the agent namespace is ours (delete it at the end)
    namespaces_before: set[str] = field(default_factory=set)  # hopbench's, before the run


def deploy(api: Kube, options: AgentOptions, nodes: list[str], token: str,
           probe_interval_ms: float, metrics_port: int, footprint: Footprint,
           say: Say) -> list[PodProxyTransport]:
    """The agents on `nodes`, Ready and reachable, one transport each."""
    o = options
    if not footprint.namespace_created:
        create_namespace(api, o, footprint)
    for doc in workloads.render(
            "agent/daemonset.yaml", NAMESPACE=o.namespace, IMAGE=o.image,
            PULL_POLICY=o.pull_policy, PORT=o.port, TOKEN=token,
            PROBE_INTERVAL_MS=probe_interval_ms, METRICS_PORT=metrics_port,
            MAX_LIFETIME_S=int(o.max_lifetime_s)):
        create(api, with_mesh(doc, o.mesh_xds))
    say(f"agents: DaemonSet {o.namespace}/{AGENT_NAME} ({o.image}) on {len(nodes)} node(s)")
    pods = wait_agents(api, o, nodes)
    transports = [PodProxyTransport(api, node, o.namespace, pods[node], o.port, token)
                  for node in nodes]
    for t in transports:
        wait_proxy(t, o.port)
    return transports


def with_mesh(doc: dict[str, Any], xds: str) -> dict[str, Any]:
    """The DaemonSet's agent also runs the mesh client against `xds` (NODE_IP: the
    downward API's status.hostIP, expanded by the kubelet)."""
    if not xds or doc["kind"] != "DaemonSet":
        return doc
    (agent,) = [c for c in doc["spec"]["template"]["spec"]["containers"]
                if c["name"] == "agent"]
    agent["args"] = [*agent.get("args", []), "--mesh-client", MESH_CLIENT,
                     "--mesh-xds", xds, "--node-ip", "$(NODE_IP)"]
    return doc


def create_namespace(api: Kube, options: AgentOptions, footprint: Footprint) -> None:
    """The agent namespace and its ServiceAccount and Secret; noted as ours once created."""
    for doc in workloads.render("agent/namespace.yaml", NAMESPACE=options.namespace):
        create(api, doc)
        if doc["kind"] == "Namespace":
            footprint.namespace_created = True


def create(api: Kube, doc: dict[str, Any]) -> None:
    ns = doc["metadata"].get("namespace", "")
    api.create(PATHS[doc["kind"]].format(ns=ns), doc)


def agent_pods(api: Kube, namespace: str) -> list[dict[str, Any]]:
    listed = api.get(f"/api/v1/namespaces/{namespace}/pods",
                     labelSelector=AGENT_SELECTOR) or {}
    return list(listed.get("items", []))


def wait_agents(api: Kube, options: AgentOptions, nodes: list[str]) -> dict[str, str]:
    """node -> Ready agent pod, or the first clear reason why not."""
    started = time.monotonic()
    pods: dict[str, dict[str, Any]] = {}
    ready: dict[str, str] = {}

    def all_ready() -> dict[str, str]:
        nonlocal pods, ready
        pods = {p["spec"].get("nodeName"): p for p in agent_pods(api, options.namespace)
                if not p["metadata"].get("deletionTimestamp")}
        for node, pod in pods.items():
            if node in nodes:
                raise_if_broken(api, options, node, pod)
        ready = {n: p["metadata"]["name"] for n, p in pods.items()
                 if n in nodes and is_ready(p)}
        if not pods and time.monotonic() - started > NOT_CREATED_AFTER_S:
            raise_if_not_created(api, options.namespace)
        return ready if len(ready) == len(nodes) else {}

    try:
        return wait_until(all_ready, options.ready_timeout_s, 0.3, "agents Ready")
    except WaitTimeout as exc:
        missing = [n for n in nodes if n not in ready]
        why = "; ".join(f"{n}: {podstate.pod_state(pods.get(n))}" for n in missing)
        raise ClusterError(f"agents not Ready after {time.monotonic() - started:.0f}s "
                           f"on {why}") from exc


def raise_if_broken(api: Kube, options: AgentOptions, node: str, pod: dict[str, Any]) -> None:
    """A UserError when the agent on `node` cannot come up by waiting longer."""
    p = podstate.problem(pod)
    if p is None:
        return
    if p.image:
        raise UserError(podstate.image_error(options.image, node, p))
    log = api.get_text(f"/api/v1/namespaces/{options.namespace}/pods/"
                       f"{pod['metadata']['name']}/log",
                       container="agent", tailLines="5", previous="true")
    raise UserError(podstate.exit_error(node, options.port, log, p))


def raise_if_not_created(api: Kube, namespace: str) -> None:
    """A UserError when the cluster refused to create the agent pods (admission)."""
    events = api.get(f"/api/v1/namespaces/{namespace}/events",
                     fieldSelector=f"involvedObject.name={AGENT_NAME}") or {}
    failed = [e for e in events.get("items", []) if e.get("reason") == "FailedCreate"]
    if failed:
        raise UserError(f"the cluster refused the agent pods: "
                        f"{podstate.short(failed[-1].get('message', ''))}")


def wait_proxy(t: PodProxyTransport, port: int, timeout: float = 30.0) -> None:
    """Wait until the API server's pod proxy reaches the agent on its node."""
    try:
        wait_until(lambda: t.request("GET", "/healthz", timeout=5) is not None, timeout,
                   0.3, f"the agent on {t.node}", retry_on=(ClusterError,))
    except WaitTimeout as exc:
        raise ClusterError(f"the API server cannot reach the agent on {t.node} "
                           f"(pod {t.pod}, node port {port}; a "
                           "firewall between control plane and nodes must let "
                           f"that port through): {exc.last_error}") from exc
