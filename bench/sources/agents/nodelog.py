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


def forget(log: NodeLog, target: str, pod: str) -> None:
    """Drop a pod's answers: its next answer is a first answer again (restarts)."""
    log.pods.get(target, {}).pop(pod, None)
