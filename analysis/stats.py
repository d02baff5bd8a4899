"""Summary tables of a hops table: quantiles with CIs, mode ratios, per-node spread.

Every table is keyed by direction x scenario x proxy_mode x hop x scope (see
`analysis.frame`): per-node rows of a hop are pooled over nodes (scope "node"), the
all-nodes max and cluster-level hops are their own groups. Censored rows are kept and
counted, and quantiles falling into the censored mass come out as +inf with a
`<q>_censored` flag (see `analysis.quantiles` for the estimator). Each group's bootstrap is
seeded from `seed` and the group's key, so a table does not change when other groups are
added or removed. `n_trials` counts transitions (run, trial, Service); the bootstrap
resamples (run, trial), so parallel Services of one trial, which share kube-proxy syncs,
move together.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.frame import (
    CLUSTER_UNIT,
    DIRECTIONS,
    KUBE_PROXY,
    MESH,
    PATH_END_TO_END,
    SCOPE_NODE,
    TRANSITION,
    chain_sorted,
    label,
    mode_key,
    sort_modes,
    with_scope,
)
from analysis.quantiles import (
    QUANTILES,
    Sample,
    bootstrap,
    percentile_ci,
    quantiles,
    ratio_replicates,
    sample,
)

GROUP: tuple[str, ...] = ("direction", "scenario", "proxy_mode", "hop", "scope")
DEFAULT_BOOT = 1000
DEFAULT_CONFIDENCE = 0.95
PREFERRED_BASELINE = "iptables"
_P50 = list(QUANTILES).index("p50")


@dataclass(frozen=True)
class Settings:
    """How the bootstrap runs; one object so every table of a report agrees."""

    confidence: float = DEFAULT_CONFIDENCE
    n_boot: int = DEFAULT_BOOT
    seed: int = 0
    timeout_ms: float | None = None  # censored trials are known to exceed this


@dataclass(frozen=True)
class Tables:
    """All summary tables of one set of hops."""

    summary: pd.DataFrame
    ratios: pd.DataFrame
    nodes: pd.DataFrame
    spread: pd.DataFrame
    paths: pd.DataFrame | None = None  # compare_paths: mesh vs kube-proxy (empty: no mesh)


@dataclass(frozen=True)
class _Group:
    """One group's rows as a Sample, with what the summary counts besides quantiles."""

    key: tuple[Any, ...]
    sample: Sample
    flagged: int
    transitions: int


@dataclass(frozen=True)
class _Boot:
    """One group: its sample, point quantiles (QUANTILES order) and bootstrap replicates."""

    key: dict[str, Any]
    group: _Group
    point: np.ndarray
    reps: np.ndarray

    @property
    def sample(self) -> Sample:
        return self.group.sample


def summary_tables(hops: pd.DataFrame, settings: Settings | None = None) -> Tables:
    """summarize + compare_modes + node_stats + node_spread + compare_paths, bootstrapping
    each group once."""
    cfg = settings or Settings()
    boots = _boots(hops, GROUP, cfg)
    nodes = node_stats(hops, cfg)
    return Tables(_summary_frame(boots, GROUP, cfg), _ratio_frame(boots, cfg, None), nodes,
                  node_spread(nodes), compare_paths(hops, cfg))


def summarize(hops: pd.DataFrame, settings: Settings | None = None,
              by: Sequence[str] = GROUP) -> pd.DataFrame:
    """One row per group: n, censored counts, p50/p90/p99/max with CIs and censored flags."""
    cfg = settings or Settings()
    return _summary_frame(_boots(hops, by, cfg), by, cfg)


def _boots(hops: pd.DataFrame, by: Sequence[str], cfg: Settings) -> list[_Boot]:
    qs = list(QUANTILES.values())
    out = []
    for group in _groups(hops, by):
        s = group.sample
        reps = bootstrap(s, qs, cfg.n_boot, _rng(cfg.seed, group.key))
        out.append(_Boot(dict(zip(by, group.key, strict=True)), group, quantiles(s, qs), reps))
    return out


def _summary_frame(boots: list[_Boot], by: Sequence[str], cfg: Settings) -> pd.DataFrame:
    rows = [_summary_row(b, cfg) for b in boots]
    return chain_sorted(pd.DataFrame(rows, columns=_summary_columns(by)))


