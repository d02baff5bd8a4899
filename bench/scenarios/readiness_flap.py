"""`readiness-flap` (a removal, then an add): the pod's readiness gate turns False, then
True again, while the container keeps running.

The gate is a pod condition the kubelet folds into Ready, like a failing probe; when
this scenario is selected the cycle's pod is created with it (bench.scenarios.lane.GATE).
"""

from __future__ import annotations

import time

from bench.scenarios.lane import GATE, Cycle
from bench.scenarios.registry import register
from bench.scenarios.roundtrip import Abort, RoundTrip


class ReadinessFlap(RoundTrip):
    name = "readiness-flap"
    order = 30
    gated = True

    def take_away(self, cycle: Cycle) -> tuple[str, Abort | None]:
        cycle.lane.set_gate(cycle.pod, False)
        return f"readiness gate {GATE}=False", None

    def bring_back(self, cycle: Cycle, t_removed: int) -> tuple[int, str]:
        t1 = time.time_ns()
        cycle.lane.set_gate(cycle.pod, True)
        return t1, f"readiness gate {GATE}=True"


register(ReadinessFlap())
