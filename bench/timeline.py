"""Timeline assembly: raw events in, one row per trial x node x hop out.

Sources only record what they saw and when (docs/design.md §4); every latency of the benchmark is
computed here, by one pure function driven by the hop declarations in `schema.HOPS`, so the
arithmetic can be tested from hand-written events and re-run on a stored `events.parquet`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.results.schema import (
    ALL_NODES,
    CLUSTER,
    EVENT_DTYPES,
    HOP_DTYPES,
    HOPS,
    NEEDS_MARKER,
    PATH_MARKER,
    Ev,
    Hop,
)

# Selection rules, as data (the hops themselves are data in schema.HOPS).
#: events at either end of a cluster-level hop are observed once, at node CLUSTER
CLUSTER_EVENTS = frozenset(e for h in HOPS if not h.per_node for e in (h.start, h.end))
#: the end of a window: the last one seen counts, not the first
LATEST = frozenset({Ev.LAST_SUCCESS, Ev.FAIL_LAST, Ev.MESH_LAST, Ev.MESH_FAIL_LAST})
#: the relevant event is the first one at or after this cluster event (older ones are stale)
#: (a restart's anchor is the node's own kube-proxy start: its first sync is the full sync)
ANCHOR = {Ev.PROXY_SYNC: {"add": Ev.SLICE_READY, "remove": Ev.SLICE_UNREADY,
                          "restart": Ev.PROXY_STARTED}}
#: (the mesh's control-plane stamps need no anchor here: bench.sources.istiod records only
#: the trial's own, and istiod may see the slice a little before the harness's watch does)
#: ...and among those (among all, without an anchor), the one nearest this node event
#: when there is one: the sync that
#: wrote the rule ends a few ms after the rule is live, while a sync that merely ended
#: after the harness saw the slice (it started earlier, or kube-proxy saw the slice later)
#: did not include the change and lies a whole sync period away from the rule.
NEAREST = {Ev.PROXY_SYNC: {"add": Ev.RULE_PRESENT, "remove": Ev.RULE_ABSENT},
           # istiod's sends to the node's client around the trial: the one the client
           # received (a push that began before the harness saw the slice may carry it)
           Ev.EDS_SENT: {"add": Ev.EDS_RECEIVED, "remove": Ev.EDS_RECEIVED}}
#: with no NEAREST event on the node: the first one at or after this event, if any
PREFER_AFTER = {Ev.EDS_SENT: Ev.MESH_PUSH}
#: per-node hops of these directions only on the nodes where this event happened: a
#: restart trial restarts kube-proxy on one node, the others are not part of it
ONLY_ON = {"restart": Ev.PROXY_KILLED}
#: a hop between two of these is a window of failures: none seen on a live node means 0 ms
ABSENT_MEANS_ZERO = frozenset({Ev.FAIL_FIRST, Ev.FAIL_LAST, Ev.MESH_FAIL_FIRST,
                               Ev.MESH_FAIL_LAST})
#: the hop ending at one of these carries the event's `value` (the failure count)
CARRIES_VALUE = frozenset({Ev.FAIL_LAST, Ev.MESH_FAIL_LAST})
#: bookkeeping events: they say nothing about whether a node's agent observed the trial
_NOT_OBSERVATIONS = frozenset({Ev.CENSOR, Ev.TRIAL_END})
_NS_PER_MS = 1e6
#: a trial: (run_id, trial, direction, proxy_mode, service, scenario, point); one run
#: measures several modes (and sweep points), with --parallel several Services, and a crash
#: or readiness-flap cycle an add and a removal of its own, all under the same trial numbers
TrialKey = tuple[str, int, str, str, str, str, str]


@dataclass(frozen=True)
class _Point:
    """One event of a trial, already on the harness clock."""

    t_ns: int
    clock: str
    resolution_ns: int
    uncertainty_ns: int
    value: float


@dataclass(frozen=True)
class _Trial:
    """All events of one (run_id, trial, direction), indexed for the hop loop."""

    key: TrialKey
    meta: dict[str, str]                          # service, scenario, proxy_mode, point
    points: dict[tuple[str, str], list[_Point]]   # (node, event) -> sorted by time
    censor: dict[str, str]                        # node (or CLUSTER) -> reason
    observed: dict[str, int]                      # node -> coarsest resolution_ns seen there


def coerce(df: pd.DataFrame, dtypes: Mapping[str, str]) -> pd.DataFrame:
    """Return a copy with exactly the `dtypes` columns, in order, with those dtypes.

    Missing text becomes ""; a missing column is a ValueError naming it.
    """
    missing = [c for c in dtypes if c not in df.columns]
    if missing:
        raise ValueError(f"missing columns: {', '.join(missing)}")
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    for col, dtype in dtypes.items():
        series = df[col].reset_index(drop=True)
        if dtype == "str":
            series = series.astype(object)
            series = series.where(series.notna(), "")
        out[col] = series.astype(pd.api.types.pandas_dtype(dtype))
    return out


def events_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Typed events table (schema.EVENT_COLUMNS) from EventRow-like mappings."""
    return coerce(pd.DataFrame(list(rows), columns=list(EVENT_DTYPES)), EVENT_DTYPES)


