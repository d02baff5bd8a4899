"""How each figure grows with the number of background Services: a tidy table and exponents.

A sweep (`hopbench run --background-services 0,1000,5000`) measures the same things at
several points (`bench.results.point.Point`: background Services N, endpoints per Service M,
churn). `growth_table` gives one row per (mode, point, metric, statistic) with an estimate
and its bootstrap interval; `exponents` fits, per mode and metric, how it grows with N.

Where each metric comes from:

- from the trials (hops.parquet, rows of that point; the bootstrap resamples whole trials):
  `ready_to_first_answer` (add, `ready_to_traffic` on node "*": the slowest node),
  `slice_to_sync` (add, pooled over nodes), and one `restart:<hop>` per hop of the
  proxy-restart scenario (direction "restart", node "*" when the hop has it);
- from kube-proxy's own histograms in run.json (`proxy_stats[node].sync_full_s`,
  `sync_partial_s`, or `sync_all_s` when a mode reports neither; pooled over nodes) and the
  prober's `connect_ms` histograms: `analysis.quantiles.histogram_sample`, each observation
  at its bucket's upper bound, the overflow censored; the bootstrap resamples observations;
- one number per node or per cluster in run.json, without an interval: `program_s`, rule
  count, kube-proxy RSS and CPU, API server and etcd RSS. Per-node figures take the largest
  node (the one that limits the cluster), and the largest of the runs when several are
  pooled.

Quantiles follow THE one rule of `analysis.quantiles` (inverted CDF, censored as +inf): an
estimate that falls among censored trials is +inf and flagged, never read off the rest.
Points with different M or churn are separate series (`endpoints`, `churn_per_s` columns).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from analysis.frame import CHAIN_ORDER, CLUSTER_UNIT, SCOPE_NODE, mode_key, with_scope
from analysis.load import RunData
from analysis.quantiles import (
    FloatArray,
    Sample,
    bootstrap,
    histogram_sample,
    percentile_ci,
    quantiles,
    sample,
)
from analysis.stats import Settings
from analysis.stats import _rng as group_rng
from bench.results.point import Point
from bench.results.schema import ALL_NODES

RESTART = "restart"              # direction of the proxy-restart scenario's hops
RESTART_PREFIX = "restart:"      # metric name of a restart hop: restart:<hop>
STATS_Q: dict[str, float] = {"p50": 0.5, "p99": 0.99}
VALUE = "value"                  # the statistic of a one-number metric
MIB = 1024.0 * 1024.0
SERIES: tuple[str, ...] = ("proxy_mode", "endpoints", "churn_per_s")


@dataclass(frozen=True)
class Metric:
    """A figure that can grow with N: its name in the table, what a reader sees, its unit."""

    name: str
    label: str
    unit: str


METRICS: tuple[Metric, ...] = (
    Metric("ready_to_first_answer", "Ready → first answer (slowest node)", "ms"),
    Metric("slice_to_sync", "slice → kube-proxy sync (per node)", "ms"),
    Metric("sync_full", "kube-proxy full sync duration", "ms"),
    Metric("sync_partial", "kube-proxy partial sync duration", "ms"),
    Metric("sync_all", "kube-proxy sync duration (all syncs)", "ms"),
    Metric("program_s", "time to program N Services from nothing", "s"),
    Metric("connect", "TCP connect through the ClusterIP", "ms"),
    Metric("rules", "rules in kube-proxy's table (largest node)", "rules"),
    Metric("proxy_rss", "kube-proxy RSS (largest node)", "MiB"),
    Metric("proxy_cpu", "kube-proxy CPU over the mode (largest node)", "s"),
    Metric("apiserver_rss", "kube-apiserver RSS", "MiB"),
    Metric("etcd_rss", "etcd RSS", "MiB"),
)
_BY_NAME = {m.name: m for m in METRICS}
#: trial hops measured at every point: metric -> (direction, hop, all-nodes row only)
_HOP_METRICS = {"ready_to_first_answer": ("add", "ready_to_traffic", True),
                "slice_to_sync": ("add", "slice_to_sync", False)}
#: proxy_stats histogram key -> metric (seconds, shown in ms)
_SYNC_HISTOGRAMS = {"sync_full_s": "sync_full", "sync_partial_s": "sync_partial",
                    "sync_all_s": "sync_all"}

TABLE_COLUMNS = ["proxy_mode", "point", "services", "endpoints", "churn_per_s", "metric",
                 "label", "stat", "unit", "estimate", "lo", "hi", "censored", "n",
                 "n_censored", "source"]
EXPONENT_COLUMNS = ["proxy_mode", "endpoints", "churn_per_s", "metric", "label", "stat",
                    "exponent", "lo", "hi", "n_points", "services_min", "services_max",
                    "note", "ci"]


def metric(name: str) -> Metric:
    """The metric of a table row, restart hops included (`restart:<hop>`)."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    if name.startswith(RESTART_PREFIX):
        hop = name.removeprefix(RESTART_PREFIX).replace("_", " ")
        return Metric(name, f"proxy restart: {hop}", "ms")
    return Metric(name, name, "")


