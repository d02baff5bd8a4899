"""The local provider: the embedded cluster from bench.cluster.local, agents as node-namespace
processes."""

from __future__ import annotations

import functools
import json
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench import __version__
from bench.cluster.local import components, live, nshttp, procs
from bench.cluster.local.spec import API_PORT, ClusterSpec
from bench.cluster.toolset import Toolset, find_toolset
from bench.errors import ClusterError, UserError
from bench.kube import Kube
from bench.mesh import registry as meshes
from bench.providers.podproxy import TOKEN_HEADER
from bench.sources.agents import Transport

AGENT_PORT = 10299


class NetnsTransport:
    """HTTP to an agent listening on loopback inside a node's namespace."""

    def __init__(self, node: str, ns: str, port: int, token: str) -> None:
        self.node, self.ns, self.port, self.token = node, ns, port, token
        self._http = nshttp.client(ns, base_url=f"http://127.0.0.1:{port}",
                                   headers={TOKEN_HEADER: token})

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                timeout: float = 5.0) -> Any:
        try:
            resp = self._http.request(method, path, json=body, timeout=timeout)
        except httpx.TransportError as exc:
            raise OSError(f"agent on {self.node}: {method} {path}: {exc}") from exc
        if resp.status_code != 200:
            raise ClusterError(f"agent on {self.node}: {method} {path} -> {resp.status_code} "
                               f"{resp.content[:200]!r}")
        if "application/json" in resp.headers.get("content-type", ""):
            return resp.json()
        return resp.text


def _healthy(t: Transport) -> bool:
    return bool(t.request("GET", "/healthz"))


