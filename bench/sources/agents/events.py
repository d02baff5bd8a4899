"""Turn what the node agents reported into one trial's EventRows (T3..T5, R3..R5).

Pure: node logs in, rows out, nothing read from a clock or the network. A node stamp
belongs to a trial when, moved to the harness clock by the node's offset, it falls in
the trial's window; the row keeps the node's own stamp with its clock ("harness" where
the node shares the harness's kernel, else "node:<name>") and offset.

Per node and trial:
- PROXY_SYNC for every kube-proxy sync that ended in the window;
- RULE_PRESENT (add, restart) / RULE_ABSENT (remove): the first matching change of the pod IP;
- FIRST_SUCCESS (add and restart, in the window) / LAST_SUCCESS (remove, whenever it was);
- FAIL_FIRST and FAIL_LAST: the ends of the failed-request runs that began in the
  window (the run still open included), with their count and reasons.
An answer's resolution is the gap to the request before (first) or after (last) it on
the same target; the agent's probe interval when that gap is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.results.schema import ADDING, Ev, EventRow
from bench.sources.agents.nodelog import NodeLog
from bench.sources.agents.wire import FailRunReport, MeshStamp
from bench.sources.base import TrialRef, row

SYNC_RESOLUTION_NS = 1_000_000  # kube-proxy's sync timestamp (a float of seconds)


@dataclass(frozen=True)
class Ask:
    """One trial's question to the node logs: this pod, this IP, in this window."""

    ref: TrialRef
    target: str    # the Service the agents probe
    pod: str
    ip: str
    start_ns: int  # harness clock
    end_ns: int

    @property
    def adding(self) -> bool:
        return self.ref.direction in ADDING  # add, restart: the IP comes (back) in


@dataclass(frozen=True)
class NodeView:
    """One node's log as one trial sees it: the window test and the shared row fields."""

    log: NodeLog
    ask: Ask

    def inside(self, t_ns: int) -> bool:
        """A node stamp falls in the trial's window, on the harness clock."""
        return self.ask.start_ns <= t_ns + self.log.offset.offset_ns <= self.ask.end_ns

    @property
    def probe_resolution_ns(self) -> int:
        return int(self.log.info.get("probe_interval_ns") or 0)

    def row(self, event: str, t_ns: int, *, source: str, resolution_ns: int,
            value: float = math.nan, detail: dict[str, Any] | None = None) -> EventRow:
        node, off = self.log.node, self.log.offset
        return row(self.ask.ref, event, t_ns, source=source, resolution_ns=resolution_ns,
                   value=value, detail=detail, node=node, clock=off.clock or f"node:{node}",
                   offset_ns=off.offset_ns, uncertainty_ns=off.uncertainty_ns,
                   pod=self.ask.pod, pod_ip=self.ask.ip)


def trial_events(logs: Mapping[str, NodeLog], ask: Ask) -> list[EventRow]:
    """What every node saw of the trial's pod inside its window, node by node."""
    return [r for log in logs.values() for r in node_events(NodeView(log, ask))]


def node_events(v: NodeView) -> list[EventRow]:
    return [*sync_rows(v), *rule_rows(v), *answer_rows(v), *fail_rows(v), *mesh_rows(v)]


def sync_rows(v: NodeView) -> list[EventRow]:
    return [v.row(Ev.PROXY_SYNC, s["t_ns"], source="agent-metrics",
                  resolution_ns=SYNC_RESOLUTION_NS, value=s["syncs"],
                  detail={"seen_ns": s["seen_ns"]})
            for s in v.log.syncs if v.inside(s["t_ns"])]


def rule_rows(v: NodeView) -> list[EventRow]:
    """The first change of the pod IP the trial waits for (in or out of the rules)."""
    want = v.ask.adding
    for c in v.log.rule_changes:
        if c["ip"] == v.ask.ip and c["present"] == want and v.inside(c["t_ns"]):
            return [v.row(Ev.RULE_PRESENT if want else Ev.RULE_ABSENT, c["t_ns"],
                          source="agent-rules",
                          resolution_ns=int(v.log.info.get("rule_resolution_ns") or 0),
                          detail={"service": c["service"],
                                  "method": v.log.info.get("rule_method")})]
    return []


def answer_rows(v: NodeView) -> list[EventRow]:
    """An add's first answer from the pod (in the window); a removal's last one."""
    seen = v.log.pods.get(v.ask.target, {}).get(v.ask.pod)
    if not seen:
        return []
    if v.ask.adding:
        if not v.inside(seen["first_ns"]):
            return []
        return [v.row(Ev.FIRST_SUCCESS, seen["first_ns"], source="agent-prober",
                      resolution_ns=seen.get("first_gap_ns") or v.probe_resolution_ns,
                      value=seen["count"])]
    return [v.row(Ev.LAST_SUCCESS, seen["last_ns"], source="agent-prober",
                  resolution_ns=seen.get("last_gap_ns") or v.probe_resolution_ns,
                  value=seen["count"])]


