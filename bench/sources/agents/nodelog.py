"""What one node's agent reported during a run, accumulated from its /collect replies.

A reply holds only what changed since the previous one; `absorb` folds it into the
node's log. Pure data and pure functions: the collector thread calls them under its lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.sources.agents.clocks import ClockOffset
from bench.sources.agents.wire import (
    AgentInfo,
    CollectReply,
    FailRunReport,
    MeshStamp,
    PodSeen,
    RuleChange,
    SyncStamp,
    agent_info,
)


@dataclass
class NodeLog:
    """Everything one node's agent reported during the run (stamps on the node's clock)."""

    node: str
    offset: ClockOffset
    rule_changes: list[RuleChange] = field(default_factory=list)
    syncs: list[SyncStamp] = field(default_factory=list)
    pods: dict[str, dict[str, PodSeen]] = field(default_factory=dict)  # target -> pod ->
    fail_runs: dict[str, list[FailRunReport]] = field(default_factory=dict)
    open_fail: dict[str, FailRunReport] = field(default_factory=dict)
    info: AgentInfo = field(default_factory=lambda: AgentInfo())
    cpu: list[tuple[float, float]] = field(default_factory=list)  # (wall_s, cpu_s)
    mesh: MeshLog = field(default_factory=lambda: MeshLog())


@dataclass
class MeshLog:
    """What the node's mesh client reported: answers by pod IP, its xDS/LB stamps."""

    pods: dict[str, dict[str, PodSeen]] = field(default_factory=dict)  # target -> IP ->
    fail_runs: dict[str, list[FailRunReport]] = field(default_factory=dict)
    open_fail: dict[str, FailRunReport] = field(default_factory=dict)
    stamps: list[MeshStamp] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    cpu: list[tuple[float, float]] = field(default_factory=list)  # (agent wall_s, cpu_s)


def absorb(log: NodeLog, reply: CollectReply) -> None:
    """Fold one /collect reply into the log: changes are appended or replace older state."""
    log.rule_changes.extend(reply["rule_changes"])
    log.syncs.extend(reply["syncs"])
    probe = reply["probe"]
    for target, changed in probe["pods"].items():  # changes only
        log.pods.setdefault(target, {}).update(changed)
    for target, runs in probe["fail_runs"].items():
        log.fail_runs.setdefault(target, []).extend(runs)
    log.open_fail = probe["open_fail"]
    log.info = agent_info(reply)
    log.cpu.append((reply["wall_s"], reply["cpu_s"]))
    if (mesh := reply.get("mesh")) is not None:
        m = log.mesh
        for target, changed in (mesh.get("pods") or {}).items():
            m.pods.setdefault(target, {}).update(changed)
        for target, runs in (mesh.get("fail_runs") or {}).items():
            m.fail_runs.setdefault(target, []).extend(runs)
        m.open_fail = dict(mesh.get("open_fail") or {})
        m.stamps.extend(mesh.get("events") or [])
        m.errors.extend(mesh.get("errors") or [])
        m.requests = int(mesh.get("requests") or m.requests)
        if "cpu_s" in mesh:
            m.cpu.append((reply["wall_s"], float(mesh["cpu_s"])))


def forget(log: NodeLog, target: str, pod: str, ip: str = "") -> None:
    """Drop a pod's answers: its next answer is a first answer again (restarts)."""
    log.pods.get(target, {}).pop(pod, None)
    if ip:
        log.mesh.pods.get(target, {}).pop(ip, None)