def node_stats(hops: pd.DataFrame, settings: Settings | None = None) -> pd.DataFrame:
    """`summarize` of per-node hops, one row per node (scope "node" only)."""
    scoped = with_scope(hops)
    return summarize(scoped.loc[scoped["scope"] == SCOPE_NODE], settings, (*GROUP, "node"))


def node_spread(nodes: pd.DataFrame) -> pd.DataFrame:
    """Per group of `node_stats`: the slowest and fastest node by p50, and the gap.

    Nodes rank by p50, then p99, then max (a censored median ranks slowest). `separated`
    says the slowest node's p50 CI lies wholly above the fastest node's: the gap is not
    bootstrap noise.
    """
    rows = []
    for key, group in nodes.groupby(list(GROUP), sort=False):
        ranked = group.sort_values(["p50_ms", "p99_ms", "max_ms", "node"],
                                   ascending=[False, False, False, True], kind="stable")
        slow, fast = ranked.iloc[0], ranked.iloc[-1]
        rows.append({
            **dict(zip(GROUP, key)),
            "n_nodes": len(group),
            "slowest_node": slow["node"], "slowest_p50_ms": slow["p50_ms"],
            "slowest_p50_lo_ms": slow["p50_lo_ms"], "slowest_p50_hi_ms": slow["p50_hi_ms"],
            "slowest_p99_ms": slow["p99_ms"], "slowest_n_censored": slow["n_censored"],
            "fastest_node": fast["node"], "fastest_p50_ms": fast["p50_ms"],
            "spread_p50_ms": _diff(slow["p50_ms"], fast["p50_ms"]),
            "spread_p99_ms": _diff(group["p99_ms"].max(), group["p99_ms"].min()),
            "separated": bool(len(group) > 1 and slow["p50_lo_ms"] > fast["p50_hi_ms"]),
        })
    columns = [*GROUP, "n_nodes", "slowest_node", "slowest_p50_ms", "slowest_p50_lo_ms",
               "slowest_p50_hi_ms", "slowest_p99_ms", "slowest_n_censored", "fastest_node",
               "fastest_p50_ms", "spread_p50_ms", "spread_p99_ms", "separated"]
    return chain_sorted(pd.DataFrame(rows, columns=columns))


def compare_modes(hops: pd.DataFrame, settings: Settings | None = None,
                  baseline: str | None = None) -> pd.DataFrame:
    """Ratio of medians mode / baseline per hop, scenario, direction and scope, with CI.

    The baseline is iptables when present, else the first mode in display order. Modes are
    bootstrapped independently (their trials are distinct). ratio < 1: faster than the
    baseline. A censored median makes the ratio inf (or NaN for inf/inf), flagged.
    """
    cfg = settings or Settings()
    return _ratio_frame(_boots(hops, GROUP, cfg), cfg, baseline)


def _ratio_frame(boots: list[_Boot], cfg: Settings, baseline: str | None) -> pd.DataFrame:
    keys = [k for k in GROUP if k != "proxy_mode"]
    medians: dict[tuple[Any, ...], dict[str, tuple[float, np.ndarray, int]]] = {}
    for boot in boots:
        group = tuple(boot.key[k] for k in keys)
        medians.setdefault(group, {})[str(boot.key["proxy_mode"])] = (
            float(boot.point[_P50]), boot.reps[:, _P50], boot.sample.n)
    rows = []
    for key, by_mode in medians.items():
        base = baseline or _default_baseline(by_mode)
        if base not in by_mode:
            continue
        b_med, b_reps, b_n = by_mode[base]
        for mode in sort_modes(by_mode):
            if mode == base:
                continue
            med, reps, n = by_mode[mode]
            ratio = float(ratio_replicates(np.array([med]), np.array([b_med]))[0])
            lo, hi = percentile_ci(ratio_replicates(reps, b_reps)[:, None], cfg.confidence)
            rows.append({**dict(zip(keys, key)), "proxy_mode": mode, "baseline": base,
                         "n": n, "baseline_n": b_n, "p50_ms": med, "baseline_p50_ms": b_med,
                         "ratio": ratio, "ratio_lo": float(lo[0]), "ratio_hi": float(hi[0]),
                         "censored": bool(np.isinf(med) or np.isinf(b_med)),
                         "ci": cfg.confidence})
    columns = [*keys, "proxy_mode", "baseline", "n", "baseline_n", "p50_ms",
               "baseline_p50_ms", "ratio", "ratio_lo", "ratio_hi", "censored", "ci"]
    return chain_sorted(pd.DataFrame(rows, columns=columns))


