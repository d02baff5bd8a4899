"""How far each node's clock is from the harness's: the offset added to its stamps.

Every node stamp is stored with its node's clock, the offset to the harness clock and
the offset's uncertainty; this module estimates them, from round trips to the agent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.sources.agents.wire import Transport


@dataclass(frozen=True)
class ClockOffset:
    offset_ns: int       # add to a node timestamp to get harness time
    uncertainty_ns: int  # half the best round trip
    samples: int


def estimate_offset(t: Transport, samples: int = 15) -> ClockOffset:
    """NTP-style round trips: the best (shortest) exchange bounds the offset tightest."""
    best: tuple[int, int] | None = None
    for _ in range(samples):
        t0 = time.time_ns()
        remote = int(t.request("GET", "/clock")["t_ns"])
        t1 = time.time_ns()
        rtt = t1 - t0
        offset = (t0 + t1) // 2 - remote
        if best is None or rtt < best[0]:
            best = (rtt, offset)
    assert best is not None
    return ClockOffset(offset_ns=best[1], uncertainty_ns=best[0] // 2, samples=samples)
