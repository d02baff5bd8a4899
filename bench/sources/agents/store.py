"""The one object a run holds for its node agents: control, collector and queries
behind the calls the scenario lanes and the runner make.

Thin on purpose: each call goes to the part that does the job (control.py, collector.py,
queries.py, events.py); this keeps the clock offsets and the lock in one place.
"""

from __future__ import annotations

from typing import Any

from bench.results.schema import EventRow
from bench.sources.agents import events, nodelog, queries
from bench.sources.agents.clocks import estimate_offset
from bench.sources.agents.collector import Collector
from bench.sources.agents.control import AgentControl
from bench.sources.agents.nodelog import NodeLog
from bench.sources.agents.wire import RulesSummary, Transport
from bench.sources.base import TrialRef
from bench.sources.registry import SourceContext, register


class AgentStore:
    def __init__(self, transports: list[Transport], poll_s: float = 0.1,
                 idle_poll_s: float = 0.5) -> None:
        self.transports = transports
        self.control = AgentControl(transports)
        self.collector = Collector(transports, poll_s, idle_poll_s)
        self._lock = self.collector.lock  # guards the node logs

    @property
    def nodes(self) -> dict[str, NodeLog]:
        return self.collector.nodes

    @property
    def errors(self) -> dict[str, int]:
        """Failed requests per node: collects and focuses."""
        c, f = self.collector.errors, self.control.errors
        return {t.node: c.get(t.node, 0) + f.get(t.node, 0) for t in self.transports}

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self.collector.start({t.node: estimate_offset(t) for t in self.transports})

    def stop(self) -> None:
        self.collector.stop()
        self.control.close()

    # --- control -----------------------------------------------------------------------
    def arm(self, targets: list[dict[str, Any]], interval_ms: float, max_seconds: float,
            max_requests: int, idle_interval_ms: float = 100.0,
            mesh_namespace: str = "") -> None:
        self.control.arm(targets, interval_ms, max_seconds, max_requests, idle_interval_ms,
                         mesh_namespace)

    def focus(self, target: str, seconds: float, after_sync: bool = False) -> None:
        """See AgentControl.focus; the collector follows at its fast rate meanwhile."""
        self.control.focus(target, seconds, after_sync)
        self.collector.focused(target, seconds > 0)

    def forget(self, target: str, pod: str, ip: str = "") -> None:
        """Drop what every agent (and this store) knows of a pod's answers."""
        self.control.forget(target, pod, ip)
        with self._lock:
            for log in self.nodes.values():
                nodelog.forget(log, target, pod, ip)

    def disarm(self) -> None:
        self.control.disarm()

    def kube_proxy_metrics(self) -> dict[str, str]:
        return self.control.kube_proxy_metrics()

    def rules_summary(self, namespace: str) -> dict[str, RulesSummary]:
        return self.control.rules_summary(namespace)
    def connect_histograms(self) -> dict[str, dict[str, Any]]:
        return self.control.connect_histograms()

    def collect_once(self) -> None:
        self.collector.collect_once()

    # --- queries used by the scenario ---------------------------------------------------
    def first_answer(self, node: str, target: str, pod: str) -> int | None:
        with self._lock:
            return queries.first_answer(self.nodes[node], target, pod)

    def last_answer(self, node: str, target: str, pod: str) -> int | None:
        with self._lock:
            return queries.last_answer(self.nodes[node], target, pod)

    def rule_change(self, node: str, ip: str, present: bool, since_ns: int) -> int | None:
        with self._lock:
            return queries.rule_change(self.nodes[node], ip, present, since_ns)

    def synced_after(self, node: str, ip: str, present: bool, since_ns: int) -> bool:
        with self._lock:
            return queries.synced_after(self.nodes[node], ip, present, since_ns)

    def mesh_first_answer(self, node: str, target: str, ip: str) -> int | None:
        with self._lock:
            return queries.mesh_first_answer(self.nodes[node], target, ip)

    def mesh_dropped(self, node: str, target: str, ip: str, since_ns: int) -> int | None:
        with self._lock:
            return queries.mesh_dropped(self.nodes[node], target, ip, since_ns)

    def cpu_fraction(self, node: str, mesh: bool = False) -> float:
        with self._lock:
            return queries.cpu_fraction(self.nodes[node], mesh)

    def trial_events(self, ref: TrialRef, target: str, pod: str, ip: str, start_ns: int,
                     end_ns: int) -> list[EventRow]:
        """What every node saw of this pod between start and end (harness clock)."""
        with self._lock:
            return events.trial_events(
                self.nodes, events.Ask(ref, target, pod, ip, start_ns, end_ns))

    # --- what the run records about the agents ------------------------------------------
    def resolutions(self) -> dict[str, Any]:
        with self._lock:
            return {n: {**log.info, "clock_offset_ns": log.offset.offset_ns,
                        "clock_uncertainty_ns": log.offset.uncertainty_ns}
                    for n, log in self.nodes.items()}

    def mesh_errors(self) -> dict[str, list[str]]:
        """What each node's mesh client reported going wrong (a node without any: absent)."""
        with self._lock:
            return {n: list(log.mesh.errors) for n, log in self.nodes.items() if log.mesh.errors}

    def events_for(self, ref: TrialRef, batch: list[EventRow]) -> list[EventRow]:
        return []  # a trial's rows come from trial_events, when the lane ends the trial

    def offsets(self) -> dict[str, dict[str, int | str]]:
        with self._lock:
            return {n: {"offset_ns": log.offset.offset_ns,
                        "uncertainty_ns": log.offset.uncertainty_ns,
                        "clock": log.offset.clock or f"node:{n}"}
                    for n, log in self.nodes.items()}


def _open(ctx: SourceContext) -> AgentStore:
    return AgentStore(ctx.provider.start_agents(ctx.token, ctx.probe_interval_ms))


register("agents", _open)