#: the pairing of compare_paths: one transition on one node
PAIR = [*TRANSITION, "node"]


def compare_paths(hops: pd.DataFrame, settings: Settings | None = None, path: str = MESH,
                  baseline: str = KUBE_PROXY) -> pd.DataFrame:
    """`path`'s end to end against `baseline`'s on the same trials, paired per node.

    One row per direction x scenario x mode where both paths have per-node end-to-end rows
    (frame.PATH_END_TO_END): each pair is one transition on one node. `p50_ms` and
    `baseline_p50_ms` are each path's median over the paired rows; `ratio` is the median of
    the per-pair ratios path / baseline (< 1: the path is faster), with the bootstrap
    interval of `analysis.quantiles` resampling whole trials (the nodes of a trial move
    together). A pair with either side censored has an unknown ratio: it counts as censored
    (+inf, "unknown, so not small", as a censored latency does) and in `n_censored`.
    Empty (with the columns) when the runs have no rows of `path`.
    """
    cfg = settings or Settings()
    mine, base = PATH_END_TO_END[path], PATH_END_TO_END[baseline]
    rows = []
    for direction in [d for d in DIRECTIONS if d in mine and d in base]:
        paired = paired_end_to_end(hops, direction, path, baseline)
        for (scenario, mode), group in paired.groupby(["scenario", "proxy_mode"], sort=True):
            key = (direction, scenario, mode, mine[direction], base[direction])
            rows.append({"direction": direction, "scenario": scenario, "proxy_mode": mode,
                         "hop": mine[direction], "baseline_hop": base[direction],
                         **_paired(group, cfg, key)})
    columns = ["direction", "scenario", "proxy_mode", "hop", "baseline_hop", "n_pairs",
               "n_trials", "n_censored", "p50_ms", "p50_lo_ms", "p50_hi_ms",
               "baseline_p50_ms", "baseline_p50_lo_ms", "baseline_p50_hi_ms", "ratio",
               "ratio_lo", "ratio_hi", "ratio_censored", "ci"]
    out = pd.DataFrame(rows, columns=columns)
    if out.empty:
        return out
    order = sorted(range(len(out)), key=lambda i: (
        DIRECTIONS.index(out["direction"].iloc[i]),
        str(out["scenario"].iloc[i]), mode_key(str(out["proxy_mode"].iloc[i]))))
    return out.iloc[order].reset_index(drop=True)


def paired_end_to_end(hops: pd.DataFrame, direction: str, path: str = MESH,
                      baseline: str = KUBE_PROXY) -> pd.DataFrame:
    """The per-node end-to-end rows of `path` and `baseline` of one direction side by side:
    one row per transition and node that has both (PAIR, scenario, proxy_mode, latency_ms,
    censored, and the baseline's as latency_ms_base, censored_base)."""
    scoped = with_scope(hops)
    cols = [*PAIR, "scenario", "proxy_mode", "latency_ms", "censored"]
    mine = PATH_END_TO_END[path].get(direction)
    base = PATH_END_TO_END[baseline].get(direction)
    part = scoped.loc[(scoped["direction"] == direction) & (scoped["scope"] == SCOPE_NODE)]
    text = {c: "str" for c in [*PAIR, "scenario", "proxy_mode"] if c != "trial"}
    ours = part.loc[part["hop"] == mine, cols].astype(text)  # plot frames: categoricals
    theirs = part.loc[part["hop"] == base, cols].astype(text)
    return ours.merge(theirs, on=[*PAIR, "scenario", "proxy_mode"], suffixes=("", "_base"))