def runs_in_window(v: NodeView, closed: Mapping[str, list[FailRunReport]] | None = None,
                   open_: Mapping[str, FailRunReport] | None = None) -> list[FailRunReport]:
    """The failure runs on the target that began in the window, the open one last (the
    prober's, or those given: the mesh client's)."""
    closed = v.log.fail_runs if closed is None else closed
    open_ = v.log.open_fail if open_ is None else open_
    runs = [r for r in closed.get(v.ask.target, []) if v.inside(r["first_ns"])]
    if (o := open_.get(v.ask.target)) and v.inside(o["first_ns"]):
        runs.append(o)
    return runs


@dataclass(frozen=True)
class FailWindow:
    """Failure runs merged: the earliest start, the latest end, counts and reasons."""

    first: FailRunReport
    last: FailRunReport
    count: int
    reasons: dict[str, int]
    runs: int


def merge_runs(runs: list[FailRunReport]) -> FailWindow:
    reasons: dict[str, int] = {}
    for r in runs:
        for k, n in r["reasons"].items():
            reasons[k] = reasons.get(k, 0) + n
    return FailWindow(first=min(runs, key=lambda r: r["first_ns"]),
                      last=max(runs, key=lambda r: r["last_ns"]),
                      count=sum(r["count"] for r in runs), reasons=reasons, runs=len(runs))


def fail_rows(v: NodeView, runs: list[FailRunReport] | None = None,
              events: tuple[str, str] = (Ev.FAIL_FIRST, Ev.FAIL_LAST),
              source: str = "agent-prober") -> list[EventRow]:
    """FAIL_FIRST and FAIL_LAST bound the failed requests (the black-hole window)."""
    runs = runs_in_window(v) if runs is None else runs
    if not runs:
        return []
    w = merge_runs(runs)
    first, last = events
    return [v.row(first, w.first["first_ns"], source=source,
                  resolution_ns=w.first.get("first_gap_ns") or v.probe_resolution_ns,
                  value=w.count, detail={"reasons": w.reasons}),
            v.row(last, w.last["last_ns"], source=source,
                  resolution_ns=w.last.get("last_gap_ns") or v.probe_resolution_ns,
                  value=w.count, detail={"runs": w.runs})]


MESH_SOURCE = "agent-meshclient"
MESH_STAMP_RESOLUTION_NS = 1_000  # the Go client's time.Now() at the callback


def _has_ip(addrs: list[str], ip: str) -> bool:
    return any(a.rsplit(":", 1)[0] == ip for a in addrs)


def mesh_rows(v: NodeView) -> list[EventRow]:
    """The mesh client's view of the trial's pod, by its IP (M4..M7 and failed RPCs):
    the first EDS update in the window that lists the IP (add) or no longer does
    (removal), the balancer's first change for it, the first picker with its connection
    (add), the first (last) answered RPC, and the failed RPCs' window."""
    m, ip, target, adding = v.log.mesh, v.ask.ip, v.ask.target, v.ask.adding
    if not ip or (not m.stamps and not m.pods):
        return []
    out: list[EventRow] = []
    mine = [s for s in m.stamps if s.get("target") == target and v.inside(s.get("t_ns", 0))]

    def match(event: str, s: MeshStamp) -> bool:
        if event == Ev.EDS_RECEIVED:
            return s.get("ev") == "eds" and _has_ip(s.get("addrs") or [], ip) == adding
        if event == Ev.LB_UPDATE:
            return s.get("ev") == ("lb_add" if adding else "lb_remove") and s.get("addr") == ip
        return adding and s.get("ev") == "picker_ready" and s.get("addr") == ip

    for event in (Ev.EDS_RECEIVED, Ev.LB_UPDATE, Ev.PICKER_READY):
        hit = next((s for s in mine if match(event, s)), None)
        if hit is not None:
            out.append(v.row(event, hit["t_ns"], source=MESH_SOURCE,
                             resolution_ns=MESH_STAMP_RESOLUTION_NS,
                             detail={"stamp": hit.get("ev")}))
    seen = m.pods.get(target, {}).get(ip)
    if seen and adding and v.inside(seen["first_ns"]):
        out.append(v.row(Ev.MESH_FIRST, seen["first_ns"], source=MESH_SOURCE,
                         resolution_ns=seen.get("first_gap_ns") or v.probe_resolution_ns,
                         value=seen["count"]))
    elif seen and not adding:
        out.append(v.row(Ev.MESH_LAST, seen["last_ns"], source=MESH_SOURCE,
                         resolution_ns=seen.get("last_gap_ns") or v.probe_resolution_ns,
                         value=seen["count"]))
    runs = runs_in_window(v, m.fail_runs, m.open_fail)
    out += fail_rows(v, runs, (Ev.MESH_FAIL_FIRST, Ev.MESH_FAIL_LAST), MESH_SOURCE)
    return out
