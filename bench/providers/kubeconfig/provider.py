"""The kubeconfig provider: measure any existing cluster, leaving nothing behind.

`hopbench run --kubeconfig PATH` creates nothing but its own namespace (the agent's:
Namespace, ServiceAccount without any Role or token, Secret, DaemonSet; the runner adds
one namespace per mode for the trial pods) and removes all of it afterwards: on success,
on error, on Ctrl-C or SIGTERM (turned into KeyboardInterrupt), and a second Ctrl-C
during that cleanup does not cut it short.

`open()` does everything that can fail before a run directory exists: the kubeconfig
loads, the API server answers, the user holds every RBAC permission the run needs
(SelfSubjectAccessReview), the agent namespace is free, the agents come up on every
Ready Linux node, the kube-proxy mode is known, and each agent's clock offset is
estimated (warn, or refuse with --max-skew, when its uncertainty is too large).

The kube-proxy mode and configuration come from the `kube-system/kube-proxy` ConfigMap
that kubeadm and kind write, when it exists and may be read. Otherwise (clusters whose
kube-proxy runs from flags, like the local cluster) the mode is what the agents see in
every node's rules (nftables table, IPVS services, else iptables), accepted only where
the agent also reaches kube-proxy's metrics, so a node without kube-proxy is never taken
for iptables. Either way the agents' view is recorded next to the ConfigMap's.

The agents deployed by `open()` serve the whole run: `start_agents` hands them out
again (with the token they were deployed with) rather than paying a pod start per node.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import __version__, prom, workloads
from bench.build import agentimage
from bench.errors import ClusterError, UserError
from bench.kube import Kube, first_line
from bench.poll import WaitTimeout, wait_until
from bench.providers import clusterfacts as facts
from bench.providers import kubeapi
from bench.providers.podproxy import PodProxyTransport
from bench.ready import is_ready
from bench.sources.agents import ClockOffset, Transport, estimate_offset

Say = Callable[[str], None]
AGENT_NAMESPACE = "hopbench-system"
AGENT_PORT = 10299
AGENT_NAME = "hopbench-agent"
AGENT_SELECTOR = f"app.kubernetes.io/name={AGENT_NAME}"
PART_OF = "app.kubernetes.io/part-of=hopbench"
RUN_NAMESPACE = re.compile(r"^hopbench-[0-9a-f]{6}-[a-z]{3}$")  # the runner's per-mode ns
IMAGE_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull",
                          "InvalidImageName", "ImageInspectError"})
# CreateContainerConfigError is left out: "failed to sync secret cache" is transient (the
# kubelet may read the token Secret only once the Node authorizer saw the pod bound);
# if it persists, the ready timeout reports the pod's state
START_ERRORS = frozenset({"CrashLoopBackOff", "CreateContainerError", "RunContainerError"})
DELETE_WAIT_S = 90.0
DEFAULT_PROBE_MS = 5.0


@dataclass(frozen=True)
class AgentOptions:
    image: str
    namespace: str = AGENT_NAMESPACE
    port: int = AGENT_PORT
    ready_timeout_s: float = 120.0
    max_lifetime_s: float = 6 * 3600

    @property
    def pull_policy(self) -> str:
        """A `localhost/` image exists only where it was imported: never try a registry."""
        return "Never" if self.image.startswith("localhost/") else "IfNotPresent"


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class KubeconfigProvider:
    name = "kubeconfig"

    def __init__(self, api: Kube, options: AgentOptions, max_skew_ms: float | None = None,
                 say: Say = print) -> None:
        self.api = api
        self.kubeconfig: Path = api.kubeconfig
        self.options = options
        self.max_skew_ms = max_skew_ms
        self.say = say
        self._own_token = secrets.token_hex(16)
        self._transports: list[PodProxyTransport] = []
        self._nodes: dict[str, dict[str, Any]] = {}
        self._version: dict[str, Any] = {}
        self._proxy = facts.from_configmap(None)
        self._mode = ""
        self._mode_source = ""
        self._observed: dict[str, dict[str, Any]] = {}
        self._offsets: dict[str, ClockOffset] = {}
        self._ns_before: set[str] = set()
        self._created_ns = False
        self._closed = False
        self._saved_signals: dict[int, Any] = {}

    # --- opening -----------------------------------------------------------------------
    @classmethod
    def open(cls, kubeconfig: str | Path, agent_image: str | None = None,
             max_skew_ms: float | None = None, probe_interval_ms: float = DEFAULT_PROBE_MS,
             modes: tuple[str, ...] = (), say: Say = print, **agent: Any
             ) -> KubeconfigProvider:
        """Check, deploy the agents, learn the mode and clocks; undo everything on failure.
        `modes`: the modes the run will ask for, refused here if the cluster runs another."""
        api = kubeapi.connect(kubeconfig)
        try:
            kubeapi.require_permissions(api)
        except BaseException:
            api.close()
            raise
        options = AgentOptions(image=agent_image or agentimage.default_ref(), **agent)
        provider = cls(api, options, max_skew_ms, say)
        provider._install_signals()
        try:
            provider._prepare(probe_interval_ms, modes)
        except BaseException:
            provider.close()
            raise
        return provider

    def _prepare(self, probe_interval_ms: float, modes: tuple[str, ...]) -> None:
        self._version = self.api.get("/version") or {}
        self._nodes = self._ready_linux_nodes()
        if kubeapi.allowed(self.api, kubeapi.OPTIONAL_CONFIGMAP):
            cm = self.api.get("/api/v1/namespaces/kube-system/configmaps/kube-proxy")
            self._proxy = facts.from_configmap((cm or {}).get("data"))
        if self._proxy.mode:  # known without agents: refuse before creating anything
            self._mode, self._mode_source = self._proxy.mode, self._proxy.source
            self.check_modes(modes)
        self._claim_namespace()
        self._deploy(self._own_token, probe_interval_ms)
        self._observe()
        self.check_modes(modes)
        self._check_clocks(probe_interval_ms)

    def _ready_linux_nodes(self) -> dict[str, dict[str, Any]]:
        items = (self.api.get("/api/v1/nodes") or {}).get("items", [])
        nodes = {}
        for n in items:
            ready = is_ready(n)
            linux = n["metadata"].get("labels", {}).get("kubernetes.io/os", "linux") == "linux"
            if ready and linux:
                nodes[n["metadata"]["name"]] = n.get("status", {}).get("nodeInfo", {})
        if not nodes:
            raise UserError(f"the cluster of {self.kubeconfig} has no Ready Linux node")
        return dict(sorted(nodes.items()))

    def _claim_namespace(self) -> None:
        ns = self.options.namespace

        def free() -> bool:
            obj = self.api.get(f"/api/v1/namespaces/{ns}")
            if obj is not None and obj.get("status", {}).get("phase") != "Terminating":
                raise UserError(f"namespace {ns} already exists: another hopbench run is "
                                f"using this cluster, or an earlier one was killed "
                                f"(kubectl delete namespace {ns})")
            return obj is None

        try:
            wait_until(free, 60, 1, f"namespace {ns} to be deleted")
        except WaitTimeout as exc:
            raise UserError(f"namespace {ns} is still being deleted after 60s") from exc
        listed = self.api.get("/api/v1/namespaces", labelSelector=PART_OF) or {}
        self._ns_before = {i["metadata"]["name"] for i in listed.get("items", [])}

    # --- the agent DaemonSet -----------------------------------------------------------
    def _deploy(self, token: str, probe_interval_ms: float) -> None:
        o = self.options
        if not self._created_ns:
            docs = workloads.render("agent/namespace.yaml", NAMESPACE=o.namespace)
            for doc in docs:
                self._create(doc)
                if doc["kind"] == "Namespace":
                    self._created_ns = True
        for doc in workloads.render(
                "agent/daemonset.yaml", NAMESPACE=o.namespace, IMAGE=o.image,
                PULL_POLICY=o.pull_policy, PORT=o.port, TOKEN=token,
                PROBE_INTERVAL_MS=probe_interval_ms, METRICS_PORT=self._proxy.metrics_port,
                MAX_LIFETIME_S=int(o.max_lifetime_s)):
            self._create(doc)
        self.say(f"agents: DaemonSet {o.namespace}/{AGENT_NAME} ({o.image}) on "
                 f"{len(self._nodes)} node(s)")
        pods = self._wait_agents()
        self._transports = [PodProxyTransport(self.api, node, o.namespace, pods[node],
                                              o.port, token) for node in self._nodes]
        for t in self._transports:
            self._wait_proxy(t)

    def _create(self, doc: dict[str, Any]) -> None:
        ns = doc["metadata"].get("namespace", "")
        path = {"Namespace": "/api/v1/namespaces",
                "ServiceAccount": f"/api/v1/namespaces/{ns}/serviceaccounts",
                "Secret": f"/api/v1/namespaces/{ns}/secrets",
                "DaemonSet": f"/apis/apps/v1/namespaces/{ns}/daemonsets"}[doc["kind"]]
        self.api.create(path, doc)

    def _agent_pods(self) -> list[dict[str, Any]]:
        listed = self.api.get(f"/api/v1/namespaces/{self.options.namespace}/pods",
                              labelSelector=AGENT_SELECTOR) or {}
        return list(listed.get("items", []))

    def _wait_agents(self) -> dict[str, str]:
        """node -> Ready agent pod, or the first clear reason why not."""
        started = time.monotonic()
        pods: dict[str, dict[str, Any]] = {}
        ready: dict[str, str] = {}

        def all_ready() -> dict[str, str]:
            nonlocal pods, ready
            pods = {p["spec"].get("nodeName"): p for p in self._agent_pods()
                    if not p["metadata"].get("deletionTimestamp")}
            for node, pod in pods.items():
                if node in self._nodes:
                    self._raise_if_broken(node, pod)
            ready = {n: p["metadata"]["name"] for n, p in pods.items()
                     if n in self._nodes and is_ready(p)}
            if not pods and time.monotonic() - started > 10:
                self._raise_if_not_created()
            return ready if len(ready) == len(self._nodes) else {}

        try:
            return wait_until(all_ready, self.options.ready_timeout_s, 0.3, "agents Ready")
        except WaitTimeout as exc:
            missing = [n for n in self._nodes if n not in ready]
            why = "; ".join(f"{n}: {_pod_state(pods.get(n))}" for n in missing)
            raise ClusterError(f"agents not Ready after {time.monotonic() - started:.0f}s "
                               f"on {why}") from exc

    def _raise_if_broken(self, node: str, pod: dict[str, Any]) -> None:
        for cs in pod.get("status", {}).get("containerStatuses", []):
            waiting = cs.get("state", {}).get("waiting") or {}
            reason = waiting.get("reason", "")
            if reason in IMAGE_ERRORS:
                raise UserError(
                    f"agent image {self.options.image} cannot be used on node {node}: "
                    f"{reason} ({_short(waiting.get('message', ''))}); build it with "
                    "`python -m bench.build.agentimage` (or workloads/agent/Dockerfile), "
                    "load it (`hopbench cluster load-image NAME ARCHIVE`) or push it, and "
                    "pass --agent-image REF")
            if reason in START_ERRORS or cs.get("restartCount", 0) >= 2:
                log = self.api.get_text(
                    f"/api/v1/namespaces/{self.options.namespace}/pods/"
                    f"{pod['metadata']['name']}/log",
                    container="agent", tailLines="5", previous="true")
                last = _short(([ln for ln in log.splitlines() if ln.strip()] or [""])[-1]
                              or waiting.get("message", "") or reason)
                hint = (f" (port {self.options.port} is taken on that node)"
                        if "Address already in use" in log else "")
                raise UserError(f"the agent on node {node} keeps exiting{hint}: {last}")

    def _raise_if_not_created(self) -> None:
        events = self.api.get(f"/api/v1/namespaces/{self.options.namespace}/events",
                              fieldSelector=f"involvedObject.name={AGENT_NAME}") or {}
        failed = [e for e in events.get("items", []) if e.get("reason") == "FailedCreate"]
        if failed:
            raise UserError(f"the cluster refused the agent pods: "
                            f"{_short(failed[-1].get('message', ''))}")

    def _wait_proxy(self, t: PodProxyTransport, timeout: float = 30.0) -> None:
        try:
            wait_until(lambda: t.request("GET", "/healthz", timeout=5) is not None, timeout,
                       0.3, f"the agent on {t.node}", retry_on=(ClusterError,))
        except WaitTimeout as exc:
            raise ClusterError(f"the API server cannot reach the agent on {t.node} "
                               f"(pod {t.pod}, node port {self.options.port}; a "
                               "firewall between control plane and nodes must let "
                               f"that port through): {exc.last_error}") from exc

    # --- what the agents tell about the cluster -----------------------------------------
    def _observe(self) -> None:
        for t in self._transports:
            info = t.request("GET", "/collect", timeout=10)
            seen: dict[str, Any] = {"rule_mode": info.get("rule_mode", ""),
                                    "rule_method": info.get("rule_method", "")}
            try:
                metrics = str(t.request("GET", "/kube-proxy-metrics", timeout=10))
                version = prom.label(prom.parse(metrics), prom.BUILD_INFO, "git_version")
                seen["kube_proxy_metrics"] = "reachable"
                seen["kube_proxy_version"] = version or "unknown"
            except ClusterError as exc:
                seen["kube_proxy_metrics"] = f"unreachable: {_short(str(exc))}"
            self._observed[t.node] = seen
        no_metrics = [n for n, s in self._observed.items()
                      if s["kube_proxy_metrics"] != "reachable"]
        rule_modes = {n: str(s["rule_mode"]) for n, s in self._observed.items()}
        if self._proxy.mode:
            self._mode, self._mode_source = self._proxy.mode, self._proxy.source
            differ = {n: m for n, m in rule_modes.items() if m != self._mode}
            if differ:
                self.say(f"warning: kube-proxy ConfigMap says {self._mode} but the rules on "
                         + ", ".join(f"{n} look like {m}" for n, m in differ.items()))
        elif no_metrics:
            raise UserError(
                "cannot tell the kube-proxy mode: no kube-system/kube-proxy ConfigMap, and no "
                f"kube-proxy metrics at 127.0.0.1:{self._proxy.metrics_port} on "
                f"{', '.join(no_metrics)} (is kube-proxy running there?)")
        else:
            self._mode, self._mode_source = facts.observed_mode(rule_modes), facts.AGENTS_SOURCE
        if no_metrics:
            self.say(f"warning: kube-proxy metrics unreachable on {', '.join(no_metrics)}: "
                     "sync times (slice→sync, sync→rule) will be missing there")

    def _check_clocks(self, probe_interval_ms: float) -> None:
        self._offsets = {t.node: estimate_offset(t, samples=20) for t in self._transports}
        limit = self.max_skew_ms if self.max_skew_ms is not None else probe_interval_ms
        problems = facts.skew_problems(self._offsets, limit)
        if not problems:
            return
        message = facts.skew_message(problems, limit, refuse=self.max_skew_ms is not None)
        if self.max_skew_ms is not None:
            raise UserError(message)
        self.say("warning: " + message)

    # --- the Provider protocol --------------------------------------------------------
    def nodes(self) -> list[str]:
        return list(self._nodes)

    def proxy_mode(self) -> str:
        return self._mode

    def set_proxy_mode(self, mode: str) -> None:
        facts.check_requested(mode, self._mode, self._mode_source)

    def check_modes(self, modes: tuple[str, ...]) -> None:
        """Refuse up front, before the run starts, any mode this cluster does not run."""
        for mode in modes:
            self.set_proxy_mode(mode)

    def start_agents(self, token: str, probe_interval_ms: float) -> list[Transport]:
        if not self._transports:
            self._deploy(token, probe_interval_ms)
        return list(self._transports)

    def stop_agents(self) -> None:
        """Delete the DaemonSet and its Secret; wait until the agent pods are gone, so the
        node port is free again."""
        self._transports = []
        ns = self.options.namespace
        if not self._created_ns:
            return
        self.api.delete(f"/apis/apps/v1/namespaces/{ns}/daemonsets/{AGENT_NAME}",
                        propagationPolicy="Background")
        self.api.delete(f"/api/v1/namespaces/{ns}/secrets/{AGENT_NAME}-token")
        with contextlib.suppress(WaitTimeout):  # the next deploy says so if pods linger
            wait_until(lambda: not self._agent_pods(), DELETE_WAIT_S, 0.5, "agent pods to go")

    def kube(self) -> Kube:
        return self.api

    def watch_client(self) -> Kube:
        return self.api

    def audit_log(self) -> Path | None:
        return None  # an arbitrary cluster's audit log is not ours to read

    def provenance(self) -> dict[str, Any]:
        infos = list(self._nodes.values())
        kernels = sorted({i.get("kernelVersion", "unknown") for i in infos})
        return {
            "provider": "kubeconfig", "api_server": self.api.server,
            "kubernetes_version": self._version.get("gitVersion", "unknown"),
            "node_count": len(self._nodes), "nodes": self.nodes(),
            "node_info": {n: {"kubelet": i.get("kubeletVersion"),
                              "container_runtime": i.get("containerRuntimeVersion"),
                              "kernel": i.get("kernelVersion"), "os": i.get("osImage"),
                              "arch": i.get("architecture")} for n, i in self._nodes.items()},
            "kernel": ", ".join(kernels),
            "kube_proxy_mode": self._mode, "kube_proxy_mode_source": self._mode_source,
            "kube_proxy_config": self._proxy.config or None,
            "kube_proxy_observed": self._observed,
            "agent_image": self.options.image, "agent_namespace": self.options.namespace,
            "agent_transport": "API server pod proxy",
            "clock": ("one kernel clock, the harness's (every agent reports its boot id)"
                      if self._offsets and all(o.shared for o in self._offsets.values())
                      else "one clock per node; offsets to the harness estimated by round "
                           "trips through the API server's pod proxy, 0 on nodes that share "
                           "the harness's kernel"),
            "clock_check": {n: {"offset_ns": o.offset_ns, "uncertainty_ns": o.uncertainty_ns,
                                "shared": o.shared}
                            for n, o in self._offsets.items()},
            "max_skew_ms": self.max_skew_ms, "harness_version": __version__,
        }

    def kube_proxy_config(self) -> dict[str, Any]:
        """What run.json keeps per mode: the ConfigMap's config and each node's view."""
        return {"mode": self._mode, "source": self._mode_source,
                "config": self._proxy.config or None, "nodes": self._observed}

    # --- closing -----------------------------------------------------------------------
    def close(self) -> None:
        """Remove everything this provider (and the runner) created; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._shield_signals()
        try:
            for step in (self.stop_agents, self._delete_namespaces):
                try:
                    step()
                except Exception as exc:  # noqa: BLE001 - keep cleaning, then tell
                    self.say(f"warning: cleanup step failed: {first_line(exc)}")
        finally:
            self._restore_signals()
            self.api.close()

    def _delete_namespaces(self) -> None:
        names = self._run_namespaces()
        if self._created_ns:
            names.append(self.options.namespace)
        for name in names:
            self.api.delete(f"/api/v1/namespaces/{name}")
        left = names

        def all_gone() -> bool:
            nonlocal left
            left = [n for n in left if self.api.get(f"/api/v1/namespaces/{n}") is not None]
            return not left

        with contextlib.suppress(WaitTimeout):  # said below
            wait_until(all_gone, DELETE_WAIT_S, 0.5, "namespaces to be deleted")
        if left:
            self.say(f"warning: namespaces still terminating after {DELETE_WAIT_S:.0f}s: "
                     f"{', '.join(left)} (kubectl get namespace {' '.join(left)})")
        else:
            self._created_ns = False

    def _run_namespaces(self) -> list[str]:
        """The runner's trial namespaces that appeared while this provider was open (it
        deletes them itself; this catches an interrupted cleanup)."""
        listed = self.api.get("/api/v1/namespaces", labelSelector=PART_OF) or {}
        return sorted(i["metadata"]["name"] for i in listed.get("items", [])
                      if RUN_NAMESPACE.match(i["metadata"]["name"])
                      and i["metadata"]["name"] not in self._ns_before)

    # --- signals -----------------------------------------------------------------------
    def _install_signals(self) -> None:
        """SIGTERM and SIGHUP end a run like Ctrl-C does, so cleanup runs (main thread only;
        handlers someone else installed are left alone)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                self._saved_signals[sig] = signal.signal(sig, _raise_interrupt)

    def _shield_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def busy(signum: int, frame: object) -> None:
            self.say("hopbench: removing the agents and namespaces first "
                     f"(at most {2 * DELETE_WAIT_S:.0f}s)")

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous = signal.signal(sig, busy)
            self._saved_signals.setdefault(sig, previous)

    def _restore_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in self._saved_signals.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._saved_signals = {}


def _pod_state(pod: dict[str, Any] | None) -> str:
    if pod is None:
        return "no agent pod"
    status = pod.get("status", {})
    for cs in status.get("containerStatuses", []):
        for state, detail in cs.get("state", {}).items():
            if state != "running":
                return f"{state} {detail.get('reason', '')} {_short(detail.get('message', ''))}"
    for c in status.get("conditions", []):
        if c.get("status") != "True" and c.get("message"):
            return f"{c['type']}: {_short(c['message'])}"
    return str(status.get("phase", "unknown"))


def _short(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 1] + "…"
