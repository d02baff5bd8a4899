"""Synthetic run directories for the analysis tests (never written under results/).

`make_run` writes run.json, events.parquet and hops.parquet shaped exactly like the
harness' (schema.EVENT_COLUMNS / HOP_COLUMNS, the rules of bench.timeline.assemble: one row
per cluster-level hop, one per node plus an all-nodes max for per-node hops, censored rows
with NaN latency and a reason, a 0 ms black-hole window on a node that saw no failure).
It is vectorised so 10,000 trials take about a second. Latencies are loosely realistic:
iptables syncs slower than nftables and ipvs, the last node is the slow one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.results.schema import (
    ALL_NODES,
    CLUSTER,
    EVENT_COLUMNS,
    HOP_COLUMNS,
    HOPS,
    SCHEMA_VERSION,
    Ev,
)

NS = 1_000_000  # ns per ms
SYNC_MEDIAN_MS = {"iptables": 180.0, "nftables": 60.0, "ipvs": 45.0}
RULE_MEDIAN_MS = {"iptables": 2.0, "nftables": 0.8, "ipvs": 1.5}
PROBE_MS = 5.0
#: resolution_ns by source
RES = {"harness": 0, "api-watch": 0, "kube-proxy-metrics": NS, "agent-rules": 100_000,
       "agent-prober": int(PROBE_MS * NS)}
KUBE_PROXY_BUCKETS_S = [0.25, 0.5, *range(1, 60), *range(60, 120, 5), *range(120, 301, 30)]
TIMEOUT_REASON = "timeout: no answer within 30 s"


@dataclass
class _Table:
    """Column arrays gathered per event (or hop) kind, concatenated once at the end."""

    parts: list[pd.DataFrame]

    def add(self, **cols: Any) -> None:
        sizes = [np.size(v) for v in cols.values() if np.ndim(v) > 0]
        n = min(sizes) if sizes else 1
        if n == 0:
            return
        self.parts.append(pd.DataFrame({k: np.broadcast_to(v, n) for k, v in cols.items()}))


def make_run(path: Path | str, *, trials: int = 120, nodes: int = 3,
             modes: tuple[str, ...] = ("iptables", "nftables"),
             scenarios: tuple[str, ...] = ("scale",),
             directions: tuple[str, ...] = ("add", "remove"),
             provider: str = "local", kubernetes_version: str = "v1.35.0",
             seed: int = 0, censor_frac: float = 0.02, negative_frac: float = 0.0,
             schema_version: int = SCHEMA_VERSION, sli: bool = True, run_id: str | None = None,
             extra_meta: dict[str, Any] | None = None) -> Path:
    """Write a synthetic run directory and return its path."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    rid = run_id or out.name
    rng = np.random.default_rng(seed)
    node_names = sorted(f"node-{k}" for k in range(nodes))  # assemble sorts by name
    combos = [(m, s, d) for m in modes for s in scenarios for d in directions]
    trial_ids = np.arange(trials)
    combo = trial_ids % len(combos)
    events, hops = _Table([]), _Table([])
    sli_values: dict[str, list[np.ndarray]] = {m: [] for m in modes}
    for c, (mode, scenario, direction) in enumerate(combos):
        ids = trial_ids[combo == c]
        if ids.size == 0:
            continue
        ctx = _Ctx(rid, mode, scenario, direction, ids, node_names, rng, censor_frac,
                   negative_frac)
        times = _add_times(ctx) if direction == "add" else _remove_times(ctx)
        _emit_events(ctx, times, events)
        _emit_hops(ctx, times, hops)
        if direction == "add":
            sli_values[mode].append((times[Ev.PROXY_SYNC] - times[Ev.POD_READY][:, None]) / NS)
    ev = pd.concat(events.parts, ignore_index=True).assign(point="")[EVENT_COLUMNS]
    hp = pd.concat(hops.parts, ignore_index=True).assign(point="")[HOP_COLUMNS]
    if schema_version < 2:  # before the sweep point column
        ev, hp = ev.drop(columns=["point"]), hp.drop(columns=["point"])
    if schema_version == 0:
        hp = hp.assign(latency_s=hp["latency_ms"] / 1000.0).drop(columns=["latency_ms"])
    ev.to_parquet(out / "events.parquet", index=False)
    hp.to_parquet(out / "hops.parquet", index=False)
    meta: dict[str, Any] = {
        "schema_version": schema_version, "run_id": rid, "status": "finished",
        "provider": provider, "kubernetes_version": kubernetes_version,
        "node_count": nodes, "nodes": node_names, "proxy_modes": list(modes),
        "scenarios": [{"name": s, "params": {"trials": trials}} for s in scenarios],
        "harness_version": "synthetic", "prober_interval_ms": PROBE_MS,
    }
    if sli:
        meta["sli"] = _sli(sli_values, node_names, rng)
    meta.update(extra_meta or {})
    (out / "run.json").write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n")
    return out


