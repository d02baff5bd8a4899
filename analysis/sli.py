"""kube-proxy's own SLI histogram from run.json, read defensively, and the matching direct hop.

`kubeproxy_network_programming_duration_seconds` is a cross-check, never the measurement
(docs/design.md §2): its buckets are >= 250 ms wide and its start time is truncated to the
second. It measures from the endpoint change's trigger time (≈ pod Ready, T1) to the end
of the kube-proxy sync (T3[n]); `direct_programming` gives that same interval from the
hops, so the two can be drawn side by side.

run.json["sli"] is written by the harness; this reader accepts, per mode and node:
  {"buckets_s": [upper bounds...], "counts": [...], "cumulative": false}
- `counts` are per bucket (a histogram) unless "cumulative" is true (Prometheus `le`
  semantics, as scraped); one more count than buckets is the overflow (> last bucket);
  a bucket "+Inf" (string) is accepted as the overflow bound.
- the entries may be nested {mode: {node: entry}}, {mode: entry}, a bare entry (the run's
  single mode), or a list of entries carrying "proxy_mode" and "node" keys.
Anything else is skipped and reported as a problem string, never raised: a malformed
cross-check must not cost the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from analysis.frame import SCOPE_NODE, with_scope

#: kube-proxy's bucket bounds (pkg/proxy/metrics: 0.25, 0.5, 1..59, 60..115 by 5, 120..300 by 30)
KUBE_PROXY_BUCKETS_S: tuple[float, ...] = (
    0.25, 0.5, *map(float, range(1, 60)), *map(float, range(60, 120, 5)),
    *map(float, range(120, 301, 30)),
)

#: istiod's pilot_proxy_convergence_time bounds (pilot/pkg/xds/monitoring.go)
MESH_BUCKETS_S: tuple[float, ...] = (0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0)


@dataclass(frozen=True)
class SliHistogram:
    """One kube-proxy's histogram: per-bucket counts; `upper_s[-1]` is inf for the overflow."""

    run_id: str
    proxy_mode: str
    node: str
    upper_s: tuple[float, ...]
    counts: tuple[int, ...]

    @property
    def total(self) -> int:
        return int(sum(self.counts))


def parse_sli(meta: Mapping[str, Any], run_id: str) -> tuple[list[SliHistogram], list[str]]:
    """Histograms found in run.json["sli"], and a problem string for each entry skipped."""
    raw = meta.get("sli")
    if not raw:
        return [], []
    modes = [str(m) for m in meta.get("proxy_modes") or []]
    sole = modes[0] if len(modes) == 1 else ""
    found: list[SliHistogram] = []
    problems: list[str] = []
    for mode, node, entry in _entries(raw, sole, problems):
        hist = _histogram(run_id, mode, node, entry, problems)
        if hist is not None:
            found.append(hist)
    return found, problems


def parse_mesh_sli(meta: Mapping[str, Any], run_id: str
                   ) -> tuple[list[SliHistogram], list[str]]:
    """istiod's pilot_proxy_convergence_time over each mode (run.json
    `modes[mode]["mesh_sli"]`, node "istiod"), read like kube-proxy's. It covers a push
    from its start after the debounce to its send: the direct hop is `push_to_sent`."""
    modes = meta.get("modes") or {}
    raw = {str(m): b["mesh_sli"] for m, b in modes.items()
           if isinstance(b, Mapping) and b.get("mesh_sli")}
    return parse_sli({"sli": raw, "proxy_modes": list(raw)}, run_id) if raw else ([], [])


def direct_push(hops: pd.DataFrame) -> pd.DataFrame:
    """M2 → M3[n] (istiod's push start → EDS sent), every direction, per node.

    Columns as direct_programming's."""
    scoped = with_scope(hops)
    rows = scoped.loc[(scoped["hop"] == "push_to_sent") & (scoped["scope"] == SCOPE_NODE)]
    return rows[["run_id", "trial", "scenario", "proxy_mode", "node", "latency_ms",
                 "censored"]].reset_index(drop=True)