@dataclass(frozen=True)
class Cell:
    """One (mode, point, metric, statistic): its estimate and, with samples, its replicates."""

    proxy_mode: str
    point: Point
    metric: str
    stat: str
    estimate: float
    reps: FloatArray | None  # bootstrap replicates of the estimate, or None (one number)
    n: int
    n_censored: int
    source: str


@dataclass(frozen=True)
class Growth:
    """A sweep's tidy table, its fitted exponents, and the cells both came from."""

    table: pd.DataFrame
    exponents: pd.DataFrame
    cells: tuple[Cell, ...]
    confidence: float


def points_of(data: RunData) -> list[Point]:
    """Every point in the runs (hops' `point` column and run.json `points`), by N, M, churn."""
    found: set[Point] = set()
    for frame in (data.hops, data.events):
        if "point" in frame.columns:
            found.update(Point.parse(str(p)) for p in frame["point"].unique())
        elif len(frame):
            found.add(Point())
    for meta in data.meta.values():
        found.update(p for p, _, _ in mode_blocks(meta))
    return sorted(found, key=_point_key)


def is_sweep(data: RunData) -> bool:
    """More than one point: a report then grows a growth section."""
    return len(points_of(data)) > 1


def mode_blocks(meta: Mapping[str, Any]) -> Iterator[tuple[Point, str, Mapping[str, Any]]]:
    """(point, mode, ModeBlock) of run.json: `points[label].modes` of a sweep, else `modes`
    (a run written before sweeps, or a single point: Point() unless `points` says)."""
    points = meta.get("points")
    if isinstance(points, Mapping) and points:
        for label, block in points.items():
            if not isinstance(block, Mapping):
                continue
            point = Point.parse(str(label))
            for mode, mb in (block.get("modes") or {}).items():
                if isinstance(mb, Mapping):
                    yield point, str(mode), mb
        return
    for mode, mb in (meta.get("modes") or {}).items():
        if isinstance(mb, Mapping):
            yield Point(), str(mode), mb


def growth_table(data: RunData, settings: Settings | None = None) -> Growth:
    """The tidy table and exponents of every metric the runs hold, at every point."""
    cfg = settings or Settings()
    found = [*_hop_cells(data, cfg), *_block_cells(data, cfg)]
    order = {name: i for i, name in enumerate(dict.fromkeys(c.metric for c in found))}
    cells = tuple(sorted(found, key=lambda c: _cell_key(c, order)))
    table = pd.DataFrame([_row(c, cfg) for c in cells], columns=TABLE_COLUMNS)
    return Growth(table, exponents(cells, cfg.confidence), cells, cfg.confidence)


