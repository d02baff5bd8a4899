"""The answer a reader opens a report for: per mode, how long until every node converged,
and which hop that time goes to, and why.

Why a module of its own: report.html opens on this answer (before any table), so its
numbers are computed in one pure, tested place from the run itself: nothing here is a
constant about Kubernetes except the wording of the explanations.

- End to end is the direction's `schema.END_TO_END` hop at scope all-nodes (the slowest
  node of each trial: "all nodes converged"); its p50/p99 are the summary table's, so the
  opening and the tables agree.
- The chain of that hop (its component hops, e.g. Ready → slice → sync → rule → answer) is
  derived from `schema.HOPS`. Each trial is decomposed on its slowest node (largest end to
  end, a censored one counting as slowest), and each component's median over those trials
  is compared to the end-to-end median: the component with the largest median dominates.
  Medians do not add up, and a hop can be negative (the rule can appear before kube-proxy
  reports its sync done), so shares need not sum to 100 %.
- The mesh path (a run with --mesh) gets the same answer from its own end-to-end hop
  (`schema.MESH_END_TO_END`) and chain (`headline(..., path="mesh")`).
- The explanation of the dominant hop reads the run's provenance (run.json), e.g. kube-proxy's
  minSyncPeriod from `modes.<mode>.kube_proxy_config`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.frame import (
    DIRECTIONS,
    KUBE_PROXY,
    PATH_END_TO_END,
    SCOPE_ALL,
    SCOPE_CLUSTER,
    SCOPE_NODE,
    TRANSITION,
    end_to_end,
    hop_of,
    label,
    sort_modes,
    with_scope,
)
from analysis.load import RunData
from analysis.quantiles import quantiles, sample
from analysis.stats import Tables
from bench.results.schema import HOPS, Hop


@dataclass(frozen=True)
class Quantile:
    """One quantile of the summary: +inf `value_ms` means it falls among censored trials,
    which are known only to exceed `above_ms` (NaN when no bound is known)."""

    value_ms: float
    lo_ms: float
    hi_ms: float
    above_ms: float

    @property
    def censored(self) -> bool:
        return bool(np.isposinf(self.value_ms))


@dataclass(frozen=True)
class HopShare:
    """A component hop on the slowest node: its median and that over the end-to-end median."""

    hop: str
    label: str
    median_ms: float
    share: float  # NaN when either median is censored or the end-to-end median is 0


@dataclass(frozen=True)
class DirectionAnswer:
    """End to end of one direction and scenario in one mode, and where its time goes."""

    direction: str
    scenario: str
    hop: str
    label: str
    n: int
    n_censored: int
    p50: Quantile
    p99: Quantile
    parts: tuple[HopShare, ...]   # chain order
    dominant: HopShare | None     # None when the end-to-end median is censored
    why: str


@dataclass(frozen=True)
class ModeAnswer:
    proxy_mode: str
    directions: tuple[DirectionAnswer, ...]


def chain(direction: str, path: str = KUBE_PROXY,
          present: Collection[str] | None = None) -> tuple[Hop, ...]:
    """The hops that take the end-to-end hop of `direction` on `path` from its start to its
    end event, in order (a path through `schema.HOPS`, the end-to-end hop itself excluded).

    The steps are the path's own hops (`Hop.path`) and the hops of another path that lead
    to one of them (the shared start: the mesh's chain begins with kube-proxy's Ready →
    slice, the same T1 → T2). With `present` (the hop names a run recorded), only those:
    a run of an older schema takes the way its hops allow."""
    e2e = hop_of(direction, end_to_end(direction, path))
    if e2e is None:
        return ()
    mine = [h for h in HOPS if h.direction == direction and h.path == path]
    starts = {h.start for h in mine}
    steps = [h for h in HOPS if h.direction == direction and h.name != e2e.name
             and (h.path == path or h.end in starts)
             and (present is None or h.name in present)]

    def walk(event: str, seen: frozenset[str]) -> tuple[Hop, ...] | None:
        if event == e2e.end:
            return ()
        for h in steps:
            if h.start == event and h.end not in seen:
                rest = walk(h.end, seen | {h.end})
                if rest is not None:
                    return (h, *rest)
        return None

    return walk(e2e.start, frozenset({e2e.start})) or ()


def headline(data: RunData, tables: Tables, path: str = KUBE_PROXY) -> list[ModeAnswer]:
    """Per mode (display order), the end-to-end answer of each direction and scenario on
    `path` (kube-proxy's, or the mesh's); modes without rows of the path are left out."""
    hops = with_scope(data.hops)
    summary = tables.summary
    out = []
    for mode in sort_modes(summary["proxy_mode"].unique() if not summary.empty else []):
        answers = []
        for direction in [d for d in DIRECTIONS if d in PATH_END_TO_END[path]]:
            rows = summary.loc[(summary["proxy_mode"] == mode)
                               & (summary["direction"] == direction)
                               & (summary["hop"] == end_to_end(direction, path))
                               & (summary["scope"] == SCOPE_ALL)]
            for _, row in rows.iterrows():
                part = hops.loc[(hops["proxy_mode"] == mode) & (hops["direction"] == direction)
                                & (hops["scenario"] == row["scenario"])]
                answers.append(_direction(row, part, _mode_meta(data.meta, mode), path))
        if answers or path == KUBE_PROXY:
            out.append(ModeAnswer(mode, tuple(answers)))
    return out


def _direction(row: pd.Series, part: pd.DataFrame, metas: list[Mapping[str, Any]],
               path: str = KUBE_PROXY) -> DirectionAnswer:
    direction, p50 = str(row["direction"]), _quantile(row, "p50")
    parts = tuple(_share(direction, h, ms, p50.value_ms)
                  for h, ms in slowest_node_medians(part, direction, path).items())
    dominant = None
    if not p50.censored and parts:
        dominant = max(parts, key=lambda p: (np.nan_to_num(p.median_ms, nan=-np.inf)))
    why = WHY.get(dominant.hop, _no_why)(dominant, metas) if dominant else (
        "more than half of the trials were censored on some node: no hop can be credited")
    return DirectionAnswer(direction, str(row["scenario"]), str(row["hop"]), str(row["label"]),
                           int(row["n"]), int(row["n_censored"]), p50, _quantile(row, "p99"),
                           parts, dominant, why)


def slowest_node_medians(part: pd.DataFrame, direction: str,
                         path: str = KUBE_PROXY) -> dict[str, float]:
    """hop -> median over trials of that hop on the trial's slowest node (censored: +inf).

    `part` holds one mode's and scenario's hops of `direction` (with scope). The slowest node
    of a trial has the largest end to end on `path`; a censored end to end counts as the
    largest; ties go to the first node by name. A component missing on that node counts as
    censored.
    """
    scoped = with_scope(part)
    e2e = scoped.loc[(scoped["hop"] == end_to_end(direction, path))
                     & (scoped["scope"] == SCOPE_NODE)]
    if e2e.empty:
        return {}
    rank = e2e["latency_ms"].where(~e2e["censored"] & e2e["latency_ms"].notna(), np.inf)
    order = e2e.assign(_rank=rank).sort_values(["_rank", "node"], ascending=[False, True],
                                               kind="stable")
    slowest = order.drop_duplicates(TRANSITION)[[*TRANSITION, "node"]]
    out: dict[str, float] = {}
    for hop in chain(direction, path, set(scoped["hop"].astype(str).unique())):
        rows = scoped.loc[scoped["hop"] == hop.name]
        if hop.per_node:
            on = [*TRANSITION, "node"]
            picked = slowest.merge(rows.loc[rows["scope"] == SCOPE_NODE], on=on, how="left")
        else:
            picked = slowest[TRANSITION].merge(rows.loc[rows["scope"] == SCOPE_CLUSTER],
                                               on=TRANSITION, how="left")
        censored = picked["censored"].astype("boolean").fillna(True).to_numpy(dtype=bool)
        s = sample(picked["latency_ms"].to_numpy(dtype=np.float64), censored)
        out[hop.name] = float(quantiles(s, [0.5])[0])
    return out


def _share(direction: str, hop: str, median_ms: float, e2e_ms: float) -> HopShare:
    ok = np.isfinite(median_ms) and np.isfinite(e2e_ms) and e2e_ms != 0
    return HopShare(hop, label(direction, hop), median_ms,
                    median_ms / e2e_ms if ok else float("nan"))


def _quantile(row: pd.Series, name: str) -> Quantile:
    return Quantile(float(row[f"{name}_ms"]), float(row[f"{name}_lo_ms"]),
                    float(row[f"{name}_hi_ms"]), float(row.get("censored_above_ms", np.nan)))


def _mode_meta(meta: Mapping[str, Mapping[str, Any]], mode: str) -> list[Mapping[str, Any]]:
    """(run.json, its modes.<mode> block) of every run, as one mapping each."""
    return [{**run, "_mode": mode, "_mode_block": (run.get("modes") or {}).get(mode) or {}}
            for run in meta.values()]


# --- why: the run's provenance behind the dominant hop -------------------------------------

def min_sync_periods_s(metas: Iterable[Mapping[str, Any]]) -> list[float]:
    """kube-proxy's minSyncPeriod (s) as the runs recorded it, distinct, sorted.

    From `modes.<mode>.kube_proxy_config` (the local cluster's /configz per node, or the
    kubeconfig provider's ConfigMap and node views): the mode's own section
    (`iptables.minSyncPeriod`) wins over the top-level value. Else the node agents' reading
    of /configz (`resolution.agents.<node>.kube_proxy_min_sync_s`).
    """
    found: set[float] = set()
    for m in metas:
        mode, block = str(m.get("_mode", "")), m.get("_mode_block") or {}
        mine = set(_find_min_sync(block.get("kube_proxy_config"), mode))
        if not mine:
            mine = {float(a["kube_proxy_min_sync_s"]) for a in _agents(m)
                    if a.get("kube_proxy_min_sync_s") is not None}
        found |= mine
    return sorted(found)


def _agents(m: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The node agents' self-description in a run's modes.<mode>.resolution."""
    agents = ((m.get("_mode_block") or {}).get("resolution") or {}).get("agents") or {}
    return [a for a in agents.values() if isinstance(a, Mapping)]


def _find_min_sync(cfg: Any, mode: str) -> list[float]:
    """Every minSyncPeriod in a (nested) kube-proxy config, the mode's section first."""
    if isinstance(cfg, list):
        return [v for item in cfg for v in _find_min_sync(item, mode)]
    if not isinstance(cfg, Mapping):
        return []
    for key, value in cfg.items():
        if str(key).lower() == mode.lower() and isinstance(value, Mapping):
            own = _duration(_get_ci(value, "minsyncperiod"))
            if own is not None:
                return [own]
    top = _duration(_get_ci(cfg, "minsyncperiod"))
    if top is not None:
        return [top]
    return [v for value in cfg.values() for v in _find_min_sync(value, mode)]


def _get_ci(m: Mapping[str, Any], key: str) -> Any:
    return next((v for k, v in m.items() if str(k).lower() == key), None)


_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")


def _duration(raw: Any) -> float | None:
    """Seconds of a Go duration ("1s", "1m30s", "500ms") or a number; None if neither.

    (The agent has the same parser, bench.agent.kpmetrics; analysis may not import it.)"""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    text = str(raw or "").strip()
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def _s(seconds: float) -> str:
    return f"{seconds * 1000:g} ms" if seconds < 1 else f"{seconds:g} s"


def _why_sync(part: HopShare, metas: list[Mapping[str, Any]]) -> str:
    periods = min_sync_periods_s(metas)
    if not periods:
        return ("kube-proxy batches endpoint changes until its next allowed sync; its "
                "minSyncPeriod is not recorded in run.json.")
    if periods == [0.0]:
        return ("kube-proxy's minSyncPeriod is 0 s here (run.json kube_proxy_config): no "
                "batching, so this is the time of one sync itself.")
    shown = " / ".join(_s(p) for p in periods)
    ratio = ""
    if len(periods) == 1 and np.isfinite(part.median_ms) and periods[0] > 0:
        ratio = f"; the median wait is {part.median_ms / (periods[0] * 1000):.0%} of it"
    return (f"kube-proxy's minSyncPeriod is {shown} (run.json kube_proxy_config): a change "
            "that comes sooner than that after the previous sync waits for the next one"
            f"{ratio}.")


def _why_slice(part: HopShare, metas: list[Mapping[str, Any]]) -> str:
    flags = sorted({f for m in metas for args in (m.get("component_args") or {}).values()
                    for f in args if "endpointslice-updates-batch-period" in f})
    batch = (f"kube-controller-manager runs with {', '.join(flags)}" if flags else
             "no --endpointslice-updates-batch-period is recorded (default: no batching)")
    return (f"the EndpointSlice controller writes the slice after seeing the pod change; "
            f"{batch}.")


def _why_rule(part: HopShare, metas: list[Mapping[str, Any]]) -> str:
    methods = sorted({str(a["rule_method"]) for m in metas for a in _agents(m)
                      if a.get("rule_method")})
    how = f" (seen by {', '.join(methods)})" if methods else ""
    return f"the dataplane rules changed that long after kube-proxy reported its sync{how}."


def _why_probe(part: HopShare, metas: list[Mapping[str, Any]]) -> str:
    intervals = sorted({float(a["probe_interval_ns"]) / 1e6 for m in metas
                        for a in _agents(m) if a.get("probe_interval_ns")})
    every = (f"every {' / '.join(f'{i:g}' for i in intervals)} ms" if intervals
             else "at an interval not recorded in run.json")
    return f"the first answer waits for the prober's next request, sent {every}."


def _why_mesh_push(part: HopShare, metas: list[Mapping[str, Any]]) -> str:
    set_to = sorted({str(v) for m in metas
                     for k, v in ((m.get("component_env") or {}).get("istiod") or {}).items()
                     if k == "PILOT_DEBOUNCE_AFTER"})
    debounce = (f"PILOT_DEBOUNCE_AFTER={' / '.join(set_to)} (run.json component_env)"
                if set_to else "PILOT_DEBOUNCE_AFTER is not set in run.json component_env "
                "(istio's default: 100 ms)")
    return ("istiod waits for endpoint changes to settle before it pushes (its debounce: "
            f"no new change for PILOT_DEBOUNCE_AFTER); {debounce}.")


def _no_why(part: HopShare, metas: list[Mapping[str, Any]]) -> str:
    return ""


#: hop name -> the explanation of that hop from the run's provenance
WHY: dict[str, Callable[[HopShare, list[Mapping[str, Any]]], str]] = {
    "slice_to_sync": _why_sync,
    "ready_to_slice": _why_slice,
    "unready_to_slice": _why_slice,
    "sync_to_rule": _why_rule,
    "rule_to_traffic": _why_probe,
    "slice_to_push": _why_mesh_push,
    "mesh_debounce": _why_mesh_push,
}