def assemble(events: pd.DataFrame) -> pd.DataFrame:
    """Turn raw events (schema.EVENT_COLUMNS) into hops (schema.HOP_COLUMNS).

    Rules, in the order they apply:
    - Times go to the harness clock: t_ns + offset_ns. A trial is (run_id, trial, direction,
      proxy_mode, service, scenario, point);
      run-level events (trial < 0 or no direction) only tell which nodes a run has.
    - Each hop of `schema.HOPS` whose direction matches yields one row (node CLUSTER) if it
      is cluster-level, else one row per node of the run plus an ALL_NODES row. Events of
      cluster-level hops (`CLUSTER_EVENTS`) are read at node CLUSTER even inside a per-node
      hop; every other event is read on the row's node. A node is any node named by an
      event of the run, so a node silent for a whole trial yields censored rows.
    - Several events of one name: the EARLIEST counts (first answer, first failure, starts),
      except `LATEST` (last_success, fail_last), which close a window, so the latest counts.
      `ANCHOR`: proxy_sync is a sync on the node at or after the trial's slice event (a
      restart's: the node's proxy_started); earlier (periodic or stale) syncs are ignored.
      No anchor event -> no sync is chosen.
      Among those, `NEAREST`: the one closest to the node's rule event when there is one,
      else the first.
    - A missing start or end -> censored, latency NaN, reason "missing <event>", or the
      detail of a `censor` event of that node, else of the trial (CLUSTER), when there is one.
      A censor event never censors a hop whose two events are present.
    - Hops of another path than kube-proxy's (`Hop.path`) only for trials with the path's
      `PATH_MARKER` event at node CLUSTER; hops from or to an event of `NEEDS_MARKER` only
      for trials with that marker too.
    - Negative intervals are kept, flagged "negative", never clamped.
    - resolution_ms = both endpoints' resolution, plus both clock-offset uncertainties when
      the endpoints come from different clocks (on one clock the offset cancels out).
    - The black-hole hop (both ends in `ABSENT_MEANS_ZERO`): a node that observed the trial
      but saw no failure gets 0.0 ms, value 0, not censored, with the coarsest resolution seen
      on that node; `value` is fail_last's failure count.
    - ALL_NODES = max over nodes (value and resolution_ms: max too), censored as
      "node <n>: <reason>" with the first censored node by name when any node is censored.
    Rows come sorted by (run_id, trial, direction), hops in schema order, nodes by name and
    ALL_NODES last. The input frame is not modified.
    """
    ev = coerce(events, EVENT_DTYPES)
    nodes = _nodes_by_run(ev)
    rows = [
        row
        for trial in _trials(ev)
        for row in _trial_rows(trial, nodes.get(trial.key[0], ()))
    ]
    return coerce(pd.DataFrame(rows, columns=list(HOP_DTYPES)), HOP_DTYPES)