def pooled(hists: Sequence[SliHistogram], proxy_mode: str) -> SliHistogram | None:
    """Sum of one mode's histograms over nodes and runs (those sharing the first's buckets)."""
    same = [h for h in hists if h.proxy_mode == proxy_mode]
    if not same:
        return None
    first = same[0]
    total = np.zeros(len(first.counts), dtype=np.int64)
    for h in same:
        if h.upper_s == first.upper_s:
            total += np.asarray(h.counts, dtype=np.int64)
    return SliHistogram("*", proxy_mode, "*", first.upper_s, tuple(int(c) for c in total))


def direct_programming(hops: pd.DataFrame) -> pd.DataFrame:
    """T1 → T3[n] per add trial and node: ready_to_slice + slice_to_sync (NaN if either is).

    Columns: run_id, trial, scenario, proxy_mode, node, latency_ms, censored.
    """
    scoped = with_scope(hops)
    add = scoped.loc[scoped["direction"] == "add"]
    keys = ["run_id", "trial"]
    ready = add.loc[add["hop"] == "ready_to_slice", [*keys, "latency_ms", "censored"]]
    sync = add.loc[(add["hop"] == "slice_to_sync") & (add["scope"] == SCOPE_NODE),
                   [*keys, "scenario", "proxy_mode", "node", "latency_ms", "censored"]]
    both = sync.merge(ready, on=keys, suffixes=("", "_ready"), how="left")
    latency = both["latency_ms"] + both["latency_ms_ready"]
    censored = both["censored"].astype(bool) | both["censored_ready"].fillna(True).astype(bool)
    censored |= latency.isna()
    return both[[*keys, "scenario", "proxy_mode", "node"]].assign(
        latency_ms=latency.where(~censored), censored=censored).reset_index(drop=True)


def _entries(raw: Any, sole: str, problems: list[str]) -> list[tuple[str, str, Any]]:
    if isinstance(raw, list):
        out = []
        for i, item in enumerate(raw):
            if isinstance(item, Mapping):
                mode = str(item.get("proxy_mode", item.get("mode", sole)))
                out.append((mode, str(item.get("node", "")), item))
            else:
                problems.append(f"sli[{i}] is not an object")
        return out
    if not isinstance(raw, Mapping):
        problems.append(f"sli is a {type(raw).__name__}, expected an object or a list")
        return []
    if _is_entry(raw):
        return [(sole, "", raw)]
    out = []
    for mode, sub in raw.items():
        if _is_entry(sub):
            out.append((str(mode), "", sub))
        elif isinstance(sub, Mapping):
            out.extend((str(mode), str(node), entry) for node, entry in sub.items())
        else:
            problems.append(f"sli[{mode!r}] is neither a histogram nor {{node: histogram}}")
    return out


def _is_entry(value: Any) -> bool:
    return isinstance(value, Mapping) and "buckets_s" in value and "counts" in value


def _histogram(run_id: str, mode: str, node: str, entry: Any,
               problems: list[str]) -> SliHistogram | None:
    where = f"sli {mode or '?'}/{node or '*'}"
    if not _is_entry(entry):
        problems.append(f"{where}: needs buckets_s and counts")
        return None
    try:
        upper = [_bound(b) for b in entry["buckets_s"]]
        counts = [float(c) for c in entry["counts"]]
    except (TypeError, ValueError):
        problems.append(f"{where}: buckets_s and counts must be lists of numbers")
        return None
    if entry.get("cumulative"):
        counts = list(np.diff(np.asarray(counts), prepend=0.0))
    if len(counts) == len(upper) + 1:
        upper.append(math.inf)
    if (len(counts) != len(upper) or not upper or any(c < 0 for c in counts)
            or any(b <= a for a, b in pairwise(upper))):
        problems.append(f"{where}: {len(upper)} buckets, {len(counts)} counts, "
                        "or bounds not increasing, or negative counts")
        return None
    return SliHistogram(run_id, mode, node, tuple(upper), tuple(round(c) for c in counts))


def _bound(value: Any) -> float:
    if isinstance(value, str) and value.strip().lower() in {"+inf", "inf"}:
        return math.inf
    return float(value)