def exponents(cells: Sequence[Cell], confidence: float) -> pd.DataFrame:
    """The fitted growth exponent per series (mode, M, churn), metric and statistic.

    A power-law fit: the least-squares slope b of log(estimate) on log(N) over the points
    with N > 0, i.e. estimate ≈ a·N^b. b = 1 means the figure grows in proportion to the
    number of Services, 0 that it does not grow, 0.5 that 4x the Services doubles it; it
    says nothing about N = 0 (excluded: log 0) and is only as good as a straight line on
    log-log axes. The interval is the percentile interval of the same slope over the
    bootstrap replicates of the estimates (each point resampled on its own, the points
    being distinct trials) where the metric has samples; a one-number metric gets the
    slope alone. No exponent when fewer than two points qualify, or when an estimate at
    some N > 0 is censored (dropping it would understate the growth); `note` says why.
    """
    groups: dict[tuple[Any, ...], list[Cell]] = {}
    for c in cells:
        key = (c.proxy_mode, c.point.endpoints, c.point.churn_per_s, c.metric, c.stat)
        groups.setdefault(key, []).append(c)
    rows = [_fit(key, sorted(group, key=lambda c: c.point.services), confidence)
            for key, group in groups.items()]
    return pd.DataFrame(rows, columns=EXPONENT_COLUMNS)


def _fit(key: tuple[Any, ...], group: list[Cell], confidence: float) -> dict[str, Any]:
    mode, endpoints, churn, name, stat = key
    used = [c for c in group if c.point.services > 0]
    row: dict[str, Any] = {"proxy_mode": mode, "endpoints": endpoints, "churn_per_s": churn,
                           "metric": name, "label": metric(name).label, "stat": stat,
                           "exponent": math.nan, "lo": math.nan, "hi": math.nan,
                           "n_points": len(used), "services_min": math.nan,
                           "services_max": math.nan, "note": "", "ci": confidence}
    if used:
        row["services_min"] = used[0].point.services
        row["services_max"] = used[-1].point.services
    censored = [c.point.services for c in used if np.isposinf(c.estimate)]
    bad = [c.point.services for c in used if not (np.isfinite(c.estimate) and c.estimate > 0)]
    if censored:
        row["note"] = f"censored at N={', '.join(map(str, censored))}"
        return row
    if bad:
        row["note"] = f"no positive estimate at N={', '.join(map(str, bad))}"
        return row
    if len(used) < 2:
        row["note"] = "fewer than two points with N > 0"
        return row
    x = np.log([float(c.point.services) for c in used])
    y = np.log([c.estimate for c in used])
    row["exponent"] = float(_slopes(x, y[None, :])[0])
    reps = [c.reps for c in used]
    if all(r is not None for r in reps):
        stack = np.stack([np.asarray(r, dtype=np.float64) for r in reps], axis=1)
        ok: NDArray[np.bool_] = np.asarray(np.isfinite(stack).all(axis=1)
                                           & (stack > 0).all(axis=1))
        usable = np.where(np.isfinite(stack) & (stack > 0), stack, 1.0)
        logs = np.where(ok[:, None], np.log(usable), np.nan)
        slopes = np.where(ok, _slopes(x, logs), np.nan)
        lo, hi = percentile_ci(slopes[:, None], confidence)
        row["lo"], row["hi"] = float(lo[0]), float(hi[0])
        if not ok.all():
            row["note"] = (f"{int((~ok).sum())} of {ok.size} replicates censored: "
                           "no interval")
    else:
        row["note"] = "one number per point: no interval"
    return row


def _slopes(x: FloatArray, y: FloatArray) -> FloatArray:
    """Least-squares slope of each row of y on x."""
    dx = x - x.mean()
    out: FloatArray = ((y - y.mean(axis=1, keepdims=True)) * dx).sum(axis=1) / (dx * dx).sum()
    return out


# --- cells from the trials -------------------------------------------------------------


