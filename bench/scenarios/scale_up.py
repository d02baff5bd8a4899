"""`scale-up` (an add): the cycle's pod is created and becomes Ready.

It opens every cycle, selected or not: the other scenarios need the pod it creates.
"""

from __future__ import annotations

import time

from bench.scenarios.lane import Cycle
from bench.scenarios.registry import register


class ScaleUp:
    name = "scale-up"
    order = 0
    directions = ("add",)
    always = True  # setup of the cycle
    gated = False

    def run(self, cycle: Cycle) -> None:
        lane = cycle.lane
        add = cycle.ref(self.name, "add")
        cycle.expect(add)
        lane.reset_ready()
        t0 = time.time_ns()
        lane.create_pod(cycle.pod, "trial", cycle.gated)
        if cycle.gated:
            lane.set_gate(cycle.pod, True)
        cycle.ip, rows = lane.wait_add(add, cycle.pod, t0, "create pod")
        cycle.keep(add, rows)


register(ScaleUp())