def _nodes_by_run(ev: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    named = ev.loc[~ev["node"].isin([CLUSTER, ALL_NODES]), ["run_id", "node"]]
    return {
        str(run): tuple(sorted(set(group["node"])))
        for run, group in named.groupby("run_id", sort=True)
    }


def _trials(ev: pd.DataFrame) -> Iterator[_Trial]:
    directions = sorted({h.direction for h in HOPS})
    ev = ev.loc[(ev["trial"] >= 0) & ev["direction"].isin(directions)]
    ev = ev.assign(t_h=ev["t_ns"] + ev["offset_ns"]).sort_values("t_h", kind="stable")
    groups: dict[TrialKey, list[dict[str, Any]]] = {}
    columns = [*EVENT_DTYPES, "t_h"]
    for values in zip(*(ev[c].tolist() for c in columns), strict=True):  # in time order
        r = dict(zip(columns, values, strict=True))
        key = (str(r["run_id"]), int(r["trial"]), str(r["direction"]), str(r["proxy_mode"]),
               str(r["service"]), str(r["scenario"]), str(r["point"]))
        groups.setdefault(key, []).append(r)
    for key in sorted(groups):
        yield _index_trial(key, groups[key])


def _index_trial(key: TrialKey, group: list[dict[str, Any]]) -> _Trial:
    meta = {c: _first_nonempty(r[c] for r in group)
            for c in ("service", "scenario", "proxy_mode", "point")}
    points: dict[tuple[str, str], list[_Point]] = {}
    censor: dict[str, str] = {}
    observed: dict[str, int] = {}
    for r in group:
        node, event = str(r["node"]), str(r["event"])
        if event == Ev.CENSOR:
            censor.setdefault(node, _censor_reason(str(r["detail"])))
            continue
        if node != CLUSTER and event not in _NOT_OBSERVATIONS:
            observed[node] = max(observed.get(node, 0), int(r["resolution_ns"]))
        points.setdefault((node, event), []).append(
            _Point(int(r["t_h"]), str(r["clock"]), int(r["resolution_ns"]),
                   int(r["uncertainty_ns"]), float(r["value"]))
        )
    return _Trial(key, meta, points, censor, observed)


def _first_nonempty(values: Iterable[object]) -> str:
    return next((str(v) for v in values if str(v)), "")


def _censor_reason(detail: str) -> str:
    """The reason in a censor event's detail: JSON {"reason": ...}, a JSON string, or text."""
    try:
        parsed = json.loads(detail)
    except ValueError:
        parsed = detail
    if isinstance(parsed, dict) and "reason" in parsed:
        parsed = parsed["reason"]
    return str(parsed) if isinstance(parsed, str) and parsed else (detail or "censored")


def _trial_rows(trial: _Trial, nodes: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    only_on = ONLY_ON.get(trial.key[2])
    if only_on is not None:
        nodes = tuple(n for n in nodes if (n, only_on) in trial.points) or nodes
    for hop in HOPS:
        if hop.direction != trial.key[2]:
            continue
        markers = {PATH_MARKER.get(hop.path), NEEDS_MARKER.get(hop.start),
                   NEEDS_MARKER.get(hop.end)} - {None}
        if any((CLUSTER, m) not in trial.points for m in markers):
            continue
        if not hop.per_node:
            yield _row(trial, hop, CLUSTER)
            continue
        per_node = [_row(trial, hop, node) for node in nodes]
        yield from per_node
        yield _all_nodes(trial, hop, per_node)


def _base(trial: _Trial, hop: Hop, node: str) -> dict[str, Any]:
    run_id, number, direction = trial.key[:3]
    return {
        "run_id": run_id, "trial": number, **trial.meta, "direction": direction,
        "node": node, "hop": hop.name, "start_event": hop.start, "end_event": hop.end,
        "latency_ms": math.nan, "censored": False, "censor_reason": "", "flag": "",
        "resolution_ms": math.nan, "value": math.nan,
    }


def _pick(trial: _Trial, event: str, node: str) -> _Point | str:
    """The event that counts for this node, or why there is none (the censor reason)."""
    where = CLUSTER if event in CLUSTER_EVENTS else node
    points = trial.points.get((where, event), [])
    missing = f"missing {event}"
    anchor = ANCHOR.get(event, {}).get(trial.key[2])
    if anchor is not None:
        anchors = trial.points.get((CLUSTER if anchor in CLUSTER_EVENTS else node, anchor), [])
        after = anchors[0].t_ns if anchors else None
        points = [p for p in points if after is not None and p.t_ns >= after]
        missing = f"missing {event} at or after {anchor}" if anchors else f"missing {anchor}"
    near = trial.points.get((node, NEAREST.get(event, {}).get(trial.key[2], "")), [])
    if points and near:
        return min(points, key=lambda p: abs(p.t_ns - near[0].t_ns))
    prefer = PREFER_AFTER.get(event)
    if points and prefer is not None:
        marks = trial.points.get((CLUSTER if prefer in CLUSTER_EVENTS else node, prefer), [])
        later = [p for p in points if marks and p.t_ns >= marks[0].t_ns]
        if later:
            return later[0]
    if points:
        return points[-1] if event in LATEST else points[0]
    return trial.censor.get(where) or trial.censor.get(CLUSTER) or missing


def _no_failures(trial: _Trial, hop: Hop, node: str) -> bool:
    return (
        {hop.start, hop.end} <= ABSENT_MEANS_ZERO
        and node in trial.observed
        and not any((node, e) in trial.points for e in (hop.start, hop.end))
    )


def _row(trial: _Trial, hop: Hop, node: str) -> dict[str, Any]:
    row = _base(trial, hop, node)
    if _no_failures(trial, hop, node):
        resolution = trial.observed[node] / _NS_PER_MS
        return {**row, "latency_ms": 0.0, "resolution_ms": resolution, "value": 0.0}
    start, end = _pick(trial, hop.start, node), _pick(trial, hop.end, node)
    if isinstance(end, _Point) and hop.end in CARRIES_VALUE:
        row["value"] = end.value
    if isinstance(start, str) or isinstance(end, str):
        reason = start if isinstance(start, str) else end
        return {**row, "censored": True, "censor_reason": reason}
    latency = (end.t_ns - start.t_ns) / _NS_PER_MS
    uncertainty = 0 if start.clock == end.clock else start.uncertainty_ns + end.uncertainty_ns
    resolution = (start.resolution_ns + end.resolution_ns + uncertainty) / _NS_PER_MS
    flag = "negative" if latency < 0 else ""
    return {**row, "latency_ms": latency, "flag": flag, "resolution_ms": resolution}


def _all_nodes(trial: _Trial, hop: Hop, rows: list[dict[str, Any]]) -> dict[str, Any]:
    row = _base(trial, hop, ALL_NODES)
    if not rows:
        return {**row, "censored": True, "censor_reason": "no nodes observed in this run"}
    censored = next((r for r in rows if r["censored"]), None)
    if censored is not None:
        reason = f"node {censored['node']}: {censored['censor_reason']}"
        return {**row, "censored": True, "censor_reason": reason}
    latency = max(r["latency_ms"] for r in rows)
    values = [r["value"] for r in rows if not math.isnan(r["value"])]
    return {
        **row,
        "latency_ms": latency,
        "flag": "negative" if latency < 0 else "",
        "resolution_ms": max(r["resolution_ms"] for r in rows),
        "value": max(values) if values else math.nan,
    }
