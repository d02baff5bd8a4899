"""A sweep point: the background a run's trials ran under, and its label in the results.

A sweep (`hopbench run --background-services 0,1000,5000`) runs the same trials at several
points; every event and hop row carries the point's label in its `point` column, so
analysis can group by it and results of different points never mix silently. A run
written before sweeps existed has "" there, which is `Point()`: no background.
Pure data: no I/O, so `analysis` may import it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_LABEL = re.compile(r"bg(?P<services>\d+)x(?P<endpoints>\d+)c(?P<churn>[0-9.eE+-]+)")


@dataclass(frozen=True)
class Point:
    """Background Services, endpoints per Service, and endpoint changes per second."""

    services: int = 0
    endpoints: int = 2
    churn_per_s: float = 0.0

    @property
    def label(self) -> str:
        """e.g. "bg1000x2c0": the value of the `point` column."""
        return f"bg{self.services}x{self.endpoints}c{self.churn_per_s:g}"

    @classmethod
    def parse(cls, label: str) -> Point:
        """The point a label names; "" (a run written before sweeps) is Point().

        Raises ValueError naming the label when it is not one `label` writes.
        """
        if label == "":
            return cls()
        m = _LABEL.fullmatch(label)
        churn = _float(m["churn"]) if m else None
        if m is None or churn is None or not math.isfinite(churn) or churn < 0:
            raise ValueError(f"not a sweep point label: {label!r} "
                             "(expected bg<services>x<endpoints>c<churn>, e.g. bg1000x2c0)")
        return cls(int(m["services"]), int(m["endpoints"]), churn)


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
