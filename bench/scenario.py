"""Drive trials: one endpoint transition of one Service at a time, per lane.

A lane owns one Service with an always-ready baseline pod, so the prober always has a
backend and the first answer from a new pod (or the last from a removed one) stands
out. Each iteration is a cycle on one fresh pod: it is created and becomes Ready
(`scale-up`, an add); optionally its container exits and the kubelet restarts it
(`crash`: a removal, then an add), optionally its readiness gate turns False and True
again while the container keeps running (`readiness-flap`: a removal, then an add; the
gate is a pod condition the kubelet folds into Ready, like a failing probe); finally it
is deleted gracefully (`delete`, a removal). Lanes run in
parallel on separate Services (`--parallel K`); within a lane one transition is in
flight at a time. A trial that times out is recorded with a censor reason, never dropped.

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
from bench.sources.agents import AgentStore
from bench.sources.base import Registry, TrialRef, row

SCENARIOS = ("scale-up", "delete", "crash", "readiness-flap")
GATE = "hopbench.io/ready"  # readiness gate the readiness-flap scenario flips


@dataclass(frozen=True)
class ScenarioConfig:
    scenarios: tuple[str, ...] = ("scale-up", "delete")
    trials: int = 100
    parallel: int = 1
    spacing_s: float = 0.0
    trial_timeout_s: float = 30.0
    settle_s: float = 0.3
    probe_interval_ms: float = 5.0
    probe_idle_interval_ms: float = 100.0

    @property
    def transitions(self) -> list[tuple[str, str]]:
        """(scenario, direction) of every trial one cycle records, in order."""
        out = []
        for sc in self.scenarios:
            if sc == "scale-up":
                out.append((sc, "add"))
            elif sc == "delete":
                out.append((sc, "remove"))
            else:
                out += [(sc, "remove"), (sc, "add")]
        return out


def parse_scenarios(raw: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(s.strip() for s in raw.split(",") if s.strip()))
    for n in names:
        if n not in SCENARIOS:
            raise UserError(f"unknown scenario {n!r} (available: {', '.join(SCENARIOS)})")
    if not names:
        raise UserError("--scenario: name at least one of " + ", ".join(SCENARIOS))
    return names


TrialDone = Callable[[TrialRef, list[EventRow]], None]


class Lane:
    def __init__(self, *, api: Kube, namespace: str, service: str, image: str,
                 agents: AgentStore, registry: Registry, run_id: str, mode: str,
                 cfg: ScenarioConfig, on_trial: TrialDone) -> None:
        self.api, self.namespace, self.service, self.image = api, namespace, service, image
        self.agents, self.registry, self.run_id, self.mode, self.cfg = (
            agents, registry, run_id, mode, cfg)
        self.on_trial = on_trial
        self.cluster_ip = ""
        self._ready = threading.Event()  # the API watch saw the lane's pod become Ready
        self._focused = False

    def on_watch_row(self, r: EventRow) -> None:
        """Called by the API watch's sink for every row of this lane's Service."""
        if r["event"] == Ev.POD_READY and r["direction"] == "add":
            self._ready.set()

    def _focus(self, on: bool, after_sync: bool = True) -> None:
        if on != self._focused:
            self.agents.focus(self.service, self.cfg.trial_timeout_s + 5 if on else 0,
                              after_sync=after_sync)
            self._focused = on

    # --- setup ---------------------------------------------------------------------------
    def setup(self) -> str:
        workloads.apply(self.api, workloads.render(
            "trial-service.yaml", SERVICE=self.service, NAMESPACE=self.namespace))
        self._create_pod(f"{self.service}-base", "base")
        svc = self.api.get(f"/api/v1/namespaces/{self.namespace}/services/{self.service}")
        self.cluster_ip = str(((svc or {}).get("spec") or {}).get("clusterIP") or "")
        return self.cluster_ip

    def wait_base(self, timeout: float = 120) -> None:
        name = f"{self.service}-base"
        try:
            wait_until(lambda: is_ready(self._read_pod(name)), timeout, 0.2,
                       f"baseline pod {name} to be Ready")
        except WaitTimeout as exc:
            raise UserError(f"baseline pod of {self.service} not Ready in {timeout:.0f}s") from exc

    def _create_pod(self, name: str, role: str, gated: bool = False) -> None:
        docs = workloads.render("trial-pod.yaml", NAME=name, NAMESPACE=self.namespace,
                                SERVICE=self.service, ROLE=role, IMAGE=self.image)
        if gated:  # Ready also needs this condition, which the harness sets and clears
            docs[0]["spec"]["readinessGates"] = [{"conditionType": GATE}]
        workloads.apply(self.api, docs)

    # --- one cycle of trials on one fresh pod ------------------------------------------
    def run_cycle(self, trial: int, done: frozenset[str] = frozenset()) -> None:
        """Create a pod, put it through the requested transitions, delete it.

        Every transition is measured; those not requested (setup, cleanup) or already
        recorded (`done`, on resume) are simply not stored.
        """
        sc = self.cfg.scenarios
        pod = f"{self.service}-t{trial}-{secrets.token_hex(2)}"
        gated = "readiness-flap" in sc

        def ref(scenario: str, direction: str) -> TrialRef:
            return TrialRef(self.run_id, trial, self.service, scenario, self.mode, direction)

        def keep(r: TrialRef, rows: list[EventRow]) -> None:
            if r.scenario in sc and r.scenario not in done:
                self.on_trial(r, rows)

        add = ref("scale-up", "add")
        self.registry.set(pod, add)
        self._ready.clear()
        t0 = time.time_ns()
        self._create_pod(pod, "trial", gated)
        if gated:
            self._gate(pod, True)
        ip, rows = self._wait_add(add, pod, t0)
        keep(add, rows)
        try:
            if not ip:
                for name, direction in self.cfg.transitions:
                    r = ref(name, direction)
                    if name != "scale-up":
                        keep(r, [self._censor(r, CLUSTER, "pod never got an IP", pod)])
                return
            for name in ("crash", "readiness-flap"):
                if name in sc:
                    self._cycle(name, ref, keep, pod, ip)
            time.sleep(self.cfg.spacing_s)
            rm = ref("delete", "remove")
            self.registry.set(pod, rm)
            self._focus(True)
            t0 = time.time_ns()
            self._delete(pod)
            keep(rm, self._wait_remove(rm, pod, ip, t0, "delete pod (graceful)"))
        finally:
            self._focus(False)
            self._delete(pod)
            self.registry.drop(pod)
            time.sleep(self.cfg.spacing_s)

    def _cycle(self, name: str, ref: Callable[[str, str], TrialRef],
               keep: Callable[[TrialRef, list[EventRow]], None], pod: str, ip: str) -> None:
        """A removal the pod comes back from: the container exits (crash) or its
        readiness gate turns False (readiness-flap); then traffic returns."""
        time.sleep(self.cfg.spacing_s)
        rm, back = ref(name, "remove"), ref(name, "add")
        self.registry.set(pod, rm, then=back)
        self._ready.clear()  # a restarted container's Ready may come during the removal
        self._focus(True, after_sync=name != "crash")  # a crash fails requests at once
        t0 = time.time_ns()
        if name == "crash":
            self._crash(pod)
            restarts = self._restarts(pod)

            def abort() -> str:
                return ("container restarted and was Ready again before the IP left the rules"
                        if self._ready_again(pod, restarts) else "")

            rows = self._wait_remove(rm, pod, ip, t0, "container exit (agnhost /exit)", abort)
        else:
            self._gate(pod, False)
            rows = self._wait_remove(rm, pod, ip, t0, f"readiness gate {GATE}=False")
        keep(rm, rows)
        self.agents.forget(self.service, pod)  # the next answer is a first answer again
        time.sleep(self.cfg.spacing_s)
        self.registry.set(pod, back)
        if name == "crash":
            t1 = t0  # the kubelet restarts the container: the trigger was the crash
        else:
            t1 = time.time_ns()
            self._gate(pod, True)
        _, rows = self._wait_add(back, pod, t1)
        keep(back, rows)

    @property
    def _pods(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods"

    def _read_pod(self, pod: str) -> dict[str, Any]:
        """The pod, or {} when it is gone or the API server did not answer."""
        try:
            return self.api.get(f"{self._pods}/{pod}") or {}
        except ClusterError:
            return {}

    def _gate(self, pod: str, ready: bool) -> None:
        self.api.patch(f"{self._pods}/{pod}/status", {"status": {"conditions": [
            {"type": GATE, "status": "True" if ready else "False"}]}}, STRATEGIC_PATCH)

    def _crash(self, pod: str) -> None:
        try:
            self.api.request("GET", f"{self._pods}/{pod}:8080/proxy/exit", timeout=5)
        except ClusterError:  # the connection dies with the process, as intended
            pass

    def _restarts(self, pod: str) -> int:
        return _restart_count(self._read_pod(pod))

    def _ready_again(self, pod: str, restarts_before: int) -> bool:
        st = self._read_pod(pod)
        return _restart_count(st) > restarts_before and is_ready(st)

    def _delete(self, pod: str) -> None:
        self.api.delete(f"{self._pods}/{pod}")

    def _trigger(self, ref: TrialRef, t0: int, pod: str, what: str) -> EventRow:
        return row(ref, Ev.TRIGGER, t0, source="harness", pod=pod, resolution_ns=0,
                   detail={"action": what})

    def _censor(self, ref: TrialRef, node: str, reason: str, pod: str) -> EventRow:
        return row(ref, Ev.CENSOR, time.time_ns(), source="harness", node=node, pod=pod,
                   detail={"reason": reason})

    def _pod_ip(self, pod: str) -> str:
        return str((self._read_pod(pod).get("status") or {}).get("podIP") or "")

    def _wait_add(self, ref: TrialRef, pod: str, t0: int, since_ns: int | None = None
                  ) -> tuple[str, list[EventRow]]:
        """Until every node got an answer from the pod (and saw the sync that did it)."""
        since = t0 if since_ns is None else since_ns
        deadline = time.monotonic() + self.cfg.trial_timeout_s
        nodes = list(self.agents.nodes)
        ip = ""
        missing = nodes
        answered = False  # every node has its first answer: T5 is known, focus is over
        while time.monotonic() < deadline:
            if not answered and not self._focused and self._ready.is_set():
                self._focus(True)
            ip = ip or self._pod_ip(pod)
            missing = [n for n in nodes
                       if self.agents.first_answer(n, self.service, pod) is None]
            if ip and not missing:
                answered = True
                self._focus(False)
                if all(self.agents.synced_after(n, ip, True, since) for n in nodes):
                    break
            if answered or self._focused:
                time.sleep(0.05)
            else:
                self._ready.wait(0.05)  # wakes at the pod's Ready to focus at once
        self._focus(False)
        self.agents.collect_once()
        end = time.time_ns()
        what = {"scale-up": "create pod", "crash": "container exit; kubelet restarts it",
                "readiness-flap": f"readiness gate {GATE}=True"}[ref.scenario]
        rows = [self._trigger(ref, t0, pod, what)]
        rows += self.agents.trial_events(ref, self.service, pod, ip, since, end)
        for n in missing:
            rows.append(self._censor(ref, n, f"timeout {self.cfg.trial_timeout_s:.0f}s: "
                                     "no answer from the new pod", pod))
        return ip, rows

    def _wait_remove(self, ref: TrialRef, pod: str, ip: str, t0: int, what: str,
                     abort: Callable[[], str] | None = None) -> list[EventRow]:
        """Until the IP left every node's rules (plus `settle_s` for the last answers)."""
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
                if n not in gone_at and self.agents.rule_change(n, ip, False, t0) is not None:
                    gone_at[n] = time.time_ns()
            if len(gone_at) == len(nodes):
                self._focus(False)  # no new connection can reach the pod any more
                if (time.time_ns() - max(gone_at.values())) / 1e9 >= self.cfg.settle_s and all(
                        self.agents.synced_after(n, ip, False, t0) for n in nodes):
                    break
            time.sleep(0.05)
        self._focus(False)
        self.agents.collect_once()
        end = time.time_ns()
        rows = [self._trigger(ref, t0, pod, what)]
        rows += self.agents.trial_events(ref, self.service, pod, ip, t0, end)
        for n in nodes:
            if n not in gone_at:
                rows.append(self._censor(ref, n, reason, pod))
        return rows


def split_trials(trials: int, lanes: int) -> list[list[int]]:
    return [list(range(k, trials, lanes)) for k in range(lanes)]


def _restart_count(pod: dict[str, Any]) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(c.get("restartCount", 0)) for c in statuses)