def _hop_cells(data: RunData, cfg: Settings) -> Iterator[Cell]:
    hops = with_scope(data.hops)
    if hops.empty:
        return
    point = (hops["point"].astype(str) if "point" in hops.columns
             else pd.Series("", index=hops.index))
    unit = hops.groupby(CLUSTER_UNIT, sort=False).ngroup().to_numpy()
    for name, (direction, hop, all_nodes) in _HOP_METRICS.items():
        mask = (hops["direction"] == direction) & (hops["hop"] == hop)
        mask &= (hops["node"] == ALL_NODES) if all_nodes else (hops["scope"] == SCOPE_NODE)
        yield from _sample_cells(hops, mask, point, unit, name, cfg)
    restart = hops["direction"] == RESTART
    found = pd.unique(hops.loc[restart, "hop"].astype(str))  # assembly writes chain order
    for hop in sorted(found, key=lambda h: CHAIN_ORDER.get((RESTART, h), len(CHAIN_ORDER))):
        mask = restart & (hops["hop"] == hop)
        if (hops.loc[mask, "node"] == ALL_NODES).any():
            mask &= hops["node"] == ALL_NODES
        yield from _sample_cells(hops, mask, point, unit, RESTART_PREFIX + hop, cfg)


def _sample_cells(hops: pd.DataFrame, mask: pd.Series, point: pd.Series, unit: np.ndarray,
                  name: str, cfg: Settings) -> Iterator[Cell]:
    idx = np.flatnonzero(mask.to_numpy())
    if not idx.size:
        return
    keys = pd.DataFrame({"mode": hops["proxy_mode"].astype(str).to_numpy()[idx],
                         "point": point.to_numpy()[idx]})
    latency = hops["latency_ms"].to_numpy(dtype=np.float64)[idx]
    censored = hops["censored"].to_numpy(dtype=bool)[idx]
    for (mode, label), rows in keys.groupby(["mode", "point"], sort=False).indices.items():
        s = sample(latency[rows], censored[rows], unit[idx][rows])
        yield from _quantile_cells(str(mode), Point.parse(str(label)), name, s, "trials", cfg)


def _quantile_cells(mode: str, point: Point, name: str, s: Sample, source: str,
                    cfg: Settings, scale: float = 1.0) -> Iterator[Cell]:
    qs = list(STATS_Q.values())
    est = quantiles(s, qs) * scale
    reps = bootstrap(s, qs, cfg.n_boot, group_rng(cfg.seed, (mode, point.label, name))) * scale
    for k, stat in enumerate(STATS_Q):
        yield Cell(mode, point, name, stat, float(est[k]), reps[:, k], s.n, s.n_censored,
                   source)


# --- cells from run.json -----------------------------------------------------------------


def _block_cells(data: RunData, cfg: Settings) -> Iterator[Cell]:
    hists: dict[tuple[str, Point, str], list[Sample]] = {}
    scalars: dict[tuple[str, Point, str], list[float]] = {}
    for meta in data.meta.values():
        for point, mode, block in mode_blocks(meta):
            for name, s in _histograms(block):
                hists.setdefault((mode, point, name), []).append(s)
            for name, value in _scalars(block):
                scalars.setdefault((mode, point, name), []).append(value)
    for (mode, point, name), samples in hists.items():
        pooled = _pool(samples)
        if pooled.n:
            scale = 1000.0 if name.startswith("sync_") else 1.0
            yield from _quantile_cells(mode, point, name, pooled, "histogram", cfg, scale)
    for (mode, point, name), values in scalars.items():
        yield Cell(mode, point, name, VALUE, max(values), None, len(values), 0, "run.json")


