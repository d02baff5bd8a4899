"""TCP connect time through a ClusterIP, as a fixed log-bucket histogram per target.

The data path's cost per new connection (conntrack NEW, the DNAT decision in kube-proxy's
chains or maps) shows in how long connect() takes to get established. The prober opens a
new connection per request, so it times every one for free; keeping each time would cost
memory and bytes on /collect, so they go into fixed buckets: upper bounds from 10 µs to
10 s, 20 per decade (each bucket 12% wider than the one before), plus one overflow bucket.
Fixed bounds make histograms of different nodes, modes and runs add up bucket by bucket.
Stdlib only, like the rest of the agent.
"""

from __future__ import annotations

import math
import threading

LOW_NS = 10_000           # the first bucket's upper bound: 10 µs
PER_DECADE = 20
DECADES = 6               # 10 µs .. 10 s
N_BOUNDS = PER_DECADE * DECADES + 1
#: upper bounds (ms) of the buckets; counts have one more entry: above the last bound
BOUNDS_MS = [round(LOW_NS * 10 ** (i / PER_DECADE) / 1e6, 6) for i in range(N_BOUNDS)]
_BOUNDS_NS = [b * 1e6 for b in BOUNDS_MS]


def bucket(ns: int) -> int:
    """The index of the bucket holding a time of `ns` (upper bounds inclusive, as
    BOUNDS_MS states them; the logarithm only finds the neighbourhood)."""
    if ns <= LOW_NS:
        return 0
    i = min(max(math.ceil(PER_DECADE * math.log10(ns / LOW_NS)), 0), N_BOUNDS)
    if i > 0 and ns <= _BOUNDS_NS[i - 1]:
        i -= 1
    elif i < N_BOUNDS and ns > _BOUNDS_NS[i]:
        i += 1
    return i


class ConnectHistogram:
    """Counts per bucket, per target; `observe` is called from the prober's thread,
    `snapshot` from the HTTP server's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, list[int]] = {}

    def observe(self, target: str, ns: int) -> None:
        i = bucket(ns)
        with self._lock:
            counts = self._counts.get(target)
            if counts is None:
                counts = self._counts[target] = [0] * (N_BOUNDS + 1)
            counts[i] += 1

    def snapshot(self) -> dict[str, object]:
        """{"bounds_ms": [...], "targets": {target: counts}}: totals since the agent
        started (the harness takes differences)."""
        with self._lock:
            targets = {t: list(c) for t, c in self._counts.items()}
        return {"bounds_ms": BOUNDS_MS, "targets": targets}
