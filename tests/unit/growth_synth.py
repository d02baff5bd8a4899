"""Synthetic sweep run directories for the growth tests (never written under results/).

`make_sweep` writes one run directory holding several points (bench.results.point), shaped
as a sweep run writes it: events and hops with a `point` column, run.json with the
top-level `modes` of the first point and a `points` block with each point's mode blocks
(program_s, rules, proxy_stats with sync histograms, cpu_s and rss_bytes, connect_ms
histograms, API server and etcd RSS), and the proxy-restart scenario's hops (direction
"restart"). Each point's trials come from `analysis_synth.make_run` with every interval
scaled by `GROWTH[mode]` as a power of N, so the true growth exponent of every trial
metric is known; run.json figures follow their own known powers (EXPONENTS).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from analysis_synth import make_run

from bench.results.point import Point
from bench.results.schema import ALL_NODES, HOP_DTYPES, SCHEMA_VERSION

#: trial intervals at N scale as (N / 1000) ** GROWTH[mode]; at N = 0 by ZERO_FACTOR
GROWTH = {"iptables": 0.5, "nftables": 0.2}
ZERO_FACTOR = 0.3
#: run.json figures: metric -> mode -> (value at N = 1000, exponent)
EXPONENTS: dict[str, dict[str, tuple[float, float]]] = {
    "program_s": {"iptables": (2.0, 1.0), "nftables": (1.5, 0.8)},
    "sync_full": {"iptables": (0.12, 0.9), "nftables": (0.05, 0.7)},   # seconds
    "sync_partial": {"iptables": (0.03, 0.6), "nftables": (0.004, 0.1)},
    "connect": {"iptables": (0.08, 0.3), "nftables": (0.06, 0.0)},     # ms
}
RESTART_HOPS = ("kill_to_started", "started_to_sync", "kill_to_rule", "kill_to_traffic")
RESTART_SYNC_EXPONENT = 1.0
#: the point label column is in the schema once branch `sweep` lands; until then a run of
#: schema 0 is read through analysis.migrations, which keeps columns the schema lacks
FIXTURE_VERSION = SCHEMA_VERSION if "point" in HOP_DTYPES else 0
SYNC_BOUNDS_S = np.geomspace(1e-4, 1e4, 400)
CONNECT_BOUNDS_MS = np.geomspace(1e-3, 1e4, 400)


def scale(mode: str, services: int, exponent: float | None = None) -> float:
    """The factor a trial interval is multiplied by at N = services."""
    b = GROWTH[mode] if exponent is None else exponent
    return ZERO_FACTOR if services == 0 else (services / 1000.0) ** b


def make_sweep(path: Path | str, *, services: tuple[int, ...] = (0, 1000, 5000, 10000),
               endpoints: int = 2, trials: int = 160, modes: tuple[str, ...] = ("iptables",
               "nftables"), seed: int = 0, restart_trials: int = 12,
               censor_restart_at: int | None = None, run_id: str | None = None) -> Path:
    """Write a synthetic sweep run directory and return its path."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    rid = run_id or out.name
    rng = np.random.default_rng(seed)
    points = [Point(n, endpoints) for n in services]
    hops, events, blocks = [], [], {}
    meta: dict[str, Any] = {}
    for k, point in enumerate(points):
        part = make_run(out / f".part{k}", trials=trials, nodes=2, modes=modes,
                        scenarios=("scale-up",), seed=seed + k, run_id=rid, sli=False,
                        censor_frac=0.0)
        h = pd.read_parquet(part / "hops.parquet")
        e = pd.read_parquet(part / "events.parquet")
        meta = meta or json.loads((part / "run.json").read_text())
        for f in part.iterdir():
            f.unlink()
        part.rmdir()
        factor = np.array([scale(m, point.services) for m in h["proxy_mode"]])
        h["latency_ms"] = h["latency_ms"] * factor
        e = _scaled_events(e, point)
        restart = _restart_hops(rid, point, modes, restart_trials, rng,
                                censor=point.services == censor_restart_at)
        hops += [h.assign(point=point.label), restart]
        events.append(e.assign(point=point.label))
        blocks[point.label] = {
            "services": point.services, "endpoints": point.endpoints,
            "churn_per_s": point.churn_per_s,
            "fill": {"created": point.services * 2, "deleted": 0, "seconds": 1.0,
                     "objects_per_s": float(point.services * 2)},
            "modes": {m: _mode_block(m, point, rng) for m in modes}}
    meta |= {"schema_version": FIXTURE_VERSION, "status": "finished", "points": blocks,
             "modes": blocks[points[0].label]["modes"],
             "scenarios": [{"name": "scale-up", "params": {"trials": trials}},
                           {"name": "proxy-restart", "params": {"trials": restart_trials}}]}
    _write_parquet(out / "hops.parquet", pd.concat(hops, ignore_index=True))
    _write_parquet(out / "events.parquet", pd.concat(events, ignore_index=True))
    (out / "run.json").write_text(json.dumps(meta, indent=2, sort_keys=True, allow_nan=False)
                                  + "\n")
    return out