@dataclass
class _Ctx:
    run_id: str
    mode: str
    scenario: str
    direction: str
    ids: np.ndarray
    nodes: list[str]
    rng: np.random.Generator
    censor_frac: float
    negative_frac: float

    @property
    def shape(self) -> tuple[int, int]:
        return (self.ids.size, len(self.nodes))

    def lognormal(self, median_ms: float, sigma: float, shape: Any = None) -> np.ndarray:
        size = shape if shape is not None else self.ids.size
        return self.rng.lognormal(np.log(median_ms), sigma, size) * NS

    def sync(self) -> np.ndarray:
        slow = np.ones(len(self.nodes))
        slow[-1] = 1.8
        return self.lognormal(SYNC_MEDIAN_MS.get(self.mode, 100.0), 0.6, self.shape) * slow

    def censored(self) -> np.ndarray:
        return self.rng.random(self.shape) < self.censor_frac


def _add_times(ctx: _Ctx) -> dict[str, np.ndarray]:
    t0 = (1_750_000_000_000 + ctx.ids * 10_000).astype(np.float64) * NS
    ready = t0 + ctx.lognormal(900.0, 0.25)
    slice_ = ready + ctx.lognormal(12.0, 0.5)
    sync = slice_[:, None] + ctx.sync()
    rule = sync + ctx.lognormal(RULE_MEDIAN_MS.get(ctx.mode, 1.0), 0.5, ctx.shape)
    negative = ctx.rng.random(ctx.shape) < ctx.negative_frac
    rule = np.where(negative, sync - 2 * NS, rule)
    first = rule + ctx.rng.uniform(0.2, 0.2 + PROBE_MS, ctx.shape) * NS
    first[ctx.censored()] = np.nan
    return {Ev.TRIGGER: t0, Ev.POD_READY: ready, Ev.SLICE_READY: slice_,
            Ev.PROXY_SYNC: sync, Ev.RULE_PRESENT: rule, Ev.FIRST_SUCCESS: first,
            Ev.TRIAL_END: np.nanmax(rule, axis=1) + 50 * NS}


def _remove_times(ctx: _Ctx) -> dict[str, np.ndarray]:
    t0 = (1_750_000_000_000 + ctx.ids * 10_000).astype(np.float64) * NS
    unready = t0 + ctx.lognormal(40.0, 0.4)
    slice_ = unready + ctx.lognormal(10.0, 0.5)
    sync = slice_[:, None] + ctx.sync()
    gone = sync + ctx.lognormal(RULE_MEDIAN_MS.get(ctx.mode, 1.0), 0.5, ctx.shape)
    stops = unready[:, None] + ctx.lognormal(60.0, 0.8, ctx.shape)  # pod stops answering
    last = np.minimum(stops, gone) - ctx.rng.uniform(0, PROBE_MS, ctx.shape) * NS
    fail_first = stops + ctx.rng.uniform(0, PROBE_MS, ctx.shape) * NS
    fail_last = gone - ctx.rng.uniform(0, PROBE_MS, ctx.shape) * NS
    fails = fail_last > fail_first
    gone[ctx.censored()] = np.nan
    return {Ev.TRIGGER: t0, Ev.POD_UNREADY: unready, Ev.SLICE_UNREADY: slice_,
            Ev.PROXY_SYNC: sync, Ev.RULE_ABSENT: gone, Ev.LAST_SUCCESS: last,
            Ev.FAIL_FIRST: np.where(fails, fail_first, np.nan),
            Ev.FAIL_LAST: np.where(fails, fail_last, np.nan),
            "_fail_count": np.where(fails, np.floor((fail_last - fail_first) / (PROBE_MS * NS))
                                    + 1, np.nan),
            Ev.TRIAL_END: np.nanmax(sync, axis=1) + 60 * NS}


