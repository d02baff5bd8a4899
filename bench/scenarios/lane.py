"""A lane: one Service, its cycles of trials, and the helpers every scenario uses.

A lane owns one Service with an always-ready baseline pod, so the prober always has a
backend and the first answer from a new pod (or the last from a removed one) stands
out. Each iteration is a cycle on one fresh pod: the registered scenarios run on it in
their order (bench.scenarios.registry): scale-up creates it, the selected ones in between
take it away and bring it back, delete removes it. Lanes run in parallel on separate
Services (`--parallel K`); within a lane one transition is in flight at a time. A trial
that times out is recorded with a censor reason, never dropped.

The agents probe a lane's Service at the fine interval only while a transition can
show: from the trigger of a removal until the IP has left every node's rules, and from
the pod's Ready (seen on the API watch, before any rule can change) until every node got
its first answer; and within that, not before kube-proxy may next change the rules (its
last sync's end plus --min-sync-period; a crash is the exception: requests fail from
the exit on). In between they probe at the idle interval: pod start, readiness probe,
kube-proxy's wait and settling are most of a cycle, and the fine interval costs most of
an agent's CPU.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import workloads
from bench.errors import ClusterError, UserError
from bench.kube import STRATEGIC_PATCH, Kube
from bench.poll import WaitTimeout, wait_until
from bench.ready import is_ready
from bench.results.schema import CLUSTER, Ev, EventRow
from bench.scenarios import registry as scenarios
from bench.scenarios.config import ScenarioConfig
from bench.sources.agents import AgentStore
from bench.sources.base import Registry, TrialRef, row

GATE = "hopbench.io/ready"  # readiness gate a gated pod carries (see readiness_flap)

TrialDone = Callable[[TrialRef, list[EventRow]], None]


@dataclass
class Cycle:
    """One fresh pod going through one cycle's scenarios; `ip` is set once it has one."""

    lane: Lane
    trial: int
    pod: str
    gated: bool
    done: frozenset[str]  # scenarios this cycle already recorded (on resume)
    ip: str = ""

    def ref(self, scenario: str, direction: str) -> TrialRef:
        lane = self.lane
        return TrialRef(lane.run_id, self.trial, lane.service, scenario, lane.mode, direction,
                        lane.point)

    def expect(self, ref: TrialRef, then: TrialRef | None = None) -> None:
        """Sources attribute what they see of the pod to `ref` (then to `then`)."""
        self.lane.registry.set(self.pod, ref, then=then)

    def keep(self, ref: TrialRef, rows: list[EventRow]) -> None:
        """Store a finished trial, unless it is setup/cleanup or already recorded."""
        if ref.scenario in self.lane.cfg.selected(self.trial) and ref.scenario not in self.done:
            self.lane.on_trial(ref, rows)