def _scaled_events(e: pd.DataFrame, point: Point) -> pd.DataFrame:
    """Every event's distance to its trial's first event scaled as the hops are."""
    keys = ["proxy_mode", "direction", "trial"]
    t0 = e.groupby(keys)["t_ns"].transform("min")
    factor = np.array([scale(m, point.services) for m in e["proxy_mode"]])
    return e.assign(t_ns=(t0 + (e["t_ns"] - t0) * factor).round().astype("int64"))


def _restart_hops(rid: str, point: Point, modes: tuple[str, ...], trials: int,
                  rng: np.random.Generator, censor: bool) -> pd.DataFrame:
    """The proxy-restart scenario: restart node-0's kube-proxy, one row on it and one "*"."""
    rows = []
    for mode in modes:
        for t in range(trials):
            started = rng.lognormal(np.log(300.0), 0.1)
            sync = (rng.lognormal(np.log(400.0), 0.15)
                    * scale(mode, point.services, RESTART_SYNC_EXPONENT))
            rule = started + sync + rng.uniform(1, 5)
            values = {"kill_to_started": started, "started_to_sync": sync,
                      "kill_to_rule": rule, "kill_to_traffic": rule + rng.uniform(0.5, 5)}
            for hop in RESTART_HOPS:
                lost = censor and hop != "kill_to_started" and t % 3 != 0  # 2 in 3 time out
                for node in ("node-0", ALL_NODES):
                    rows.append({
                        "run_id": rid, "trial": 10_000 + t, "service": "svc-0",
                        "scenario": "proxy-restart", "proxy_mode": mode,
                        "direction": "restart", "node": node, "hop": hop,
                        "start_event": "", "end_event": "",
                        "latency_ms": np.nan if lost else values[hop], "censored": lost,
                        "censor_reason": "timeout: no answer within 30 s" if lost else "",
                        "flag": "", "resolution_ms": 1.0, "value": np.nan,
                        "point": point.label})
    return pd.DataFrame(rows)


def _power(metric: str, mode: str, services: int) -> float:
    base, b = EXPONENTS[metric][mode]
    return base * scale(mode, services, b)


def _histogram(median: float, n: int, bounds: np.ndarray, rng: np.random.Generator,
               sigma: float = 0.3) -> dict[str, list[float] | list[int]]:
    x = rng.lognormal(np.log(median), sigma, n)
    idx = np.searchsorted(bounds, x, side="left")
    counts = np.bincount(idx, minlength=bounds.size + 1)  # last: over the top bound
    return {"bounds": bounds.tolist(), "counts": counts.tolist()}


def _mode_block(mode: str, point: Point, rng: np.random.Generator) -> dict[str, Any]:
    n = point.services
    stats, connect = {}, {}
    for k, node in enumerate(("node-0", "node-1")):
        full = _histogram(_power("sync_full", mode, n), 40, SYNC_BOUNDS_S, rng)
        partial = _histogram(_power("sync_partial", mode, n), 400, SYNC_BOUNDS_S, rng)
        stats[node] = {
            "sync_full_s": {"bounds_s": full["bounds"], "counts": full["counts"]},
            "sync_partial_s": {"bounds_s": partial["bounds"], "counts": partial["counts"]},
            "syncs": 440, "cpu_s": 1.0 + n / 2000.0 + k * 0.1,
            "rss_bytes": int((40 + n / 200.0 + k) * 1024 * 1024)}
        hist = _histogram(_power("connect", mode, n), 3000, CONNECT_BOUNDS_MS, rng, 0.4)
        connect[node] = {"bounds_ms": hist["bounds"], "counts": hist["counts"]}
    block: dict[str, Any] = {
        "trials": 80, "elapsed_s": 60.0, "trials_per_minute": 80.0,
        "rules": {"node-0": (3 * point.endpoints + 2) * n + 40,
                  "node-1": (3 * point.endpoints + 2) * n + 40},
        "bg_routed": {"node-0": n, "node-1": n},
        "proxy_stats": stats, "connect_ms": connect,
        "apiserver_rss_bytes": int((300 + n / 50.0) * 1024 * 1024),
        "etcd_rss_bytes": int((80 + n / 100.0) * 1024 * 1024)}
    if n:
        block |= {"program_s": _power("program_s", mode, n) * rng.uniform(0.98, 1.02),
                  "program_from": "creation"}
    return block


def _write_parquet(path: Path, df: pd.DataFrame) -> None:
    """As bench.results.store writes a snapshot: pyarrow, the schema version in metadata."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    tagged = {**(table.schema.metadata or {}),
              b"hopbench.schema_version": b"%d" % FIXTURE_VERSION}
    pq.write_table(table.replace_schema_metadata(tagged), path)
