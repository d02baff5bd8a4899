"""Drive trials: one endpoint transition of one Service at a time, per lane.

A lane owns one Service with an always-ready baseline pod, so the prober always has a
backend and the first answer from a new pod (or the last from a removed one) stands
out. Each iteration is a pair of trials on one fresh pod: an add (the pod is created
and becomes Ready: `scale-up`) and a removal (`delete`: graceful delete). Lanes run in
parallel on separate Services (`--parallel K`); within a lane one transition is in
flight at a time. A trial that times out is recorded with a censor reason, never dropped.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from kubernetes import client

from bench import workloads
from bench.errors import UserError
from bench.schema import CLUSTER, Ev, EventRow
from bench.sources.agents import AgentStore
from bench.sources.base import Registry, TrialRef, row

ADD_SCENARIOS = ("scale-up",)
REMOVE_SCENARIOS = ("delete",)
PLANNED = ("crash", "readiness-flap")


@dataclass(frozen=True)
class ScenarioConfig:
    add: str = "scale-up"
    remove: str = "delete"
    trials: int = 100
    parallel: int = 1
    spacing_s: float = 0.0
    trial_timeout_s: float = 30.0
    settle_s: float = 0.3
    probe_interval_ms: float = 5.0


def parse_scenarios(raw: str) -> tuple[str, str]:
    names = [s.strip() for s in raw.split(",") if s.strip()]
    for n in names:
        if n in PLANNED:
            raise UserError(f"scenario {n!r} is not implemented yet (available: "
                            f"{', '.join(ADD_SCENARIOS + REMOVE_SCENARIOS)})")
        if n not in ADD_SCENARIOS + REMOVE_SCENARIOS:
            raise UserError(f"unknown scenario {n!r} (available: "
                            f"{', '.join(ADD_SCENARIOS + REMOVE_SCENARIOS)})")
    add = next((n for n in names if n in ADD_SCENARIOS), "scale-up")
    remove = next((n for n in names if n in REMOVE_SCENARIOS), "delete")
    return add, remove


TrialDone = Callable[[TrialRef, list[EventRow]], None]


class Lane:
    def __init__(self, *, api: client.ApiClient, namespace: str, service: str, image: str,
                 agents: AgentStore, registry: Registry, run_id: str, mode: str,
                 cfg: ScenarioConfig, on_trial: TrialDone) -> None:
        self.core = client.CoreV1Api(api)
        self.api, self.namespace, self.service, self.image = api, namespace, service, image
        self.agents, self.registry, self.run_id, self.mode, self.cfg = (
            agents, registry, run_id, mode, cfg)
        self.on_trial = on_trial
        self.cluster_ip = ""

    # --- setup ---------------------------------------------------------------------------
    def setup(self) -> str:
        workloads.apply(self.api, workloads.render(
            "trial-service.yaml", SERVICE=self.service, NAMESPACE=self.namespace))
        self._create_pod(f"{self.service}-base", "base")
        self.cluster_ip = self.core.read_namespaced_service(
            self.service, self.namespace).spec.cluster_ip
        return self.cluster_ip

    def wait_base(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pod = self.core.read_namespaced_pod(f"{self.service}-base", self.namespace)
            if any(c.type == "Ready" and c.status == "True"
                   for c in (pod.status.conditions or [])):
                return
            time.sleep(0.2)
        raise UserError(f"baseline pod of {self.service} not Ready in {timeout:.0f}s")

    def _create_pod(self, name: str, role: str) -> None:
        workloads.apply(self.api, workloads.render(
            "trial-pod.yaml", NAME=name, NAMESPACE=self.namespace, SERVICE=self.service,
            ROLE=role, IMAGE=self.image))

    # --- one pair of trials --------------------------------------------------------------
    def run_pair(self, trial: int, skip_add: bool = False, skip_remove: bool = False) -> None:
        pod = f"{self.service}-t{trial}-{secrets.token_hex(2)}"
        add = TrialRef(self.run_id, trial, self.service, self.cfg.add, self.mode, "add")
        rm = TrialRef(self.run_id, trial, self.service, self.cfg.remove, self.mode, "remove")
        self.registry.set(pod, add)
        t0 = time.time_ns()
        self._create_pod(pod, "trial")
        ip, rows = self._wait_add(add, pod, t0)
        if not skip_add:
            self.on_trial(add, rows)
        if not ip:
            self._delete(pod)
            if not skip_remove:
                self.on_trial(rm, [self._censor(rm, CLUSTER, "pod never got an IP", pod)])
            return
        time.sleep(self.cfg.spacing_s)
        self.registry.set(pod, rm)
        t0 = time.time_ns()
        self._delete(pod)
        rows = self._wait_remove(rm, pod, ip, t0)
        if not skip_remove:
            self.on_trial(rm, rows)
        self.registry.drop(pod)
        time.sleep(self.cfg.spacing_s)

    def _delete(self, pod: str) -> None:
        try:
            self.core.delete_namespaced_pod(pod, self.namespace)
        except client.ApiException as exc:
            if exc.status != 404:
                raise

    def _trigger(self, ref: TrialRef, t0: int, pod: str, what: str) -> EventRow:
        return row(ref, Ev.TRIGGER, t0, source="harness", pod=pod, resolution_ns=0,
                   detail={"action": what})

    def _censor(self, ref: TrialRef, node: str, reason: str, pod: str) -> EventRow:
        return row(ref, Ev.CENSOR, time.time_ns(), source="harness", node=node, pod=pod,
                   detail={"reason": reason})

    def _pod_ip(self, pod: str) -> str:
        try:
            return self.core.read_namespaced_pod(pod, self.namespace).status.pod_ip or ""
        except client.ApiException:
            return ""

    def _wait_add(self, ref: TrialRef, pod: str, t0: int) -> tuple[str, list[EventRow]]:
        deadline = time.monotonic() + self.cfg.trial_timeout_s
        nodes = list(self.agents.nodes)
        ip = ""
        missing = nodes
        while time.monotonic() < deadline:
            ip = ip or self._pod_ip(pod)
            missing = [n for n in nodes
                       if self.agents.first_answer(n, self.service, pod) is None]
            if ip and not missing and all(self.agents.synced_after(n, ip, True, t0)
                                          for n in nodes):
                break
            time.sleep(0.05)
        self.agents.collect_once()
        end = time.time_ns()
        rows = [self._trigger(ref, t0, pod, "create pod")]
        rows += self.agents.trial_events(ref, self.service, pod, ip, t0, end)
        for n in missing:
            rows.append(self._censor(ref, n, f"timeout {self.cfg.trial_timeout_s:.0f}s: "
                                     "no answer from the new pod", pod))
        return ip, rows

    def _wait_remove(self, ref: TrialRef, pod: str, ip: str, t0: int) -> list[EventRow]:
        deadline = time.monotonic() + self.cfg.trial_timeout_s
        nodes = list(self.agents.nodes)
        gone_at: dict[str, int] = {}
        while time.monotonic() < deadline:
            for n in nodes:
                if n not in gone_at and self.agents.rule_change(n, ip, False, t0) is not None:
                    gone_at[n] = time.time_ns()
            if len(gone_at) == len(nodes) and (
                    time.time_ns() - max(gone_at.values())) / 1e9 >= self.cfg.settle_s and all(
                    self.agents.synced_after(n, ip, False, t0) for n in nodes):
                break
            time.sleep(0.05)
        self.agents.collect_once()
        end = time.time_ns()
        rows = [self._trigger(ref, t0, pod, "delete pod (graceful)")]
        rows += self.agents.trial_events(ref, self.service, pod, ip, t0, end)
        for n in nodes:
            if n not in gone_at:
                rows.append(self._censor(ref, n, f"timeout {self.cfg.trial_timeout_s:.0f}s: "
                                         "pod IP still in the node's rules", pod))
        return rows


def split_trials(trials: int, lanes: int) -> list[list[int]]:
    return [list(range(k, trials, lanes)) for k in range(lanes)]