class Lane:
    def __init__(self, *, api: Kube, namespace: str, service: str, image: str,
                 agents: AgentStore, registry: Registry, run_id: str, mode: str,
                 cfg: ScenarioConfig, on_trial: TrialDone, point: str = "",
                 provider: Any = None,
                 on_proxy_restart: Callable[[str], None] | None = None,
                 mesh: bool = False) -> None:
        self.mesh = mesh  # the pods serve gRPC too, and the agents' mesh clients call them
        self.on_proxy_restart = on_proxy_restart  # before kube-proxy restarts on a node
        self.provider = provider  # for scenarios that act on the cluster's nodes (proxy-restart)
        self.pods = f"/api/v1/namespaces/{namespace}/pods"
        self.api, self.namespace, self.service, self.image = api, namespace, service, image
        self.agents, self.registry, self.run_id, self.mode, self.cfg = (
            agents, registry, run_id, mode, cfg)
        self.on_trial = on_trial
        self.point = point  # sweep point label its trials carry
        self.cluster_ip = ""
        self._ready = threading.Event()  # the API watch saw the lane's pod become Ready
        self._focused = False

    def on_watch_row(self, r: EventRow) -> None:
        """Called by the API watch's sink for every row of this lane's Service."""
        if r["event"] == Ev.POD_READY and r["direction"] == "add":
            self._ready.set()

    def reset_ready(self) -> None:
        """Forget the Ready seen so far: wait_add focuses at the next one."""
        self._ready.clear()

    def focus(self, on: bool, after_sync: bool = True, seconds: float = 0.0) -> None:
        """Probe the lane's Service at the fine interval (for `seconds`, by default the
        trial timeout and 5 s), or stop."""
        if on != self._focused:
            self.agents.focus(self.service, (seconds or self.cfg.trial_timeout_s + 5)
                              if on else 0, after_sync=after_sync)
            self._focused = on

    # --- setup ---------------------------------------------------------------------------
    def setup(self) -> str:
        docs = workloads.render("trial-service.yaml", SERVICE=self.service,
                                NAMESPACE=self.namespace)
        if self.mesh:
            workloads.add_grpc_port(docs)
        workloads.apply(self.api, docs)
        self.create_pod(f"{self.service}-base", "base")
        svc = self.api.get(f"/api/v1/namespaces/{self.namespace}/services/{self.service}")
        self.cluster_ip = str(((svc or {}).get("spec") or {}).get("clusterIP") or "")
        return self.cluster_ip

    def wait_base(self, timeout: float = 120) -> None:
        name = f"{self.service}-base"
        try:
            wait_until(lambda: is_ready(self.read_pod(name)), timeout, 0.2,
                       f"baseline pod {name} to be Ready")
        except WaitTimeout as exc:
            raise UserError(f"baseline pod of {self.service} not Ready in {timeout:.0f}s") from exc

    # --- one cycle of trials on one fresh pod ------------------------------------------
    def run_cycle(self, trial: int, done: frozenset[str] = frozenset()) -> None:
        """Run the cycle's scenarios in order on one fresh pod, then make sure it is gone.

        Every transition is measured; those not requested (setup, cleanup) or already
        recorded (`done`, on resume) are simply not stored. If the pod never got an IP,
        the transitions after the first are recorded censored.
        """
        steps = scenarios.cycle(self.cfg.selected(trial))
        cyc = Cycle(self, trial, pod=f"{self.service}-t{trial}-{secrets.token_hex(2)}",
                    gated=any(s.gated for s in steps), done=done)
        try:
            for i, step in enumerate(steps):
                if i:
                    if not cyc.ip:
                        for r in (cyc.ref(s.name, d) for s in steps[i:] for d in s.directions):
                            cyc.keep(r, [self.censor(r, CLUSTER, "pod never got an IP",
                                                     cyc.pod)])
                        return
                    time.sleep(self.cfg.spacing_s)
                step.run(cyc)
        finally:
            self.focus(False)
            self.delete_pod(cyc.pod)
            self.registry.drop(cyc.pod)
            time.sleep(self.cfg.spacing_s)

    # --- the pod -------------------------------------------------------------------------
    def create_pod(self, name: str, role: str, gated: bool = False) -> None:
        docs = workloads.render("trial-pod.yaml", NAME=name, NAMESPACE=self.namespace,
                                SERVICE=self.service, ROLE=role, IMAGE=self.image)
        if gated:  # Ready also needs this condition, which the harness sets and clears
            docs[0]["spec"]["readinessGates"] = [{"conditionType": GATE}]
        if self.mesh:
            workloads.add_grpc(docs, self.image)
        workloads.apply(self.api, docs)

    def read_pod(self, pod: str) -> dict[str, Any]:
        """The pod, or {} when it is gone or the API server did not answer."""
        try:
            return self.api.get(f"{self.pods}/{pod}") or {}
        except ClusterError:
            return {}

    def set_gate(self, pod: str, ready: bool) -> None:
        self.api.patch(f"{self.pods}/{pod}/status", {"status": {"conditions": [
            {"type": GATE, "status": "True" if ready else "False"}]}}, STRATEGIC_PATCH)

    def delete_pod(self, pod: str) -> None:
        self.api.delete(f"{self.pods}/{pod}")  # False when it was already gone

    def pod_ip(self, pod: str) -> str:
        return str((self.read_pod(pod).get("status") or {}).get("podIP") or "")

    # --- rows ----------------------------------------------------------------------------
    def trigger(self, ref: TrialRef, t0: int, pod: str, what: str) -> EventRow:
        return row(ref, Ev.TRIGGER, t0, source="harness", pod=pod, resolution_ns=0,
                   detail={"action": what})

    def censor(self, ref: TrialRef, node: str, reason: str, pod: str) -> EventRow:
        return row(ref, Ev.CENSOR, time.time_ns(), source="harness", node=node, pod=pod,
                   detail={"reason": reason})

    # --- waiting for a transition to reach every node ------------------------------------
    def wait_add(self, ref: TrialRef, pod: str, t0: int, what: str,
                 since_ns: int | None = None) -> tuple[str, list[EventRow]]:
        """Until every node got an answer from the pod (and saw the sync that did it).
        `what` names the trigger at `t0`."""
        since = t0 if since_ns is None else since_ns
        deadline = time.monotonic() + self.cfg.trial_timeout_s
        nodes = list(self.agents.nodes)
        ip = ""
        missing = nodes
        answered = False  # every node has its first answer: T5 is known, focus is over
        while time.monotonic() < deadline:
            if not answered and not self._focused and self._ready.is_set():
                self.focus(True)
            ip = ip or self.pod_ip(pod)
            missing = [n for n in nodes
                       if self.agents.first_answer(n, self.service, pod) is None
                       or (self.mesh and ip
                           and self.agents.mesh_first_answer(n, self.service, ip) is None)]
            if ip and not missing:
                answered = True
                self.focus(False)
                if all(self.agents.synced_after(n, ip, True, since) for n in nodes):
                    break
            if answered or self._focused:
                time.sleep(0.05)
            else:
                self._ready.wait(0.05)  # wakes at the pod's Ready to focus at once
        self.focus(False)
        self.agents.collect_once()
        end = time.time_ns()
        rows = [self.trigger(ref, t0, pod, what)]
        rows += self.agents.trial_events(ref, self.service, pod, ip, since, end)
        for n in missing:
            rows.append(self.censor(ref, n, f"timeout {self.cfg.trial_timeout_s:.0f}s: "
                                    "no answer from the new pod", pod))
        return ip, rows

    def wait_remove(self, ref: TrialRef, pod: str, ip: str, t0: int, what: str,
                    abort: Callable[[], str] | None = None) -> list[EventRow]:
        """Until the IP left every node's rules (plus `settle_s` for the last answers).
        `what` names the trigger at `t0`; `abort` returns why to stop early, or ""."""
        deadline = time.monotonic() + self.cfg.trial_timeout_s
        nodes = list(self.agents.nodes)
        gone_at: dict[str, int] = {}
        reason = f"timeout {self.cfg.trial_timeout_s:.0f}s: pod IP still in the node's rules"
        next_check = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            if abort and time.monotonic() > next_check:
                next_check = time.monotonic() + 0.5
                if why := abort():
                    reason = why
                    break
            for n in nodes:
                if n not in gone_at and self.agents.rule_change(n, ip, False, t0) is not None \
                        and (not self.mesh
                             or self.agents.mesh_dropped(n, self.service, ip, t0) is not None):
                    gone_at[n] = time.time_ns()
            if len(gone_at) == len(nodes):
                self.focus(False)  # no new connection can reach the pod any more
                if (time.time_ns() - max(gone_at.values())) / 1e9 >= self.cfg.settle_s and all(
                        self.agents.synced_after(n, ip, False, t0) for n in nodes):
                    break
            time.sleep(0.05)
        self.focus(False)
        self.agents.collect_once()
        end = time.time_ns()
        rows = [self.trigger(ref, t0, pod, what)]
        rows += self.agents.trial_events(ref, self.service, pod, ip, t0, end)
        for n in nodes:
            if n not in gone_at:
                rows.append(self.censor(ref, n, reason, pod))
        return rows
