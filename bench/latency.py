"""The run's latency arithmetic on what it recorded: pure functions, no cluster, no I/O.

Why a module of its own: the runner records snapshots and events; turning them into the
numbers run.json keeps per mode (the API watch's delay behind the audit log, kube-proxy's
SLI histogram of this mode's trials) is arithmetic that is tested here on hand-written
inputs. Quantiles come from `analysis.quantiles`, the project's one quantile function
(inverted CDF, censored values at +inf), so run.json, the CLI and the report agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypedDict

import pandas as pd

from analysis.quantiles import quantiles, sample
from bench.results.schema import Ev

#: (watched event, audited write of the same change)
WATCHED = ((Ev.POD_READY, Ev.AUDIT_STATUS), (Ev.SLICE_READY, Ev.AUDIT_SLICE))
_TRANSITION = ["trial", "service", "scenario", "direction"]


class SliBuckets(TypedDict, total=False):
    """kube-proxy's network-programming histogram on one node.

    `buckets_s` are upper bounds ("+Inf" last); `counts` are cumulative as scraped, or per
    bucket when `cumulative` is False.
    """

    buckets_s: list[float | str]
    counts: list[float]
    cumulative: bool


def watch_delay(events: pd.DataFrame, mode: str, point: str = "") -> dict[str, float]:
    """Self-check of the API watch: receive time minus the audit log's stageTimestamp of the
    same write, per transition, for pod Ready and slice updates (ms).

    Per watched event: `<event>_p50`, `_p90`, `_max`, `_n`, and `_before_response` (how many
    delays are negative: the watch heard of the write before its response completed, the
    audit stamp being the completion; kept in the quantiles, and counted). A transition
    without both stamps has no delay (nothing censored: the audit entry was not matched).
    Only the mode's trials at sweep point `point` count: trial numbers repeat per point.
    """
    ev = events[events["proxy_mode"] == mode]
    if "point" in ev.columns:
        ev = ev[ev["point"].fillna("") == point]
    out: dict[str, float] = {}
    for watched, audited in WATCHED:
        seen = ev[ev["event"] == watched].groupby(_TRANSITION)["t_ns"].min()
        wrote = ev[ev["event"] == audited].groupby(_TRANSITION)["t_ns"].max()
        delay_ms = ((seen - wrote).dropna() / 1e6).to_numpy(dtype=float)
        out[f"{watched}_before_response"] = float((delay_ms < 0).sum())
        if delay_ms.size:
            p50, p90, top = quantiles(sample(delay_ms), [0.5, 0.9, 1.0])
            out[f"{watched}_p50"] = round(float(p50), 2)
            out[f"{watched}_p90"] = round(float(p90), 2)
            out[f"{watched}_max"] = round(float(top), 2)
            out[f"{watched}_n"] = float(delay_ms.size)
    return out


def decumulate(cumulative: Sequence[float]) -> list[float]:
    """Per-bucket counts from a Prometheus histogram's cumulative `le` counts."""
    return [c - (cumulative[i - 1] if i else 0.0) for i, c in enumerate(cumulative)]


def sli_delta(before: Mapping[str, SliBuckets], after: Mapping[str, SliBuckets]
              ) -> dict[str, SliBuckets]:
    """Per-bucket counts of this mode's trials only, per node of `after`.

    kube-proxy's counters run from its start, so the histogram is the difference of the end
    and start snapshots, de-cumulated. The whole `after` snapshot counts when `before` has
    no usable base for the node: the node is absent from it, its bucket layout differs, or
    its total went down (kube-proxy restarted in between: its counters began again).
    """
    out: dict[str, SliBuckets] = {}
    for node, a in after.items():
        b = before.get(node) or {}
        counts = list(a.get("counts", []))
        base = b.get("counts") if b.get("buckets_s") == a.get("buckets_s") else None
        if base and counts and counts[-1] < base[-1]:
            base = None  # counter reset
        cum = [x - (base[i] if base else 0.0) for i, x in enumerate(counts)]
        out[node] = {"buckets_s": list(a.get("buckets_s", [])), "counts": decumulate(cum),
                     "cumulative": False}
    return out


def add_sli(a: Mapping[str, SliBuckets], b: Mapping[str, SliBuckets]
            ) -> dict[str, SliBuckets]:
    """Two per-bucket deltas of one node set summed (kube-proxy restarted between them:
    the one before the restart, then the one after). A node in one only, or whose bucket
    layouts differ, keeps the later one's."""
    out: dict[str, SliBuckets] = {**a, **b}
    for node in set(a) & set(b):
        x, y = a[node], b[node]
        if x.get("buckets_s") == y.get("buckets_s"):
            out[node] = {"buckets_s": list(y.get("buckets_s", [])), "cumulative": False,
                         "counts": [p + q for p, q in zip(x.get("counts", []),
                                                          y.get("counts", []))]}
    return out

