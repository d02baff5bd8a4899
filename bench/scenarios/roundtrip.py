"""What crash and readiness-flap share: a removal the pod comes back from.

The pod leaves the Service (its container exits, or its readiness gate turns False)
and later returns: two trials, a removal then an add, on the same pod and IP. A subclass
says how the pod is taken away and how it comes back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bench.scenarios.lane import Cycle

Abort = Callable[[], str]  # why to end the removal early, or ""


class RoundTrip:
    name = ""
    order = 50
    directions = ("remove", "add")
    always = False
    gated = False
    after_sync = True  # focus from kube-proxy's next possible sync (not if requests fail at once)

    def take_away(self, cycle: Cycle) -> tuple[str, Abort | None]:
        """Trigger the removal; return what was done and an early-end check."""
        raise NotImplementedError

    def bring_back(self, cycle: Cycle, t_removed: int) -> tuple[int, str]:
        """Trigger the return (or not, when it needs none); return its instant and what."""
        raise NotImplementedError

    def run(self, cycle: Cycle) -> None:
        lane = cycle.lane
        rm, back = cycle.ref(self.name, "remove"), cycle.ref(self.name, "add")
        cycle.expect(rm, then=back)
        lane.reset_ready()  # the pod may be Ready again during the removal
        lane.focus(True, after_sync=self.after_sync)
        t0 = time.time_ns()
        what, abort = self.take_away(cycle)
        cycle.keep(rm, lane.wait_remove(rm, cycle.pod, cycle.ip, t0, what, abort))
        lane.agents.forget(lane.service, cycle.pod, cycle.ip)  # next answer: a first again
        time.sleep(lane.cfg.spacing_s)
        cycle.expect(back)
        t1, what = self.bring_back(cycle, t0)
        _, rows = lane.wait_add(back, cycle.pod, t1, what)
        cycle.keep(back, rows)
