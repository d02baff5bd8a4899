"""Churn as events: each trial gets one row saying how many background endpoint changes
(bench.background.churn) happened during it.

Registered as "churn"; applies only when the run churns (SourceContext.churner). The row
is cluster-level, event `churn`, stamped at the trial's first row, value = the changes
from that first row until the trial is closed, detail {"rate_per_s": R}.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from bench.results.schema import Ev, EventRow
from bench.sources.base import Source, TrialRef, row
from bench.sources.registry import SourceContext, register

if TYPE_CHECKING:
    from bench.background.churn import Churner


class ChurnSource:
    def __init__(self, churner: Churner) -> None:
        self.churner = churner

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def events_for(self, ref: TrialRef, batch: list[EventRow]) -> list[EventRow]:
        if not batch:
            return []
        t0 = min(r["t_ns"] + r["offset_ns"] for r in batch)  # on the harness clock
        n = self.churner.changes_between(t0, time.time_ns())
        return [row(ref, Ev.CHURN, t0, source="harness", value=n,
                    detail={"rate_per_s": self.churner.rate_per_s})]


def _open(ctx: SourceContext) -> Source | None:
    if ctx.churner is None or ctx.churner.rate_per_s <= 0:
        return None
    return ChurnSource(ctx.churner)


register("churn", _open)