def _paired(group: pd.DataFrame, cfg: Settings, key: tuple[Any, ...]) -> dict[str, Any]:
    """Medians of both sides and the median per-pair ratio of one group, with their CIs."""
    unit = group.groupby(CLUSTER_UNIT, sort=False).ngroup().to_numpy()
    x, cx = group["latency_ms"].to_numpy(np.float64), group["censored"].to_numpy(bool)
    b, cb = group["latency_ms_base"].to_numpy(np.float64), group["censored_base"].to_numpy(bool)
    unknown = cx | cb | np.isnan(x) | np.isnan(b)
    ratio = np.where(unknown, np.nan, ratio_replicates(x, b))
    out: dict[str, Any] = {"n_pairs": len(group), "n_trials": int(np.unique(unit).size),
                           "n_censored": int((np.isnan(ratio) | np.isposinf(ratio)).sum())}
    for name, s in (("p50", sample(x, cx, unit)), ("baseline_p50", sample(b, cb, unit)),
                    ("ratio", sample(ratio, None, unit))):
        med = float(quantiles(s, [0.5])[0])
        reps = bootstrap(s, [0.5], cfg.n_boot, _rng(cfg.seed, (*key, name)))
        lo, hi = percentile_ci(reps, cfg.confidence)
        unit_suffix = "" if name == "ratio" else "_ms"
        out |= {f"{name}{unit_suffix}": med, f"{name}_lo{unit_suffix}": float(lo[0]),
                f"{name}_hi{unit_suffix}": float(hi[0])}
    out["ratio_censored"] = bool(np.isposinf(out["ratio"]))
    out["ci"] = cfg.confidence
    return out


def _default_baseline(by_mode: dict[str, Any]) -> str:
    return PREFERRED_BASELINE if PREFERRED_BASELINE in by_mode else sort_modes(by_mode)[0]


def _groups(hops: pd.DataFrame, by: Sequence[str]) -> Iterator[_Group]:
    """Every group of `by`, its rows as a Sample whose resampling unit is CLUSTER_UNIT."""
    scoped = with_scope(hops)
    if scoped.empty:
        return
    unit = scoped.groupby(CLUSTER_UNIT, sort=False).ngroup().to_numpy()
    transition = scoped.groupby(TRANSITION, sort=False).ngroup().to_numpy()
    latency = scoped["latency_ms"].to_numpy(dtype=np.float64)
    censored = scoped["censored"].to_numpy(dtype=bool)
    flagged = (scoped["flag"].astype(str) != "").to_numpy()
    for key, idx in scoped.groupby(list(by), sort=True).indices.items():
        yield _Group(key if isinstance(key, tuple) else (key,),
                     sample(latency[idx], censored[idx], unit[idx]),
                     int(flagged[idx].sum()), int(np.unique(transition[idx]).size))


def _rng(seed: int, key: tuple[Any, ...]) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(map(str, key)).encode())])


def _summary_row(boot: _Boot, cfg: Settings) -> dict[str, Any]:
    named, s, point = boot.key, boot.sample, boot.point
    lo, hi = percentile_ci(boot.reps, cfg.confidence)
    finite = s.x[np.isfinite(s.x)]
    bound = max(float(finite.max()) if finite.size else -np.inf, cfg.timeout_ms or -np.inf)
    row: dict[str, Any] = {
        **named,
        "label": label(str(named.get("direction", "")), str(named.get("hop", ""))),
        "n": s.n, "n_trials": boot.group.transitions, "n_censored": s.n_censored,
        "censored_frac": s.n_censored / s.n if s.n else np.nan,
        "censored_above_ms": bound if s.n_censored and np.isfinite(bound) else np.nan,
        "n_flagged": boot.group.flagged,
    }
    for name, value, low, high in zip(QUANTILES, point, lo, hi, strict=True):
        row |= {f"{name}_ms": value, f"{name}_lo_ms": low, f"{name}_hi_ms": high,
                f"{name}_censored": bool(np.isposinf(value))}
    row["ci"] = cfg.confidence
    return row


def _summary_columns(by: Sequence[str]) -> list[str]:
    cols = [*by, "label", "n", "n_trials", "n_censored", "censored_frac", "censored_above_ms",
            "n_flagged"]
    for name in QUANTILES:
        cols += [f"{name}_ms", f"{name}_lo_ms", f"{name}_hi_ms", f"{name}_censored"]
    return [*cols, "ci"]


def _diff(a: float, b: float) -> float:
    with np.errstate(invalid="ignore"):
        return float(np.float64(a) - np.float64(b))
