"""From API watch lines to T1/R1 (pod) and T2/R2 (EndpointSlice) events, with no I/O.

The watch transport (bench.sources.apiwatch) stamps each raw line as it arrives and hands
it here; what a line means for a trial is decided by these pure trackers, which keep only
what the previous lines said (was the pod Ready, which IPs a slice had ready) and return
the rows to record. Tests feed them recorded watch lines (tests/fixtures).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from bench.ready import is_ready
from bench.results.schema import Ev, EventRow
from bench.sources.base import Registry, row

TRIGGER_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
# Receive time trails the write by the API server's dispatch to this watcher: 1-5 ms
# typically against the audit log's stageTimestamp on the local cluster, more when the
# machine is busy. Each run records the measured delays (run.json: watch_delay_ms).
WATCH_RESOLUTION_NS = 5_000_000


def ts_ns(value: Any) -> int:
    """An RFC 3339 timestamp in ns since the epoch; 0 for anything else."""
    if isinstance(value, str) and value:
        return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
    return 0


@dataclass(frozen=True)
class WatchEvent:
    """One decoded watch line and the time it was received (stamped before decoding)."""

    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK or ERROR
    obj: dict[str, Any]
    t_ns: int

    @property
    def resource_version(self) -> str:
        return str(self.obj.get("metadata", {}).get("resourceVersion") or "")


def decode(line: bytes | str, t_ns: int) -> WatchEvent | None:
    """A raw watch line as received; None for an empty (keep-alive) line.
    Raises ValueError for a line that is not JSON."""
    if not line.strip():
        return None
    ev = json.loads(line)
    return WatchEvent(str(ev.get("type", "")), ev.get("object") or {}, t_ns)


class PodEvents:
    """T1 (the pod's Ready condition turned True: POD_READY and its READY_LTT) and R1
    (deletionTimestamp set, deleted, or Ready turned False: POD_UNREADY, once per trial)
    for pods the registry knows."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._ready: dict[str, bool] = {}
        self._gone: set[tuple[str, str, int]] = set()  # (pod, scenario, trial) already unready

    def on_line(self, line: bytes | str, t_ns: int) -> list[EventRow]:
        ev = decode(line, t_ns)
        if ev is None or ev.type in ("BOOKMARK", "ERROR"):
            return []
        return self.on_event(ev.type, ev.obj, t_ns)

    def on_event(self, kind: str, pod: dict[str, Any], t_ns: int) -> list[EventRow]:
        meta, status = pod.get("metadata", {}), pod.get("status", {})
        name = meta.get("name", "")
        if self.registry.get(name) is None:
            return []
        out: list[EventRow] = []
        conds = {c.get("type"): c for c in status.get("conditions") or []}
        ready = is_ready(pod)
        was = self._ready.get(name, False)
        self._ready[name] = ready
        rv = meta.get("resourceVersion", "")
        ip = status.get("podIP", "")
        ref = self.registry.get(name, "add")
        if ready and not was and ref is not None:
            out.append(row(ref, Ev.POD_READY, t_ns, source="api-watch", pod=name, pod_ip=ip,
                           resolution_ns=WATCH_RESOLUTION_NS, detail={"rv": rv}))
            ltt = ts_ns(conds["Ready"].get("lastTransitionTime"))
            if ltt:
                out.append(row(ref, Ev.READY_LTT, ltt, source="api-condition", pod=name,
                               pod_ip=ip, resolution_ns=1_000_000_000, detail={"rv": rv}))
        going = bool(meta.get("deletionTimestamp")) or kind == "DELETED"
        ref = self.registry.get(name, "remove")
        if ref is None:
            return out
        gone_key = (name, ref.scenario, ref.trial)
        if gone_key not in self._gone and (going or (was and not ready)):
            self._gone.add(gone_key)
            out.append(row(ref, Ev.POD_UNREADY, t_ns, source="api-watch", pod=name, pod_ip=ip,
                           resolution_ns=WATCH_RESOLUTION_NS,
                           detail={"rv": rv, "why": "deleting" if going else "unready"}))
        return out


class SliceEvents:
    """T2/R2: an endpoint IP of a registered pod turned ready (SLICE_READY) or stopped being
    ready or left the slice (SLICE_UNREADY), each with the slice's last-change-trigger-time
    annotation (SLICE_TRIGGER) when it has one."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._slices: dict[str, dict[str, tuple[bool, str]]] = {}  # slice -> ip -> (ready, pod)

    def on_line(self, line: bytes | str, t_ns: int) -> list[EventRow]:
        ev = decode(line, t_ns)
        if ev is None or ev.type in ("BOOKMARK", "ERROR"):
            return []
        return self.on_event(ev.type, ev.obj, t_ns)

    def on_event(self, kind: str, sl: dict[str, Any], t_ns: int) -> list[EventRow]:
        meta = sl.get("metadata", {})
        name = meta.get("name", "")
        before = self._slices.get(name, {})
        now: dict[str, tuple[bool, str]] = {}
        if kind != "DELETED":
            for ep in sl.get("endpoints") or []:
                pod = (ep.get("targetRef") or {}).get("name", "")
                ready = bool((ep.get("conditions") or {}).get("ready"))
                for ip in ep.get("addresses") or []:
                    now[ip] = (ready, pod)
        self._slices[name] = now
        trigger = (meta.get("annotations") or {}).get(TRIGGER_ANNOTATION, "")
        rv = meta.get("resourceVersion", "")
        out: list[EventRow] = []
        for ip in sorted(set(before) | set(now)):
            was_ready, pod = before.get(ip, (False, ""))
            is_ready, pod = now.get(ip, (False, pod))
            if was_ready == is_ready:
                continue
            ref = self.registry.get(pod, "add" if is_ready else "remove")
            if ref is None:
                continue
            event = Ev.SLICE_READY if is_ready else Ev.SLICE_UNREADY
            detail = {"rv": rv, "slice": name, "present": ip in now}
            out.append(row(ref, event, t_ns, source="api-watch", pod=pod, pod_ip=ip,
                           resolution_ns=WATCH_RESOLUTION_NS, detail=detail))
            if trigger:
                out.append(row(ref, Ev.SLICE_TRIGGER, ts_ns(trigger), source="api-annotation",
                               pod=pod, pod_ip=ip, resolution_ns=1_000_000, detail=detail))
        return out