_SOURCE = {Ev.TRIGGER: "harness", Ev.TRIAL_END: "harness", Ev.POD_READY: "api-watch",
           Ev.SLICE_READY: "api-watch", Ev.POD_UNREADY: "api-watch",
           Ev.SLICE_UNREADY: "api-watch", Ev.PROXY_SYNC: "kube-proxy-metrics",
           Ev.RULE_PRESENT: "agent-rules", Ev.RULE_ABSENT: "agent-rules",
           Ev.FIRST_SUCCESS: "agent-prober", Ev.LAST_SUCCESS: "agent-prober",
           Ev.FAIL_FIRST: "agent-prober", Ev.FAIL_LAST: "agent-prober"}


def _common(ctx: _Ctx, ids: np.ndarray) -> dict[str, Any]:
    return {"run_id": ctx.run_id, "trial": ids.astype(np.int64),
            "service": np.char.add("svc-", (ids % 4).astype(str)), "scenario": ctx.scenario,
            "proxy_mode": ctx.mode, "direction": ctx.direction}


def _emit_events(ctx: _Ctx, times: dict[str, np.ndarray], out: _Table) -> None:
    count = times.get("_fail_count")
    for event, t in times.items():
        if event.startswith("_"):
            continue
        per_node = t.ndim == 2
        ids = np.repeat(ctx.ids, len(ctx.nodes)) if per_node else ctx.ids
        node = np.tile(ctx.nodes, ctx.ids.size) if per_node else np.full(ids.size, CLUSTER)
        flat = t.ravel()
        keep = ~np.isnan(flat)
        source = _SOURCE[event]
        value = count.ravel() if (event == Ev.FAIL_LAST and count is not None) else np.nan
        out.add(**{k: (v[keep] if np.ndim(v) else v) for k, v in {
            **_common(ctx, ids), "node": node, "event": event,
            "t_ns": np.round(np.nan_to_num(flat)).astype(np.int64),
            "clock": np.char.add("node:", node) if per_node else "harness",
            "offset_ns": 0, "uncertainty_ns": 0, "resolution_ns": RES[source],
            "source": source, "pod": "pod-x", "pod_ip": "10.244.0.9",
            "value": np.broadcast_to(value, flat.shape).astype(np.float64), "detail": "",
        }.items()})
    censored_end = Ev.FIRST_SUCCESS if ctx.direction == "add" else Ev.RULE_ABSENT
    miss = np.isnan(times[censored_end])
    rows, cols = np.nonzero(miss)
    if rows.size:
        node = np.asarray(ctx.nodes)[cols]
        out.add(**_common(ctx, ctx.ids[rows]), node=node, event=Ev.CENSOR,
                t_ns=np.round(times[Ev.TRIAL_END][rows]).astype(np.int64),
                clock=np.char.add("node:", node), offset_ns=0, uncertainty_ns=0,
                resolution_ns=0, source="harness", pod="pod-x", pod_ip="10.244.0.9",
                value=np.nan, detail=json.dumps({"reason": TIMEOUT_REASON}))


def _emit_hops(ctx: _Ctx, times: dict[str, np.ndarray], out: _Table) -> None:
    for hop in HOPS:
        if hop.direction != ctx.direction or hop.path != "kube-proxy":  # no mesh here
            continue
        start, end = times[hop.start], times[hop.end]
        res = _resolution(hop.start) + _resolution(hop.end)
        if not hop.per_node:
            lat = (end - start) / NS
            _hop_rows(ctx, hop, ctx.ids, np.full(ctx.ids.size, CLUSTER), lat, res,
                      np.full(lat.shape, np.nan), out)
            continue
        lat, value, res_arr = _node_latency(ctx, hop, times, start, end, res)
        ids = np.repeat(ctx.ids, len(ctx.nodes))
        _hop_rows(ctx, hop, ids, np.tile(ctx.nodes, ctx.ids.size), lat.ravel(),
                  res_arr.ravel(), value.ravel(), out)
        _all_nodes_rows(ctx, hop, lat, value, res_arr, out)


