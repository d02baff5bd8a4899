"""Churn: change R background endpoints per second while the trials run.

One thread, bounded: it stops by itself after `max_s` seconds or `max_changes` changes
(given at start), and on stop(). Each change toggles `conditions.ready` of one endpoint
of one background Service's slice (a merge patch of the slice's endpoint list), so each
change adds or removes one backend in every node's rules. The changes walk the Services
with a stride coprime to N (consecutive changes land far apart) and the endpoints in
turn. The harness-clock time (time.time_ns) after each write returned is recorded;
`changes_between` counts them in a window (bench.sources.churn puts that in each trial).
"""

from __future__ import annotations

import bisect
import math
import threading
import time

from bench.background import plan
from bench.background.populate import SLICES, Population
from bench.errors import UserError
from bench.kube import Kube

MAX_S = 6 * 3600.0


def stride(n: int) -> int:
    """A step near n/φ that is coprime to n: walking i -> i+step visits every Service."""
    if n <= 2:
        return 1
    step = max(1, int(n / 1.618))
    while math.gcd(step, n) != 1:
        step += 1
    return step


def schedule(k: int, services: int, endpoints: int) -> tuple[int, int]:
    """The (Service, endpoint) of the k-th change."""
    return (k * stride(services)) % services, (k // services) % endpoints


class Churner:
    def __init__(self, kube: Kube, population: Population, rate_per_s: float) -> None:
        if rate_per_s > 0 and population.services <= 0:
            raise UserError("--churn needs background Services (--background-services > 0)")
        self.kube = kube
        self.population = population
        self.rate_per_s = rate_per_s
        self.errors = 0
        self._times: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._not_ready: dict[int, set[int]] = {}

    @property
    def changes(self) -> int:
        with self._lock:
            return len(self._times)

    def start(self, max_s: float = MAX_S, max_changes: int | None = None) -> None:
        if self.rate_per_s <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(max_s, max_changes),
                                        daemon=True, name="bg-churn")
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop changing, then make every endpoint ready again: the next mode or sweep
        point reuses the population and must find it as the point describes it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.restore()

    def restore(self) -> int:
        """Rewrite the slices whose endpoints churn left not ready; how many were."""
        ns, m = self.population.namespace, self.population.endpoints
        restored = 0
        for i, off in list(self._not_ready.items()):
            if not off:
                continue
            try:
                self.kube.patch(f"{SLICES.format(ns=ns)}/{plan.service_name(i)}",
                                {"endpoints": plan.endpoint_list(i, m, frozenset())})
            except Exception:  # noqa: BLE001 - counted; the slice stays as churn left it
                self.errors += 1
                continue
            off.clear()
            restored += 1
        return restored

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def changes_between(self, t0_ns: int, t1_ns: int) -> int:
        """Changes recorded at t0_ns <= t < t1_ns (harness clock, ns since the epoch)."""
        with self._lock:
            return bisect.bisect_left(self._times, t1_ns) - bisect.bisect_left(self._times, t0_ns)

    def _loop(self, max_s: float, max_changes: int | None) -> None:
        n, m = self.population.services, self.population.endpoints
        ns = self.population.namespace
        t0 = time.monotonic()
        k = 0
        while not self._stop.is_set() and (max_changes is None or k < max_changes):
            due = t0 + k / self.rate_per_s
            now = time.monotonic()
            if now - t0 >= max_s:
                break
            if due > now and self._stop.wait(due - now):
                break
            i, j = schedule(k, n, m)
            off = self._not_ready.setdefault(i, set())
            off.symmetric_difference_update({j})
            path = f"{SLICES.format(ns=ns)}/{plan.service_name(i)}"
            try:
                self.kube.patch(path, {"endpoints": plan.endpoint_list(i, m, frozenset(off))})
            except Exception:  # noqa: BLE001 - counted; churn goes on
                off.symmetric_difference_update({j})
                self.errors += 1
            else:
                t_ns = time.time_ns()
                with self._lock:
                    bisect.insort(self._times, t_ns)
            k += 1
