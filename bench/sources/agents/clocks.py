"""How far each node's clock is from the harness's: the offset added to its stamps.

An agent on the harness's own kernel (same boot id: the local cluster, kind, any node
namespace or container of this host) stamps on the harness clock itself, so its offset is
exactly 0 with uncertainty 0 and its rows say clock "harness"; any other agent's offset
is estimated by round trips to it, and each row carries it with its uncertainty
(docs/design.md, "Clocks").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from bench.sources.agents.wire import Transport

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class ClockOffset:
    offset_ns: int       # add to a node timestamp to get harness time
    uncertainty_ns: int  # half the best round trip
    samples: int
    shared: bool = False  # the node stamps on the harness's own kernel clock

    @property
    def clock(self) -> str:
        """The `clock` column value of this node's rows."""
        return "harness" if self.shared else ""


SHARED_CLOCK = ClockOffset(offset_ns=0, uncertainty_ns=0, samples=0, shared=True)


def boot_id() -> str:
    """This kernel's boot id: equal boot ids mean one kernel, hence one CLOCK_REALTIME
    (time namespaces shift only the monotonic and boot clocks)."""
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def estimate_offset(t: Transport, samples: int = 15, harness_boot_id: str | None = None
                    ) -> ClockOffset:
    """SHARED_CLOCK when the agent runs on the harness's kernel (its /clock reply names the
    same boot id); otherwise NTP-style round trips, where the best (shortest) exchange
    bounds the offset tightest. An agent too old to report its boot id is estimated."""
    mine = boot_id() if harness_boot_id is None else harness_boot_id
    if mine and t.request("GET", "/clock").get("boot_id") == mine:
        return SHARED_CLOCK
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
