"""The kubeconfig provider: measure any existing cluster, leaving nothing behind.

A thin class over the package's steps, in the order a run meets them: preflight (the
kubeconfig, the API server, RBAC, a free agent namespace), discovery (nodes, versions,
kube-proxy's mode), deploy (the agent DaemonSet), clocks (each agent's offset), cleanup
(everything it created, on success, on error, on Ctrl-C or SIGTERM; signals.py keeps a
second Ctrl-C from cutting that cleanup short).

`open()` does everything that can fail before a run directory exists. The agents it
deploys serve the whole run: `start_agents` hands them out again (with the token they
were deployed with) rather than paying a pod start per node.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import __version__
from bench.errors import UserError
from bench.kube import Kube
from bench.providers.kubeconfig import cleanup, clocks, deploy, discovery, facts, preflight
from bench.providers.kubeconfig.deploy import AgentOptions, Footprint
from bench.providers.kubeconfig.signals import SignalGuard
from bench.providers.podproxy import PodProxyTransport
from bench.sources.agents import ClockOffset, Transport

Say = Callable[[str], None]
DEFAULT_PROBE_MS = 5.0


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
        self._view = discovery.ClusterView()
        self._offsets: dict[str, ClockOffset] = {}
        self._footprint = Footprint()
        self._signals = SignalGuard()
        self._closed = False
        self._watch: Kube | None = None  # the stamped watches' client (own event loop)
        self._mesh: dict[str, str] = {}  # name, xds, found (the Service it came from)

    @classmethod
    def open(cls, kubeconfig: str | Path, agent_image: str | Callable[[], str],
             max_skew_ms: float | None = None, probe_interval_ms: float = DEFAULT_PROBE_MS,
             modes: tuple[str, ...] = (), say: Say = print, mesh: str = "", **agent: Any
             ) -> KubeconfigProvider:
        """Check, deploy the agents, learn the mode and clocks; undo everything on failure.
        `modes`: the modes the run will ask for, refused here if the cluster runs another.
        `agent_image`: a reference the nodes can pull or already hold (the CLI defaults it
        to the locally built image's; the run path never imports the image build), or a
        function giving it, called once the cluster passed preflight (a mesh image is
        built only for a cluster that runs the mesh).
        `mesh`: measure the mesh the cluster runs too (its discovery server is found here,
        before anything is created; the image must carry the mesh client)."""
        try:
            api = preflight.connect(kubeconfig)
        except UserError as exc:
            raise _for_mesh(exc, mesh) from None
        xds = where = ""
        try:
            try:
                preflight.require_permissions(
                    api, preflight.REQUIRED + (preflight.MESH if mesh else ()))
            except UserError as exc:
                raise _for_mesh(exc, mesh) from None
            if mesh:
                xds, where = preflight.find_mesh(api, mesh)
            image = agent_image() if callable(agent_image) else agent_image
        except BaseException:
            api.close()
            raise
        options = AgentOptions(image=image, mesh_xds=xds, **agent)
        provider = cls(api, options, max_skew_ms, say)
        provider._mesh = {"name": mesh, "xds": xds, "found": where} if mesh else {}
        if mesh:
            say(f"mesh: {mesh} discovery server {xds} (Service {where})")
        provider._signals.install()
        try:
            provider._prepare(probe_interval_ms, modes)
        except BaseException:
            provider.close()
            raise
        return provider

    def _prepare(self, probe_interval_ms: float, modes: tuple[str, ...]) -> None:
        self._view = discovery.read_cluster(self.api)
        if self._view.mode:  # known without agents: refuse before creating anything
            self.check_modes(modes)
        self._footprint.namespaces_before = preflight.claim_namespace(
            self.api, self.options.namespace, deploy.PART_OF)
        self._deploy(self._own_token, probe_interval_ms)
        discovery.observe(self._view, self._transports, self.say)
        self.check_modes(modes)
        self._offsets = clocks.check_clocks(self._transports, self.max_skew_ms,
                                            probe_interval_ms, self.say)

    def _deploy(self, token: str, probe_interval_ms: float) -> None:
        self._transports = deploy.deploy(
            self.api, self.options, self.nodes(), token, probe_interval_ms,
            self._view.proxy.metrics_port, self._footprint, self.say)

    # --- the Provider protocol --------------------------------------------------------
    def nodes(self) -> list[str]:
        return list(self._view.nodes)

    def proxy_mode(self) -> str:
        return self._view.mode

    def set_proxy_mode(self, mode: str) -> None:
        facts.check_requested(mode, self._view.mode, self._view.mode_source)

    def check_modes(self, modes: tuple[str, ...]) -> None:
        """Refuse up front, before the run starts, any mode this cluster does not run."""
        for mode in modes:
            self.set_proxy_mode(mode)

    def start_agents(self, token: str, probe_interval_ms: float) -> list[Transport]:
        if not self._transports:
            self._deploy(token, probe_interval_ms)
        return list(self._transports)

    def stop_agents(self) -> None:
        self._transports = []
        cleanup.remove_agents(self.api, self.options, self._footprint)

    def kube(self) -> Kube:
        return self.api

    def mesh(self) -> dict[str, str] | None:
        """The cluster's own mesh (`open(mesh=...)`): no client path on this machine (the
        agent image carries it) and no log (istiod's log is not ours to read, so its
        control-plane stamps are absent). Optional Provider method."""
        if not self._mesh:
            return None
        return {"name": self._mesh["name"], "xds": self._mesh["xds"], "client": "", "log": ""}

    def watch_client(self) -> Kube:
        if self._watch is None:
            self._watch = self.api.for_watches()
        return self._watch

    def audit_log(self) -> Path | None:
        return None  # an arbitrary cluster's audit log is not ours to read

    def provenance(self) -> dict[str, Any]:
        return {**discovery.provenance(self._view, self.api.server),
                "agent_image": self.options.image, "agent_namespace": self.options.namespace,
                "agent_transport": "API server pod proxy",
                **clocks.provenance(self._offsets),
                "max_skew_ms": self.max_skew_ms, "harness_version": __version__,
                **({"mesh": self._mesh["name"], "mesh_xds": self._mesh["xds"],
                    "mesh_service": self._mesh["found"]} if self._mesh else {})}

    def kube_proxy_config(self) -> dict[str, Any]:
        """What run.json keeps per mode: the ConfigMap's config and each node's view."""
        return discovery.kube_proxy_config(self._view)

    def close(self) -> None:
        """Remove everything this provider (and the runner) created; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._signals.shield(cleanup.BUSY, self.say)
        try:
            self._transports = []
            cleanup.remove_all(self.api, self.options, self._footprint, self.say)
        finally:
            self._signals.restore()
            if self._watch is not None:
                self._watch.close()
            self.api.close()


def _for_mesh(exc: UserError, mesh: str) -> UserError:
    """A preflight refusal of a mesh run says what the mesh needed the cluster for."""
    if not mesh:
        return exc
    return UserError(f"{exc} (--mesh {mesh} with --kubeconfig finds the cluster's own "
                     "istiod through its API server)")
