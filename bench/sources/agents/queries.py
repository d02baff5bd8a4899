"""Questions a scenario asks of one node's log while it waits for a trial to end.

Pure functions of a NodeLog. Stamps returned are on the node's clock; `since_ns` is on
the harness clock (the node's offset is applied to compare).
"""

from __future__ import annotations

from bench.sources.agents.nodelog import NodeLog
from bench.sources.agents.wire import PodSeen

SYNC_SLACK_NS = 10_000_000  # see synced_after


def _seen(log: NodeLog, target: str, pod: str) -> PodSeen | None:
    return log.pods.get(target, {}).get(pod)


def first_answer(log: NodeLog, target: str, pod: str) -> int | None:
    seen = _seen(log, target, pod)
    return seen["first_ns"] if seen else None


def last_answer(log: NodeLog, target: str, pod: str) -> int | None:
    seen = _seen(log, target, pod)
    return seen["last_ns"] if seen else None


def rule_change(log: NodeLog, ip: str, present: bool, since_ns: int) -> int | None:
    """The first change of `ip` to `present` at or after `since_ns` (harness clock)."""
    off = log.offset.offset_ns
    for c in log.rule_changes:
        if c["ip"] == ip and c["present"] == present and c["t_ns"] + off >= since_ns:
            return int(c["t_ns"])
    return None


def synced_after(log: NodeLog, ip: str, present: bool, since_ns: int) -> bool:
    """The kube-proxy sync that made this node's rule change for `ip` has been seen (or
    the rule change has not been seen at all, when there is nothing to wait for).

    That sync ends (its metric stamp) just after its commit, and the agent's rule stamp
    may come up to its resolution after the commit: so a sync ending up to two
    resolutions plus 10 ms before the rule stamp counts. Syncs are at least
    --min-sync-period (1 s by default) apart, so no earlier sync can pass for it."""
    t = rule_change(log, ip, present, since_ns)
    if t is None:
        return True
    slack = 2 * int(log.info.get("rule_resolution_ns") or 0) + SYNC_SLACK_NS
    return any(s["t_ns"] >= t - slack for s in log.syncs)


def cpu_fraction(log: NodeLog, mesh: bool = False) -> float:
    """The agent's CPU share of one core between the first and the last collect (with
    `mesh`, its mesh client's)."""
    cpu = log.mesh.cpu if mesh else log.cpu
    if len(cpu) < 2 or cpu[-1][0] <= cpu[0][0]:
        return float("nan")
    return (cpu[-1][1] - cpu[0][1]) / (cpu[-1][0] - cpu[0][0])


def mesh_first_answer(log: NodeLog, target: str, ip: str) -> int | None:
    """The mesh client's first answer from the pod at `ip` (node clock), if any."""
    seen = log.mesh.pods.get(target, {}).get(ip)
    return seen["first_ns"] if seen else None


def mesh_dropped(log: NodeLog, target: str, ip: str, since_ns: int) -> int | None:
    """When the mesh client's load balancer dropped `ip` (lb_remove), at or after
    `since_ns` (harness clock); None until it has."""
    off = log.offset.offset_ns
    for s in log.mesh.stamps:
        if (s.get("ev") == "lb_remove" and s.get("target") == target
                and s.get("addr") == ip and s.get("t_ns", 0) + off >= since_ns):
            return int(s["t_ns"])
    return None
