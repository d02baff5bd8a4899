"""`delete` (a removal): the cycle's pod is deleted gracefully.

It closes every cycle, selected or not: each cycle starts on a fresh pod.
"""

from __future__ import annotations

import time

from bench.scenarios.lane import Cycle
from bench.scenarios.registry import register


class Delete:
    name = "delete"
    order = 100
    directions = ("remove",)
    always = True  # cleanup of the cycle
    gated = False

    def run(self, cycle: Cycle) -> None:
        lane = cycle.lane
        rm = cycle.ref(self.name, "remove")
        cycle.expect(rm)
        lane.focus(True)
        t0 = time.time_ns()
        lane.delete_pod(cycle.pod)
        cycle.keep(rm, lane.wait_remove(rm, cycle.pod, cycle.ip, t0, "delete pod (graceful)"))


register(Delete())
