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
from pathlib import Path
from typing import Any

from bench.results.schema import Ev, EventRow
from bench.sources.base import TrialRef, row
from bench.sources.registry import SourceContext, register

MATCHES = {Ev.POD_READY: Ev.AUDIT_STATUS, Ev.SLICE_READY: Ev.AUDIT_SLICE,
           Ev.SLICE_UNREADY: Ev.AUDIT_SLICE}


def _ns(ts: str) -> int:
    when = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


class AuditTail:
    def __init__(self, path: Path, namespace: str) -> None:
        self.path, self.namespace = path, namespace
        self.offset = path.stat().st_size if path.exists() else 0
        # object name -> [(requestReceivedTimestamp, stageTimestamp)] in ns
        self.pod_writes: dict[str, list[tuple[int, int]]] = {}
        self.slice_writes: dict[str, list[tuple[int, int]]] = {}

    def start(self) -> None:
        pass  # read on demand, from the size the log had when the source was opened

    def stop(self) -> None:
        pass

    def read_new(self) -> None:
        if not self.path.exists():
            return
        size = self.path.stat().st_size
        if size < self.offset:  # rotated
            self.offset = 0
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            try:
                e: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            ref = e.get("objectRef") or {}
            if e.get("stage") != "ResponseComplete" or ref.get("namespace") != self.namespace:
                continue
            code = (e.get("responseStatus") or {}).get("code", 200)
            if code >= 300:
                continue
            done = _ns(e["stageTimestamp"])
            t = (_ns(e.get("requestReceivedTimestamp") or e["stageTimestamp"]), done)
            if ref.get("resource") == "pods" and ref.get("subresource") == "status":
                self.pod_writes.setdefault(ref.get("name", ""), []).append(t)
            elif ref.get("resource") == "endpointslices":
                self.slice_writes.setdefault(ref.get("name", ""), []).append(t)

    def events_for(self, ref: TrialRef, batch: list[EventRow]) -> list[EventRow]:
        self.read_new()
        out: list[EventRow] = []
        for ev in batch:
            kind = MATCHES.get(ev["event"])
            if kind is None or ev["trial"] != ref.trial or ev["service"] != ref.service:
                continue
            if kind == Ev.AUDIT_STATUS:
                writes = self.pod_writes.get(ev["pod"], [])
                key = ev["pod"]
            else:
                key = json.loads(ev["detail"]).get("slice", "")
                writes = self.slice_writes.get(key, [])
            before = [w for w in writes if w[0] <= ev["t_ns"]]
            if before:
                received, done = max(before)
                out.append(row(ref, kind, done, source="audit", pod=ev["pod"],
                               pod_ip=ev["pod_ip"], resolution_ns=1_000,
                               detail={"object": key, "matched": ev["event"],
                                       "received_ns": received}))
        return out


def _open(ctx: SourceContext) -> AuditTail | None:
    path = ctx.provider.audit_log()
    return AuditTail(path, ctx.namespace) if path else None  # not every cluster has one


register("audit", _open)
