"""API watch on pods and EndpointSlices: receive time (ns), resourceVersion, and what changed.

Stamps the harness clock the moment an event arrives, like clusterloader2's
`eventData{obj, recvTime}`. Pod events give T1/R1 (Ready flips, deletionTimestamp set)
plus the condition's lastTransitionTime (1 s resolution, a cross-check); slice events give
T2/R2 per endpoint IP plus the `endpoints.kubernetes.io/last-change-trigger-time`
annotation. A 410 Gone restarts the watch from a fresh list. Events are stamped as raw lines
arrive, before any decoding (bench.kubehttp).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from bench.ready import is_ready
from bench.results.schema import Ev, EventRow
from bench.sources.base import Registry, Sink, TrialRef, row
from bench.sources.registry import SourceContext, register

TRIGGER_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
# Receive time trails the write by the API server's dispatch to this watcher: 1-5 ms
# typically against the audit log's stageTimestamp on the local cluster, more when the
# machine is busy. Each run records the measured delays (run.json: watch_delay_ms).
WATCH_RESOLUTION_NS = 5_000_000


def _ts_ns(value: Any) -> int:
    if isinstance(value, str) and value:
        return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
    return 0


class ApiWatch:
    def __init__(self, http: httpx.Client, namespace: str, registry: Registry, sink: Sink,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.http, self.namespace, self.registry, self.sink, self.clock = (
            http, namespace, registry, sink, clock)
        self._stop = threading.Event()
        self._ready: dict[str, bool] = {}
        self._gone: set[tuple[str, str, int]] = set()  # (pod, scenario, trial) already unready
        self._slices: dict[str, dict[str, tuple[bool, str]]] = {}  # slice -> ip -> (ready, pod)
        self.restarts = 0
        self.errors = 0
        self.synced = threading.Event()
        self._synced = {"pods": threading.Event(), "slices": threading.Event()}
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        ns = self.namespace
        for name, path, handler in (
                ("pods", f"/api/v1/namespaces/{ns}/pods", self.on_pod),
                ("slices", f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
                 self.on_slice)):
            t = threading.Thread(target=self._loop, args=(name, path, handler), daemon=True,
                                 name=f"watch-{name}")
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)

    def events_for(self, ref: TrialRef, batch: list[EventRow]) -> list[EventRow]:
        return []  # every row went to the sink as it arrived

    def _loop(self, name: str, path: str, handler: Callable[[str, dict[str, Any], int], None]
              ) -> None:
        rv = ""
        while not self._stop.is_set():
            try:
                if not rv:
                    listing = self.http.get(path).raise_for_status().json()
                    rv = listing["metadata"]["resourceVersion"]
                    for obj in listing.get("items", []):
                        handler("ADDED", obj, self.clock())
                    self._synced[name].set()
                    if all(e.is_set() for e in self._synced.values()):
                        self.synced.set()
                params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true",
                          "timeoutSeconds": str(240 + secrets.randbelow(60))}
                with self.http.stream("GET", path, params=params) as resp:
                    resp.raise_for_status()
                    for line in resp.iter_lines():
                        t_ns = self.clock()  # stamped before decoding
                        if not line:
                            continue
                        ev = json.loads(line)
                        obj = ev.get("object") or {}
                        if ev.get("type") == "ERROR":
                            if obj.get("code") == 410:
                                self.restarts += 1
                            rv = ""
                            break
                        rv = obj.get("metadata", {}).get("resourceVersion") or rv
                        if ev.get("type") != "BOOKMARK":
                            handler(ev["type"], obj, t_ns)
                        if self._stop.is_set():
                            break
            except httpx.HTTPStatusError as exc:
                self.errors += 1
                if exc.response.status_code == 410:
                    self.restarts += 1
                    rv = ""
                time.sleep(0.2)
            except (httpx.HTTPError, ValueError, KeyError):
                self.errors += 1  # connection reset: continue from the same rv
                time.sleep(0.2)

    # --- pods ----------------------------------------------------------------------
    def on_pod(self, kind: str, pod: dict[str, Any], t_ns: int) -> None:
        meta, status = pod.get("metadata", {}), pod.get("status", {})
        name = meta.get("name", "")
        if self.registry.get(name) is None:
            return
        conds = {c.get("type"): c for c in status.get("conditions") or []}
        ready = is_ready(pod)
        was = self._ready.get(name, False)
        self._ready[name] = ready
        rv = meta.get("resourceVersion", "")
        ip = status.get("podIP", "")
        ref = self.registry.get(name, "add")
        if ready and not was and ref is not None:
            self.sink(row(ref, Ev.POD_READY, t_ns, source="api-watch", pod=name, pod_ip=ip,
                          resolution_ns=WATCH_RESOLUTION_NS, detail={"rv": rv}))
            ltt = _ts_ns(conds["Ready"].get("lastTransitionTime"))
            if ltt:
                self.sink(row(ref, Ev.READY_LTT, ltt, source="api-condition", pod=name,
                              pod_ip=ip, resolution_ns=1_000_000_000, detail={"rv": rv}))
        going = bool(meta.get("deletionTimestamp")) or kind == "DELETED"
        ref = self.registry.get(name, "remove")
        if ref is None:
            return
        gone_key = (name, ref.scenario, ref.trial)
        if gone_key not in self._gone and (going or (was and not ready)):
            self._gone.add(gone_key)
            self.sink(row(ref, Ev.POD_UNREADY, t_ns, source="api-watch", pod=name, pod_ip=ip,
                          resolution_ns=WATCH_RESOLUTION_NS,
                          detail={"rv": rv, "why": "deleting" if going else "unready"}))

    # --- EndpointSlices --------------------------------------------------------------
    def on_slice(self, kind: str, sl: dict[str, Any], t_ns: int) -> None:
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
        for ip in set(before) | set(now):
            was_ready, pod = before.get(ip, (False, ""))
            is_ready, pod = now.get(ip, (False, pod))
            if was_ready == is_ready:
                continue
            ref = self.registry.get(pod, "add" if is_ready else "remove")
            if ref is None:
                continue
            event = Ev.SLICE_READY if is_ready else Ev.SLICE_UNREADY
            detail = {"rv": rv, "slice": name, "present": ip in now}
            self.sink(row(ref, event, t_ns, source="api-watch", pod=pod, pod_ip=ip,
                          resolution_ns=WATCH_RESOLUTION_NS, detail=detail))
            if trigger:
                self.sink(row(ref, Ev.SLICE_TRIGGER, _ts_ns(trigger), source="api-annotation",
                              pod=pod, pod_ip=ip, resolution_ns=1_000_000, detail=detail))


def _open(ctx: SourceContext) -> ApiWatch:
    return ApiWatch(ctx.provider.watch_client(), ctx.namespace, ctx.trials, ctx.sink)


register("api-watch", _open)