def _histograms(block: Mapping[str, Any]) -> Iterator[tuple[str, Sample]]:
    """Per node, kube-proxy's sync histograms and the prober's connect histogram."""
    for stats in _per_node(block.get("proxy_stats")):
        have = {k for k in ("sync_full_s", "sync_partial_s") if _histogram(stats.get(k))}
        keys = have or ({"sync_all_s"} if _histogram(stats.get("sync_all_s")) else set())
        for key in sorted(keys):
            s = _histogram(stats.get(key))
            if s is not None:
                yield _SYNC_HISTOGRAMS[key], s
    for hist in _per_node(block.get("connect_ms")):
        s = _histogram(hist, "bounds_ms")
        if s is not None:
            yield "connect", s


def _scalars(block: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    """One number per node (rules, RSS, CPU) or per cluster (program_s, control plane RSS)."""
    if _number(block.get("program_s")) is not None:
        yield "program_s", float(block["program_s"])
    for node_value in (block.get("rules") or {}).values():
        if _number(node_value) is not None:
            yield "rules", float(node_value)
    for stats in _per_node(block.get("proxy_stats")):
        if _number(stats.get("rss_bytes")) is not None:
            yield "proxy_rss", float(stats["rss_bytes"]) / MIB
        if _number(stats.get("cpu_s")) is not None:
            yield "proxy_cpu", float(stats["cpu_s"])
    for key, name in (("apiserver_rss_bytes", "apiserver_rss"), ("etcd_rss_bytes", "etcd_rss")):
        if _number(block.get(key)) is not None:
            yield name, float(block[key]) / MIB


def _per_node(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, Mapping):
        return []
    return [v for _, v in sorted(value.items()) if isinstance(v, Mapping)]


def _histogram(entry: Any, bounds_key: str = "bounds_s") -> Sample | None:
    """A histogram {bounds: [...], counts: [...]} (per-bucket counts; "+Inf" or one more count
    than bounds is the overflow) as a Sample; None when absent, empty or malformed."""
    if not isinstance(entry, Mapping) or bounds_key not in entry or "counts" not in entry:
        return None
    try:
        bounds = [math.inf if str(b).strip().lower() in {"+inf", "inf"} else float(b)
                  for b in entry[bounds_key]]
        counts = [float(c) for c in entry["counts"]]
        if len(counts) == len(bounds) + 1:
            bounds.append(math.inf)
        s = histogram_sample(bounds, counts)
    except (TypeError, ValueError):
        return None
    return s if s.n else None


def _pool(samples: list[Sample]) -> Sample:
    """Several nodes' (or runs') histogram samples as one; each observation its own unit."""
    x = np.concatenate([s.x for s in samples])
    return sample(x, censored=np.isposinf(x))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


# --- table rows ----------------------------------------------------------------------------


def _row(c: Cell, cfg: Settings) -> dict[str, Any]:
    lo = hi = math.nan
    if c.reps is not None:
        low, high = percentile_ci(c.reps[:, None], cfg.confidence)
        lo, hi = float(low[0]), float(high[0])
    m = metric(c.metric)
    return {"proxy_mode": c.proxy_mode, "point": c.point.label, "services": c.point.services,
            "endpoints": c.point.endpoints, "churn_per_s": c.point.churn_per_s,
            "metric": c.metric, "label": m.label, "stat": c.stat, "unit": m.unit,
            "estimate": c.estimate, "lo": lo, "hi": hi,
            "censored": bool(np.isposinf(c.estimate)), "n": c.n, "n_censored": c.n_censored,
            "source": c.source}


def _point_key(p: Point) -> tuple[int, int, float]:
    return (p.services, p.endpoints, p.churn_per_s)


_METRIC_ORDER = {m.name: i for i, m in enumerate(METRICS)}


def _cell_key(c: Cell, found: Mapping[str, int]) -> tuple[Any, ...]:
    """Metrics in METRICS order, then restart hops as found; modes, points, statistics."""
    return (_METRIC_ORDER.get(c.metric, len(METRICS)), found.get(c.metric, 0),
            mode_key(c.proxy_mode), _point_key(c.point), c.stat)