def _node_latency(ctx: _Ctx, hop: Any, times: dict[str, np.ndarray], start: np.ndarray,
                  end: np.ndarray, res: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    start2 = start if start.ndim == 2 else start[:, None]
    lat = np.broadcast_to((end - start2) / NS, ctx.shape).copy()
    res_arr = np.full(ctx.shape, res)
    value = np.full(ctx.shape, np.nan)
    if hop.end == Ev.FAIL_LAST:
        value = times["_fail_count"].copy()
        none = np.isnan(times[Ev.FAIL_FIRST])
        lat[none] = 0.0
        value[none] = 0.0
        res_arr[none] = max(RES["agent-prober"], RES["kube-proxy-metrics"]) / NS
    res_arr[np.isnan(lat)] = np.nan
    return lat, value, res_arr


def _resolution(event: str) -> float:
    return RES[_SOURCE[event]] / NS


def _hop_rows(ctx: _Ctx, hop: Any, ids: np.ndarray, node: np.ndarray, lat: np.ndarray,
              res: Any, value: np.ndarray, out: _Table) -> None:
    censored = np.isnan(lat)
    out.add(**_common(ctx, ids), node=node, hop=hop.name, start_event=hop.start,
            end_event=hop.end, latency_ms=lat, censored=censored,
            censor_reason=np.where(censored, TIMEOUT_REASON, ""),
            flag=np.where(lat < 0, "negative", ""),
            resolution_ms=np.where(censored, np.nan, res), value=value)


def _all_nodes_rows(ctx: _Ctx, hop: Any, lat: np.ndarray, value: np.ndarray,
                    res: np.ndarray, out: _Table) -> None:
    censored = np.isnan(lat).any(axis=1)
    first = np.argmax(np.isnan(lat), axis=1)
    reason = np.char.add(np.char.add("node ", np.asarray(ctx.nodes)[first]),
                         ": " + TIMEOUT_REASON)
    with np.errstate(invalid="ignore"):
        top = np.where(censored, np.nan, np.nanmax(np.where(np.isnan(lat), -np.inf, lat), 1))
        vmax = np.where(np.isnan(value).all(axis=1), np.nan,
                        np.nanmax(np.where(np.isnan(value), -np.inf, value), axis=1))
    out.add(**_common(ctx, ctx.ids), node=ALL_NODES, hop=hop.name, start_event=hop.start,
            end_event=hop.end, latency_ms=top, censored=censored,
            censor_reason=np.where(censored, reason, ""), flag=np.where(top < 0, "negative", ""),
            resolution_ms=np.where(censored, np.nan, np.nanmax(np.nan_to_num(res), axis=1)),
            value=np.where(censored, np.nan, vmax))


def _sli(values: dict[str, list[np.ndarray]], nodes: list[str],
         rng: np.random.Generator) -> dict[str, dict[str, dict[str, list[float] | list[int]]]]:
    """{mode: {node: {"buckets_s", "counts"}}}: per-bucket counts, last = over the top bucket.

    The SLI's start is truncated to the second, so it reads up to 1 s long.
    """
    edges = np.asarray(KUBE_PROXY_BUCKETS_S, dtype=float)
    out: dict[str, dict[str, dict[str, list[float] | list[int]]]] = {}
    for mode, parts in values.items():
        if not parts:
            continue
        ms = np.concatenate(parts)
        out[mode] = {}
        for k, node in enumerate(nodes):
            secs = ms[:, k] / 1000.0 + rng.uniform(0, 1, ms.shape[0])
            idx = np.searchsorted(edges, secs, side="left")
            counts = np.bincount(idx, minlength=edges.size + 1)
            out[mode][node] = {"buckets_s": edges.tolist(), "counts": counts.tolist()}
    return out


def hops_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A hops table (schema columns and dtypes) from hand-written partial rows.

    Defaults: run "r", add direction, scenario "s", mode "iptables", cluster node, not
    censored; `latency_ms` None means censored.
    """
    base = {"run_id": "r", "trial": 0, "service": "svc", "scenario": "s",
            "proxy_mode": "iptables", "direction": "add", "node": CLUSTER,
            "hop": "ready_to_slice", "start_event": "", "end_event": "", "latency_ms": np.nan,
            "censored": False, "censor_reason": "", "flag": "", "resolution_ms": 0.0,
            "value": np.nan}
    full = []
    for row in rows:
        merged = {**base, **row}
        if merged["latency_ms"] is None:
            merged["latency_ms"], merged["censored"] = np.nan, True
            merged["censor_reason"] = merged["censor_reason"] or TIMEOUT_REASON
        full.append(merged)
    df = pd.DataFrame(full, columns=HOP_COLUMNS)
    return df.astype({"trial": "int64", "latency_ms": "float64", "censored": "bool",
                      "resolution_ms": "float64", "value": "float64"})


def latencies(values: list[float | None], **common: Any) -> list[dict[str, Any]]:
    """One hand-written row per value, trials numbered 0.. (None = censored)."""
    return [{**common, "trial": i, "latency_ms": v} for i, v in enumerate(values)]


#: medians (ms) of the mesh's steps in `add_mesh`: istiod's debounce dominates
MESH_STEP_MS = {"seen": 1.0, "debounce": 100.0, "send": 1.0, "eds": 1.5, "lb": 1.0,
                "picker": 4.0, "rpc": 3.0}


def add_mesh(path: Path | str, seed: int = 0) -> Path:
    """Append mesh-path hop rows (schema Hop.path "mesh") to a `make_run` directory's
    hops.parquet, for every add and remove transition and node, as a run with --mesh has
    them beside kube-proxy's: cluster-level rows, one per node and the all-nodes max.

    Every mesh hop of the schema is derived from event times (ms after T2 / R2), so hops
    the schema adds between events are covered; the mesh shares T1 → T2 (R1 → R2) with
    kube-proxy's chain; no request fails (a 0 ms failure window) and nothing is censored."""
    out = Path(path)
    hops = pd.read_parquet(out / "hops.parquet")
    rng = np.random.default_rng(seed)
    rows = []
    for direction, first in (("add", "ready_to_slice"), ("remove", "unready_to_slice")):
        base = hops.loc[(hops["direction"] == direction) & (hops["hop"] == first)]
        nodes = sorted(set(hops.loc[hops["direction"] == direction, "node"])
                       - {CLUSTER, ALL_NODES})
        if base.empty or not nodes:
            continue
        n, k = len(base), len(nodes)

        def ms(step: str, shape: Any) -> np.ndarray:
            return np.asarray(rng.lognormal(np.log(MESH_STEP_MS[step]), 0.3, shape))

        t = {Ev.SLICE_READY if direction == "add" else Ev.SLICE_UNREADY: np.zeros((n, 1)),
             Ev.POD_READY if direction == "add" else Ev.POD_UNREADY:
                 -base["latency_ms"].to_numpy(float)[:, None],
             Ev.MESH_SLICE_SEEN: ms("seen", (n, 1))}
        t[Ev.MESH_PUSH] = t[Ev.MESH_SLICE_SEEN] + ms("debounce", (n, 1))
        t[Ev.EDS_SENT] = t[Ev.MESH_PUSH] + ms("send", (n, k))
        t[Ev.EDS_RECEIVED] = t[Ev.EDS_SENT] + ms("eds", (n, k))
        t[Ev.LB_UPDATE] = t[Ev.EDS_RECEIVED] + ms("lb", (n, k))
        t[Ev.PICKER_READY] = t[Ev.LB_UPDATE] + ms("picker", (n, k))
        t[Ev.MESH_FIRST] = t[Ev.PICKER_READY] + ms("rpc", (n, k))
        t[Ev.MESH_LAST] = t[Ev.LB_UPDATE] - 1.0
        keys = base[["run_id", "trial", "service", "scenario", "proxy_mode", "point",
                     "direction"]].reset_index(drop=True)
        for hop in HOPS:
            if hop.direction != direction or hop.path != "mesh":
                continue
            failures = hop.end == Ev.MESH_FAIL_LAST  # none: a 0 ms window, as assemble has it
            lat = np.zeros((n, k)) if failures else t[hop.end] - t[hop.start]
            common = {"hop": hop.name, "start_event": hop.start, "end_event": hop.end,
                      "censored": False, "censor_reason": "", "resolution_ms": 0.0,
                      "value": 0.0 if failures else np.nan}
            if not hop.per_node:
                rows.append(keys.assign(node=CLUSTER, latency_ms=lat[:, 0], **common))
                continue
            lat = np.broadcast_to(lat, (n, k))
            for j, node in enumerate([*nodes, ALL_NODES]):
                col = lat.max(axis=1) if node == ALL_NODES else lat[:, j]
                rows.append(keys.assign(node=node, latency_ms=col, **common))
    mesh = pd.concat(rows, ignore_index=True)
    mesh["flag"] = np.where(mesh["latency_ms"] < 0, "negative", "")
    pd.concat([hops, mesh[HOP_COLUMNS]], ignore_index=True).to_parquet(
        out / "hops.parquet", index=False)
    return out
