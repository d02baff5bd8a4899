"""The API server's audit log: when the pod status and EndpointSlice writes were stored.

A cross-check of the watch receive times (T1, T2): the audit `stageTimestamp` of a
ResponseComplete entry is stamped by the API server itself, at microsecond resolution.
The policy logs metadata only, so the entry matched to an event is the latest write of
that object whose request the API server had received when the watch saw the change. (Not
the latest one *completed* by then: a watcher hears of a write when it is stored, a
little before the response completes, and matching on completion picked the previous
write of the object, a second or more earlier, for some events.)
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.results.schema import Ev, EventRow
from bench.sources import logtail
from bench.sources.base import TrialRef, row
from bench.sources.registry import SourceContext, register

MATCHES = {Ev.POD_READY: Ev.AUDIT_STATUS, Ev.SLICE_READY: Ev.AUDIT_SLICE,
           Ev.SLICE_UNREADY: Ev.AUDIT_SLICE}


def _ns(ts: str) -> int:
    when = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


@dataclass(frozen=True)
class Write:
    """A stored write of a pod's status or of an EndpointSlice, from one audit entry."""

    resource: str  # "pods" (the status subresource) or "endpointslices"
    name: str
    received_ns: int  # requestReceivedTimestamp (stageTimestamp when absent)
    done_ns: int  # stageTimestamp of ResponseComplete


Writes = dict[str, list[tuple[int, int]]]  # object name -> [(received_ns, done_ns)]


def parse_line(line: bytes | str, namespace: str) -> Write | None:
    """The write an audit log line records, if it is a successful pod status or
    EndpointSlice write in `namespace` (ResponseComplete); None for anything else."""
    try:
        e: dict[str, Any] = json.loads(line)
    except ValueError:
        return None
    ref = e.get("objectRef") or {}
    if e.get("stage") != "ResponseComplete" or ref.get("namespace") != namespace:
        return None
    code = (e.get("responseStatus") or {}).get("code", 200)
    if code >= 300:
        return None
    done = _ns(e["stageTimestamp"])
    received = _ns(e.get("requestReceivedTimestamp") or e["stageTimestamp"])
    if ref.get("resource") == "pods" and ref.get("subresource") == "status":
        return Write("pods", ref.get("name", ""), received, done)
    if ref.get("resource") == "endpointslices":
        return Write("endpointslices", ref.get("name", ""), received, done)
    return None


def match(ref: TrialRef, batch: list[EventRow], pod_writes: Writes,
          slice_writes: Writes) -> list[EventRow]:
    """For each watch event of the trial with an audit counterpart (MATCHES), the latest
    write of its object the API server had received by the event's receive time."""
    out: list[EventRow] = []
    for ev in batch:
        kind = MATCHES.get(ev["event"])
        if kind is None or ev["trial"] != ref.trial or ev["service"] != ref.service:
            continue
        if kind == Ev.AUDIT_STATUS:
            writes = pod_writes.get(ev["pod"], [])
            key = ev["pod"]
        else:
            key = json.loads(ev["detail"]).get("slice", "")
            writes = slice_writes.get(key, [])
        before = [w for w in writes if w[0] <= ev["t_ns"]]
        if before:
            received, done = max(before)
            out.append(row(ref, kind, done, source="audit", pod=ev["pod"],
                           pod_ip=ev["pod_ip"], resolution_ns=1_000,
                           detail={"object": key, "matched": ev["event"],
                                   "received_ns": received}))
    return out


class AuditTail:
    """Follows the audit log file, keeping the writes of one namespace."""

    def __init__(self, path: Path, namespace: str) -> None:
        self.path, self.namespace = path, namespace
        self.offset = path.stat().st_size if path.exists() else 0
        self.pod_writes: Writes = {}
        self.slice_writes: Writes = {}

    def start(self) -> None:
        pass  # read on demand, from the size the log had when the source was opened

    def stop(self) -> None:
        pass

    def read_new(self) -> None:
        lines, self.offset = logtail.new_lines(self.path, self.offset)
        for line in lines:
            self.add(line)

    def add(self, line: bytes | str) -> None:
        w = parse_line(line, self.namespace)
        if w is not None:
            writes = self.pod_writes if w.resource == "pods" else self.slice_writes
            writes.setdefault(w.name, []).append((w.received_ns, w.done_ns))

    def events_for(self, ref: TrialRef, batch: list[EventRow]) -> list[EventRow]:
        self.read_new()
        return match(ref, batch, self.pod_writes, self.slice_writes)


def _open(ctx: SourceContext) -> AuditTail | None:
    path = ctx.provider.audit_log()
    return AuditTail(path, ctx.namespace) if path else None  # not every cluster has one


register("audit", _open)
