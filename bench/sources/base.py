"""What every source shares: the trial a pod belongs to, how a row is made, and the
small protocol the runner drives every source through (bench.sources.registry)."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bench.results.schema import CLUSTER, EventRow


@dataclass(frozen=True)
class TrialRef:
    """Which trial an observation belongs to."""

    run_id: str
    trial: int
    service: str
    scenario: str
    proxy_mode: str
    direction: str  # "add" | "remove" | "restart"
    point: str = ""  # sweep point label (bench.results.point); "" = no background


Sink = Callable[[EventRow], None]  # where a source hands each row it records


class Source(Protocol):
    """An event source as the runner sees it: started before the first trial, offered
    every finished trial, stopped after the last. A source records raw observations
    (through its Sink, or here) and computes nothing."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def events_for(self, ref: TrialRef, batch: list[EventRow]) -> list[EventRow]:
        """Rows this source adds to a finished trial, given the trial's rows so far."""
        ...


class Registry:
    """Pod name -> the trial it currently takes part in (set by the scenario driver), and
    the one that follows it: a crashed container can be Ready again before the removal
    trial is over, and that Ready belongs to the recovery trial."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_pod: dict[str, tuple[TrialRef, TrialRef | None]] = {}

    def set(self, pod: str, ref: TrialRef, then: TrialRef | None = None) -> None:
        with self._lock:
            self._by_pod[pod] = (ref, then)

    def get(self, pod: str, direction: str | None = None) -> TrialRef | None:
        """The current trial, or with `direction` the current or next one going that way."""
        with self._lock:
            now, then = self._by_pod.get(pod, (None, None))
        if direction is None or (now is not None and now.direction == direction):
            return now
        return then if then is not None and then.direction == direction else None

    def drop(self, pod: str) -> None:
        with self._lock:
            self._by_pod.pop(pod, None)


def row(ref: TrialRef, event: str, t_ns: int, *, source: str, node: str = CLUSTER,
        clock: str = "harness", resolution_ns: int = 0, offset_ns: int = 0,
        uncertainty_ns: int = 0, pod: str = "", pod_ip: str = "", value: float = math.nan,
        detail: dict[str, Any] | None = None) -> EventRow:
    return EventRow(run_id=ref.run_id, trial=ref.trial, service=ref.service,
                    scenario=ref.scenario, proxy_mode=ref.proxy_mode, point=ref.point,
                    direction=ref.direction,
                    node=node, event=event, t_ns=int(t_ns), clock=clock,
                    offset_ns=int(offset_ns), uncertainty_ns=int(uncertainty_ns),
                    resolution_ns=int(resolution_ns), source=source, pod=pod, pod_ip=pod_ip,
                    value=float(value), detail=json.dumps(detail or {}, sort_keys=True))
