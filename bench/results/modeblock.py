"""run.json's per-mode block (`modes[mode]`): one typed record, and how resumed runs add up.

The runner writes one `ModeBlock` per proxy mode when the mode's trials are done; the CLI's
instruments table and report.html read it (through `schema.instruments`). A run stopped and
continued with --resume measures a mode in several segments, each ending with its own
block; `accumulate` folds a segment's block into what run.json already holds, so the block
describes the whole run: counts summed (trials, elapsed time, errors, watch restarts, the
prober's fine-interval time, the SLI histogram, kube-proxy's sync histograms, syncs and CPU,
the connect-time histograms), the rate recomputed, agent CPU averaged
weighted by elapsed time, and each segment kept under `segments`. What is a state rather
than a sum (clock offsets, resolutions, kube-proxy's config) is the latest segment's. The
API watch delay is computed by the runner over all of the mode's stored events, so it is
the whole run's already.

The runner also writes a segment's block so far every few seconds
(`runner.CHECKPOINT_EVERY_S`) and when the segment is interrupted, so a segment stopped
early counts too; one killed with SIGKILL counts up to its last checkpoint (its later
trials are in the data, bench.results.reader, but not in `trials` and `elapsed_s`).
Pure data and arithmetic: no I/O, so `analysis` may import it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypedDict, cast


class Segment(TypedDict):
    """One stretch of a mode's trials, from its start (or --resume) to its end."""

    trials: int
    elapsed_s: float
    trials_per_minute: float
    proxy_switch_s: float


class ModeBlock(TypedDict, total=False):
    """run.json `modes[mode]`. total=False: a run.json of an older hopbench may lack keys."""

    trials: int                          # over all segments
    elapsed_s: float                     # over all segments
    trials_per_minute: float             # trials / elapsed_s
    proxy_switch_s: float                # the latest segment's
    segments: list[Segment]              # in run order; one unless the run was resumed
    agent_cpu_fraction: dict[str, float]  # per node, fraction of one core
    agent_errors: dict[str, int]
    watch_restarts: int
    watch_delay_ms: dict[str, float]
    resolution: dict[str, Any]           # api_watch_ns, audit_ns, agents: node -> info
    clock_offsets: dict[str, dict[str, int | str]]  # offset_ns, uncertainty_ns, clock
    sli: dict[str, Any]                  # node -> {buckets_s, counts, cumulative}
    kube_proxy_config: dict[str, Any]
    # at a sweep point with background Services (bench.sweep), the latest segment's:
    program_s: float                     # until every node's rules held all of them
    program_from: str                    # what program_s counts from (bench.sweep)
    program_upper_bound: bool            # program_s may be late (see bench.sweep)
    program_seen_s: float                # local: until the agents saw every node complete
    rules: dict[str, int]                # per node, rules (or elements) at that moment
    bg_routed: dict[str, int]            # per node, background Services routed
    trial_timeout_s: float               # --trial-timeout, raised to the point (bench.sweep)
    proxy_stats: dict[str, Any]          # node -> bench.proxystats.ProxyStats (the mode's)
    connect_ms: dict[str, Any]           # node -> {bounds_ms, counts}: connect times
    apiserver_rss_bytes: int             # absent when not measured
    etcd_rss_bytes: int                  # absent when etcd is out of reach (kubeconfig)
    mesh: str                            # the mesh measured beside kube-proxy (--mesh)
    mesh_client_errors: dict[str, list[str]]  # node -> what its mesh client reported
    istiod_rss_bytes: int                # the local istiod's, at the mode's end
    mesh_sli: dict[str, Any]             # {"istiod": {buckets_s, counts}}: istiod's
    #                                      pilot_proxy_convergence_time over the mode
    mesh_client_cpu_fraction: dict[str, float]  # per node, the Go mesh client's (not in
    #                                             agent_cpu_fraction: not a reaped child)


#: per-node agent info that adds up over segments (resolution.agents[node])
_AGENT_SUMS = ("probe_focused_s", "early_rule_changes")


def rate(trials: int, elapsed_s: float) -> float:
    """Trials per minute, rounded as run.json stores it; NaN-free (0 when nothing ran)."""
    return round(trials / elapsed_s * 60, 1) if elapsed_s > 0 else 0.0


def segment_of(block: ModeBlock) -> Segment:
    """The segment a block describes (a block written before segments were kept is one)."""
    trials, elapsed = int(block.get("trials") or 0), float(block.get("elapsed_s") or 0.0)
    return Segment(trials=trials, elapsed_s=elapsed,
                   trials_per_minute=float(block.get("trials_per_minute")
                                           or rate(trials, elapsed)),
                   proxy_switch_s=float(block.get("proxy_switch_s") or 0.0))


