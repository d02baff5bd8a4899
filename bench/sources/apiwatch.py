"""API watch on pods and EndpointSlices: receive time (ns), resourceVersion, and what changed.

Stamps the harness clock the moment an event arrives, like clusterloader2's
`eventData{obj, recvTime}`. Pod events give T1/R1 (Ready flips, deletionTimestamp set)
plus the condition's lastTransitionTime (1 s resolution, a cross-check); slice events give
T2/R2 per endpoint IP plus the `endpoints.kubernetes.io/last-change-trigger-time`
annotation. A 410 Gone restarts the watch from a fresh list. Events are stamped as raw lines
arrive, before any decoding (bench.kube).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.errors import ClusterError, UserError
from bench.kube import ApiStatusError, Kube
from bench.results.schema import EventRow
from bench.sources.base import Registry, Sink, TrialRef
from bench.sources.registry import SourceContext, register
from bench.sources.watchevents import WATCH_RESOLUTION_NS, PodEvents, SliceEvents

__all__ = ["WATCH_RESOLUTION_NS", "ApiWatch"]


class ApiWatch:
    def __init__(self, http: Kube, namespace: str, registry: Registry, sink: Sink,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.http, self.namespace, self.registry, self.sink, self.clock = (
            http, namespace, registry, sink, clock)
        self._stop = threading.Event()
        self._pods, self._slices = PodEvents(registry), SliceEvents(registry)
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
                    listing = self.http.get(path)
                    if listing is None:
                        raise ApiStatusError(f"GET {path}: HTTP 404", 404)
                    rv = listing["metadata"]["resourceVersion"]
                    for obj in listing.get("items", []):
                        handler("ADDED", obj, self.clock())
                    self._synced[name].set()
                    if all(e.is_set() for e in self._synced.values()):
                        self.synced.set()
                params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true",
                          "timeoutSeconds": str(240 + secrets.randbelow(60))}
                with self.http.watch(path, params, clock=self.clock) as lines:
                    for t_ns, line in lines:  # t_ns: stamped before decoding
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
            except ApiStatusError as exc:
                self.errors += 1
                if exc.status == 410:
                    self.restarts += 1
                    rv = ""
                time.sleep(0.2)
            except (ClusterError, UserError, ValueError, KeyError):
                self.errors += 1  # connection reset: continue from the same rv
                time.sleep(0.2)

    # --- what each event means: bench.sources.watchevents -----------------------------
    def on_pod(self, kind: str, pod: dict[str, Any], t_ns: int) -> None:
        for r in self._pods.on_event(kind, pod, t_ns):
            self.sink(r)

    def on_slice(self, kind: str, sl: dict[str, Any], t_ns: int) -> None:
        for r in self._slices.on_event(kind, sl, t_ns):
            self.sink(r)


def _open(ctx: SourceContext) -> ApiWatch:
    return ApiWatch(ctx.provider.watch_client(), ctx.namespace, ctx.trials, ctx.sink)


register("api-watch", _open)
