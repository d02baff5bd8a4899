"""Wait until kube-proxy on every node has caught up with the background population.

Polls every node agent's `/rules-summary?ns=...` (bench.agent.summary) until each node's
rules route all N background Services, and times it: the seconds from the call until the
last node got there are the figure "time to program N Services". A node's time is that
of the first poll that saw it complete, so it is late by at most one poll interval plus
that node's dump time (`resolution_s`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from bench.poll import WaitTimeout
from bench.sources.agents.wire import RulesSummary

POLL_S = 0.25


class Summaries(Protocol):
    """AgentStore or AgentControl: each node's rules summary for a namespace."""

    def rules_summary(self, namespace: str) -> dict[str, RulesSummary]: ...


@dataclass
class Programmed:
    seconds: float                                         # until the last node was done
    node_seconds: dict[str, float] = field(default_factory=dict)
    routed: dict[str, int] = field(default_factory=dict)   # background Services routed
    rules: dict[str, int] = field(default_factory=dict)    # rule count at completion
    mode: dict[str, str] = field(default_factory=dict)
    resolution_s: float = 0.0                              # poll interval + slowest dump
    polls: int = 0


def wait_programmed(agents: Summaries, namespace: str, services: int, timeout_s: float,
                    *, poll_s: float = POLL_S,
                    clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], None] = time.sleep) -> Programmed:
    """Until every node routes `services` Services of `namespace`; WaitTimeout (one line,
    with each node's count) if that takes longer than `timeout_s`."""
    t0 = clock()
    out = Programmed(seconds=0.0)
    nodes: set[str] | None = None
    slowest_dump = 0.0
    while True:
        replies = agents.rules_summary(namespace)
        now = clock() - t0
        out.polls += 1
        if nodes is None and replies:
            nodes = set(replies)
        for node, r in replies.items():
            slowest_dump = max(slowest_dump, r["dump_ms"] / 1000)
            if node in out.node_seconds:
                continue
            out.routed[node], out.rules[node], out.mode[node] = (
                r["services_routed"], r["rules"], r["mode"])
            if r["services_routed"] >= services:
                out.node_seconds[node] = round(now, 3)
        if nodes is not None and nodes <= set(out.node_seconds):
            out.seconds = max(out.node_seconds.values(), default=0.0)
            out.resolution_s = round(poll_s + slowest_dump, 3)
            return out
        if now > timeout_s:
            counts = ", ".join(f"{n} {out.routed.get(n, '?')}" for n in sorted(nodes or ()))
            raise WaitTimeout(f"kube-proxy to route {services} background Services of "
                              f"{namespace} on every node (routed: {counts or 'no answer'})",
                              timeout_s)
        sleep(poll_s)