def accumulate(before: ModeBlock | None, seg: ModeBlock) -> ModeBlock:
    """The block of the whole run: `before` (run.json's, or None) followed by segment `seg`."""
    if not before:
        return cast(ModeBlock, {**seg, "segments": [segment_of(seg)]})
    segments = [*(before.get("segments") or [segment_of(before)]), segment_of(seg)]
    trials = sum(s["trials"] for s in segments)
    elapsed = round(sum(s["elapsed_s"] for s in segments), 1)
    out = cast(ModeBlock, {**before, **seg})
    out["trials"], out["elapsed_s"] = trials, elapsed
    out["trials_per_minute"] = rate(trials, elapsed)
    out["segments"] = segments
    out["agent_cpu_fraction"] = _weighted(
        before.get("agent_cpu_fraction") or {}, float(before.get("elapsed_s") or 0.0),
        seg.get("agent_cpu_fraction") or {}, float(seg.get("elapsed_s") or 0.0))
    out["agent_errors"] = _sum(before.get("agent_errors") or {}, seg.get("agent_errors") or {})
    out["watch_restarts"] = (int(before.get("watch_restarts") or 0)
                             + int(seg.get("watch_restarts") or 0))
    out["resolution"] = _resolution(before.get("resolution") or {}, seg.get("resolution") or {})
    out["sli"] = _sli(before.get("sli") or {}, seg.get("sli") or {})
    if "connect_ms" in before or "connect_ms" in seg:
        out["connect_ms"] = _per_node(before.get("connect_ms") or {},
                                      seg.get("connect_ms") or {}, _connect)
    if "proxy_stats" in before or "proxy_stats" in seg:
        out["proxy_stats"] = _per_node(before.get("proxy_stats") or {},
                                       seg.get("proxy_stats") or {}, _proxy_stats)
    return out


def _sum(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {n: int(a.get(n, 0)) + int(b.get(n, 0)) for n in {**a, **b}}


def _weighted(a: Mapping[str, float], wa: float, b: Mapping[str, float], wb: float
              ) -> dict[str, float]:
    """Per node, the mean of a and b weighted by elapsed time (NaN or absent: the other)."""
    out = {}
    for n in {**a, **b}:
        parts = [(float(x), w) for x, w in ((a.get(n), wa), (b.get(n), wb))
                 if x is not None and not math.isnan(float(x)) and w > 0]
        total = sum(w for _, w in parts)
        out[n] = sum(x * w for x, w in parts) / total if total else math.nan
    return out


def _resolution(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    agents_a, agents_b = a.get("agents") or {}, b.get("agents") or {}
    agents = {}
    for n in {**agents_a, **agents_b}:
        old, new = agents_a.get(n) or {}, agents_b.get(n) or {}
        agents[n] = {**old, **new, **{k: old.get(k, 0) + new.get(k, 0) for k in _AGENT_SUMS
                                      if k in old or k in new}}
    return {**a, **b, "agents": agents}


def _sli(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Per node, bucket counts summed when both segments used the same buckets (de-cumulated
    deltas, as the runner writes them); else the latest segment's."""
    out = {**a, **b}
    for n in set(a) & set(b):
        x, y = a[n], b[n]
        if (x.get("buckets_s") == y.get("buckets_s") and not x.get("cumulative")
                and not y.get("cumulative") and len(x.get("counts", [])) == len(y["counts"])):
            out[n] = {**y, "counts": [p + q for p, q in zip(x["counts"], y["counts"])]}
    return out


def _per_node(a: Mapping[str, Any], b: Mapping[str, Any], merge: Any) -> dict[str, Any]:
    return {n: merge(a[n], b[n]) if n in a and n in b else b.get(n, a.get(n))
            for n in {**a, **b}}


def _add_hist(x: Mapping[str, Any] | None, y: Mapping[str, Any], bounds: str
              ) -> Mapping[str, Any]:
    """Per-bucket counts summed when both use the same bounds; else the latest."""
    if x and x.get(bounds) == y.get(bounds) and len(x["counts"]) == len(y["counts"]):
        return {**y, "counts": [p + q for p, q in zip(x["counts"], y["counts"])]}
    return y


def _connect(a: Mapping[str, Any], b: Mapping[str, Any]) -> Mapping[str, Any]:
    return _add_hist(a, b, "bounds_ms")


def _proxy_stats(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """kube-proxy's figures over both segments: histograms, syncs and CPU added up; RSS and
    the rule count are the latest segment's."""
    out = {**a, **b}
    for key in ("sync_all_s", "sync_full_s", "sync_partial_s"):
        if key in b:
            out[key] = _add_hist(a.get(key), b[key], "bounds_s")
    out["syncs"] = int(a.get("syncs") or 0) + int(b.get("syncs") or 0)
    out["cpu_s"] = round(float(a.get("cpu_s") or 0.0) + float(b.get("cpu_s") or 0.0), 3)
    return out
