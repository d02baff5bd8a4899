"""Tell the node agents what to probe and how finely: arm, focus, forget, disarm.

Requests only; what the agents observe comes back through the collector. A focus goes
to every node at once (one request per node in parallel), and a node that misses it is
counted in `errors`, not fatal.
"""

from __future__ import annotations

import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.sources.agents.wire import RulesSummary, Transport

#: /arm takes one whole rule dump to find the targets' chains: 2.85 s for
#: `iptables-save -t nat` alone at 10,000 Services, and the 5 s default timed out there
ARM_TIMEOUT_S = 120.0


class AgentControl:
    def __init__(self, transports: list[Transport]) -> None:
        self.transports = transports
        # focus must reach every node at once: one request per node in parallel
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(16, len(transports))),
                                        thread_name_prefix="agent-focus")
        self._lock = threading.Lock()
        self.errors: dict[str, int] = {}  # node -> focus requests that failed

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def arm(self, targets: list[dict[str, Any]], interval_ms: float, max_seconds: float,
            max_requests: int, idle_interval_ms: float = 100.0,
            mesh_namespace: str = "") -> None:
        """Targets with a `mesh` entry ({host, port}) are probed by the mesh client too."""
        for t in self.transports:
            t.request("POST", "/arm", {"targets": targets, "interval_ms": interval_ms,
                                       "idle_interval_ms": idle_interval_ms,
                                       "max_seconds": max_seconds,
                                       "max_requests": max_requests,
                                       "mesh_namespace": mesh_namespace},
                      timeout=ARM_TIMEOUT_S)

    def focus(self, target: str, seconds: float, after_sync: bool = False) -> None:
        """Every agent probes `target` at the fine interval for up to `seconds` (0: back
        to the idle interval); with `after_sync`, from when its kube-proxy may next change
        the rules. Best effort: a node that misses it probes at the idle interval, and
        its answers then carry that coarser resolution."""
        def one(t: Transport) -> None:
            try:
                t.request("POST", "/focus", {"target": target, "seconds": seconds,
                                             "after_sync": after_sync}, timeout=2.0)
            except Exception:  # noqa: BLE001 - counted, not fatal
                with self._lock:
                    self.errors[t.node] = self.errors.get(t.node, 0) + 1

        for f in [self._pool.submit(one, t) for t in self.transports]:
            f.result()

    def forget(self, target: str, pod: str, ip: str = "") -> None:
        """Every agent drops what it knows of a pod's answers (the mesh client's by IP)."""
        for t in self.transports:
            t.request("POST", "/forget", {"target": target, "pod": pod, "ip": ip})

    def disarm(self) -> None:
        for t in self.transports:
            try:
                t.request("POST", "/disarm", {})
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass

    def kube_proxy_metrics(self) -> dict[str, str]:
        out = {}
        for t in self.transports:
            try:
                out[t.node] = t.request("GET", "/kube-proxy-metrics")
            except Exception as exc:  # noqa: BLE001 - recorded, not fatal
                out[t.node] = f"# error: {exc}"
        return out

    def rules_summary(self, namespace: str, timeout: float = 30.0) -> dict[str, RulesSummary]:
        """Every node's /rules-summary for `namespace`, asked in parallel; a node whose
        agent failed is missing (and counted in `errors`)."""
        path = "/rules-summary?" + urllib.parse.urlencode({"ns": namespace})

        def one(t: Transport) -> RulesSummary | None:
            try:
                reply: RulesSummary = t.request("GET", path, timeout=timeout)
                return reply
            except Exception:  # noqa: BLE001 - counted; the caller polls again
                with self._lock:
                    self.errors[t.node] = self.errors.get(t.node, 0) + 1
                return None

        futures = {t.node: self._pool.submit(one, t) for t in self.transports}
        return {node: r for node, f in futures.items() if (r := f.result()) is not None}

    def connect_histograms(self) -> dict[str, dict[str, Any]]:
        """Each prober's connect-time histograms (GET /connect); a node that does not
        answer is left out."""
        out = {}
        for t in self.transports:
            try:
                reply = t.request("GET", "/connect")
            except Exception:  # noqa: BLE001 - the node is absent from the figure, not fatal
                continue
            if isinstance(reply, dict):
                out[t.node] = reply
        return out