class LocalProvider:
    name = "local"

    def __init__(self, spec: ClusterSpec, tools: Toolset | None = None,
                 owned: bool = False, measure_mesh: bool = False) -> None:
        self.spec = spec
        #: `run --mesh`: measure the mesh the cluster runs; without it, a cluster brought up
        #: with a mesh is measured as any other (kube-proxy's path only, istiod idle)
        self.measure_mesh = measure_mesh
        self.tools = tools or find_toolset()
        self.kubeconfig = spec.kubeconfig
        self.owned = owned  # we created it, so close() removes it
        self._agent_pids: list[int] = []
        self._kube: Kube | None = None
        self._watch: Kube | None = None
        self._switch: dict[str, Any] = {}

    def nodes(self) -> list[str]:
        return self.spec.node_names()

    def proxy_mode(self) -> str:
        return str(live.read_state(self.spec).get("proxy_mode", self.spec.proxy_mode))

    def set_proxy_mode(self, mode: str) -> None:
        """kube-proxy restarted in `mode` on every node, its old rules removed, even when
        it runs that mode already: each mode of a run starts from nothing, so the time it
        takes to program the cluster's Services is a figure (`switch_stamps`)."""
        self._switch = live.set_proxy_mode(self.spec.name, mode, say=lambda m: None,
                                           tools=self.tools)

    def stop_kube_proxy(self) -> None:
        """Stop kube-proxy on every node until the next set_proxy_mode (which restarts it
        from nothing anyway). Optional Provider method: the background fill calls it, so
        two kube-proxies re-syncing a growing table do not take the 2 cores the API server
        and etcd need to store the objects."""
        live.stop_proxies(self.spec)

    def switch_stamps(self) -> dict[str, Any]:
        """The last set_proxy_mode's stamps (bench.cluster.local.live.set_proxy_mode):
        `started_ns` (new processes spawned) and each node's `first_sync_s`. Optional
        Provider method: where it exists, a mode's `program_s` is exact."""
        return dict(self._switch)

    def restart_kube_proxy(self, node: str, between: Callable[[], None] | None = None
                           ) -> dict[str, Any]:
        """Restart kube-proxy on one node the way a mode switch does (bench.cluster.local
        .live.replace_proxies): stop it, remove its rules, call `between`, start it in the
        current mode. Optional Provider method (the proxy-restart scenario's); returns the
        node, the mode and the harness-clock stamps."""
        if node not in self.nodes():
            raise UserError(f"cluster {self.spec.name!r} has no node {node!r}")
        mode = self.proxy_mode()
        stamps = live.replace_proxies(self.spec, self.tools, mode, [node], between)
        return {"node": node, "mode": mode, **stamps}

    def mesh(self) -> dict[str, str] | None:
        """The mesh `cluster up --mesh` started: name, xds address, client binary, log
        (state.json `mesh`), when the run measures it; None otherwise. Optional Provider
        method."""
        if not self.measure_mesh:
            return None
        mesh = live.read_state(self.spec).get("mesh")
        return dict(mesh) if self.spec.mesh and mesh else None

    def mesh_metrics(self) -> str | None:
        """The local istiod's /metrics text (its monitoring port on the control-plane
        namespace's loopback); None without a mesh or when it does not answer."""
        if (mesh := self.mesh()) is None:
            return None
        port = meshes.get(mesh["name"]).monitoring_port
        try:
            status, body = nshttp.get(self.spec.cp_ns, "127.0.0.1", port, "/metrics",
                                      timeout=5.0)
        except OSError:
            return None
        return body if status == 200 else None

    def start_agents(self, token: str, probe_interval_ms: float) -> list[Transport]:
        self.stop_agents()
        self._stop_orphaned_agents()
        transports: list[Transport] = []
        mesh = self.mesh()
        for node in self.nodes():
            ns = self.spec.node_ns(node)
            argv = procs.python_module(
                "bench.agent", "--node", node, "--listen", f"127.0.0.1:{AGENT_PORT}",
                "--token", token, "--probe-interval-ms", str(probe_interval_ms),
                "--max-lifetime", str(6 * 3600))
            if mesh:
                argv += ["--mesh-client", mesh["client"], "--mesh-xds", mesh["xds"],
                         "--node-ip", self.spec.node_ip(node)]
            pid = procs.start(argv, self.spec.logs / f"agent-{node}.log", ns,
                              env={"PYTHONPATH": _src_root()})
            self._agent_pids.append(pid)
            self._agent_pidfile(node).write_text(str(pid))
            transports.append(NetnsTransport(node, ns, AGENT_PORT, token))
        for t in transports:
            live.wait_for(f"agent on {t.node}", functools.partial(_healthy, t), 30,
                             str(self.spec.logs / f"agent-{t.node}.log"))
        return transports

    def stop_agents(self) -> None:
        procs.stop(self._agent_pids)
        self._agent_pids = []

    def kube(self) -> Kube:
        """The run's client, through the loopback forwarder (the kubeconfig's address)."""
        if self._kube is None:
            self._kube = Kube(self.kubeconfig)
        return self._kube

    def _agent_pidfile(self, node: str) -> Path:
        return self.spec.logs / f"agent-{node}.pid"

    def _stop_orphaned_agents(self) -> None:
        """Stop the agents a run killed with SIGKILL left behind: they still hold the agent
        port of each node (with that run's token), so a new run could not arm its own."""
        orphans = []
        for node in self.nodes():
            try:
                pid = int(self._agent_pidfile(node).read_text())
            except (OSError, ValueError):
                continue
            if procs.alive(pid) and "bench.agent" in procs.cmdline(pid):
                orphans.append(pid)
        procs.stop(orphans)

    def watch_client(self) -> Kube:
        """Watches connect from the control-plane namespace straight to the API server, so
        the loopback forwarder (a Python process) adds no delay to T1/T2 stamps."""
        if self._watch is None:
            self._watch = self.kube().for_watches(self.spec.cp_ns,
                                                  f"https://{self.spec.cp_ip}:{API_PORT}")
        return self._watch

    def audit_log(self) -> Path | None:
        return self.spec.logs / "audit.log"

    def provenance(self) -> dict[str, Any]:
        state = live.read_state(self.spec)
        return {
            "provider": "local", "cluster": self.spec.name,
            "kubernetes_version": self.tools.pins.kubernetes, "etcd_version": self.tools.pins.etcd,
            "go_version": self.tools.go_version, "node_count": self.spec.nodes,
            "nodes": self.nodes(), "kubelet": "real upstream kubelet (not the fallback agent)",
            "container_runtime": _version(["containerd", "--version"]),
            "runc": (_version(["runc", "--version"]).splitlines() or ["unknown"])[0],
            "iptables": _version(["iptables", "--version"]),
            "nft": _version(["nft", "--version"]),
            "kernel": platform.release(), "component_args": self.spec.component_args,
            "component_env": self.spec.component_env, "mesh": self.spec.mesh,
            "kube_proxy_args": components.kube_proxy(self.spec, self.nodes()[0], self.tools,
                                                     "<mode>")[1:],
            "cluster_up_seconds": state.get("up_seconds"),
            "harness_version": __version__, "clock": "one kernel clock (CLOCK_REALTIME)",
        }

    def kube_proxy_config(self) -> dict[str, Any]:
        """kube-proxy's effective configuration from its /configz endpoint, per node."""
        from bench.cluster.local import nshttp
        out: dict[str, Any] = {}
        for node in self.nodes():
            try:
                status, body = nshttp.get(self.spec.node_ns(node), "127.0.0.1", 10249, "/configz")
                out[node] = json.loads(body) if status == 200 else {"status": status}
            except (OSError, ValueError) as exc:
                out[node] = {"error": str(exc)}
        return out

    def component_rss(self) -> dict[str, int]:
        """Resident memory of the control plane this cluster started (etcd, kube-apiserver),
        from /proc of the pids `cluster up` recorded; a component not running is absent."""
        pids = live.read_state(self.spec).get("pids", {})
        out = {}
        binaries = {"etcd": "etcd", "kube-apiserver": "kube-apiserver",
                    "istiod": "pilot-discovery"}  # component -> what its command line runs
        for name, binary in binaries.items():
            pid = int(pids.get(name, 0))
            mine = pid and procs.alive(pid) and binary in procs.cmdline(pid)  # not reused
            rss = procs.rss_bytes(pid) if mine else None
            if rss:
                out[name] = rss
        return out

    def close(self) -> None:
        self.stop_agents()
        for client in (self._watch, self._kube):
            if client is not None:
                client.close()
        self._watch = self._kube = None
        if self.owned:
            live.down(self.spec.name, say=lambda m: None)


def _src_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def _version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"

