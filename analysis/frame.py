"""Conventions on the hops table shared by stats and plots: scope, chain order, labels.

hops.parquet mixes three kinds of rows for the same hop name: cluster-level hops (node ""),
one row per node for per-node hops, and the "all nodes converged" row (node "*", the max
over nodes). They answer different questions and must never be pooled, so every table
and plot here groups by `scope` as well as by hop.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from bench.results.schema import ALL_NODES, CLUSTER, END_TO_END, HOPS, MESH_END_TO_END, Hop

SCOPE_CLUSTER = "cluster"    # cluster-level hop, one row per trial
SCOPE_NODE = "node"          # a per-node hop on one node (pooled over nodes when grouped)
SCOPE_ALL = "all-nodes"      # max over nodes: when every node had converged

KUBE_PROXY = "kube-proxy"   # schema.Hop.path of kube-proxy's chain (the default)
MESH = "mesh"               # schema.Hop.path of the service mesh's chain (run with --mesh)
#: discovery paths in display order: kube-proxy's first, the others as schema.HOPS has them
PATHS: tuple[str, ...] = tuple(dict.fromkeys([KUBE_PROXY, *(h.path for h in HOPS)]))
#: path -> direction -> its end-to-end hop
PATH_END_TO_END: dict[str, dict[str, str]] = {KUBE_PROXY: END_TO_END, MESH: MESH_END_TO_END}
#: (direction, hop) -> position in the chain, for sorting tables and plot panels: each
#: path's hops together (kube-proxy's first), in schema.HOPS order within a path
CHAIN_ORDER: dict[tuple[str, str], int] = {
    (h.direction, h.name): i for i, h in enumerate(
        sorted(HOPS, key=lambda h: PATHS.index(h.path)))}
LABELS: dict[tuple[str, str], str] = {(h.direction, h.name): h.label for h in HOPS}
PATH_OF: dict[tuple[str, str], str] = {(h.direction, h.name): h.path for h in HOPS}
SCOPE_ORDER = {SCOPE_CLUSTER: 0, SCOPE_NODE: 1, SCOPE_ALL: 2}
MODE_ORDER = {"iptables": 0, "nftables": 1, "ipvs": 2}
DIRECTIONS = ("add", "remove", "restart")
BLACKHOLE = "blackhole"
#: one measured transition (docs/design.md §1: one endpoint change of one Service) within a mode
TRANSITION = ["run_id", "trial", "service"]
#: the bootstrap's resampling unit: parallel Services of one trial share kube-proxy syncs
CLUSTER_UNIT = ["run_id", "trial"]


def n_transitions(df: pd.DataFrame) -> int:
    """Distinct transitions among `df`'s rows (one mode, direction and scenario)."""
    return len(df[TRANSITION].drop_duplicates()) if len(df) else 0


def with_scope(hops: pd.DataFrame) -> pd.DataFrame:
    """`hops` with a `scope` column (SCOPE_*), unless it already has one."""
    if "scope" in hops.columns:
        return hops
    node = hops["node"].to_numpy(dtype=object)
    scope = np.where(node == CLUSTER, SCOPE_CLUSTER,
                     np.where(node == ALL_NODES, SCOPE_ALL, SCOPE_NODE))
    return hops.assign(scope=pd.Series(scope, index=hops.index, dtype="str"))


def label(direction: str, hop: str) -> str:
    """What a reader sees for a hop (schema label, or the raw name for unknown hops)."""
    return LABELS.get((direction, hop), hop)


def end_to_end(direction: str, path: str = KUBE_PROXY) -> str:
    """The end-to-end hop of a direction on a path (schema.END_TO_END, MESH_END_TO_END)."""
    return PATH_END_TO_END[path][direction]


def path_of(direction: str, hop: str) -> str:
    """The discovery path of a hop (schema Hop.path; kube-proxy for unknown hops)."""
    return PATH_OF.get((direction, hop), KUBE_PROXY)


def hop_of(direction: str, hop: str) -> Hop | None:
    """The schema declaration of a hop of a direction (names repeat across directions)."""
    return next((h for h in HOPS if h.direction == direction and h.name == hop), None)


def chain_events(direction: str, path: str = KUBE_PROXY) -> tuple[str, ...]:
    """The events a path's chain passes, in order, from its end-to-end hop's start to its end.

    Read from schema.HOPS: the start and end events of the path's hops of `direction` that
    are declared before its end-to-end hop, in declaration order, from the end-to-end start
    on (the shared start, e.g. T1, first when the path's own hops begin later, at T2), and
    the end-to-end end last. kube-proxy's add chain: pod_ready, slice_ready, proxy_sync,
    rule_present, first_success; the mesh's adds the mesh control plane, EDS and client steps.
    """
    e2e = hop_of(direction, PATH_END_TO_END.get(path, {}).get(direction, ""))
    if e2e is None:
        return ()
    mine = [h for h in HOPS if h.direction == direction and h.path == path]
    before = mine[:mine.index(e2e)]
    events = list(dict.fromkeys(e for h in before for e in (h.start, h.end)))
    events = events[events.index(e2e.start):] if e2e.start in events else [e2e.start, *events]
    if e2e.end in events:
        events = events[:events.index(e2e.end)]
    return (*events, e2e.end)


def has_mesh(hops: pd.DataFrame) -> bool:
    """Whether the runs measured the mesh path (a run without --mesh has no mesh rows)."""
    if hops.empty:
        return False
    pairs = hops[["direction", "hop"]].drop_duplicates()
    return any(path_of(str(d), str(h)) == MESH
               for d, h in pairs.itertuples(index=False, name=None))


def mode_key(mode: str) -> tuple[int, str]:
    """Sort key: iptables, nftables, ipvs, then any other mode alphabetically."""
    return (MODE_ORDER.get(mode, len(MODE_ORDER)), mode)


def sort_modes(modes: Iterable[object]) -> list[str]:
    """Distinct modes in display order (see mode_key)."""
    return sorted({str(m) for m in modes}, key=mode_key)


def chain_sorted(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in chain order: direction, scenario, hop position, scope, mode, (node)."""
    if df.empty:
        return df.reset_index(drop=True)
    keys = pd.DataFrame({
        "_d": df["direction"].map({d: i for i, d in enumerate(DIRECTIONS)}).fillna(9),
        "_s": df["scenario"],
        "_h": [CHAIN_ORDER.get((d, h), 999) for d, h in zip(df["direction"], df["hop"])],
        "_c": df["scope"].map(SCOPE_ORDER).fillna(9) if "scope" in df else 0,
        "_m": _mode_rank(df["proxy_mode"]) if "proxy_mode" in df else 0,
        "_n": df.get("node", ""),
    }, index=df.index)
    order = keys.sort_values(["_d", "_s", "_h", "_c", "_m", "_n"], kind="stable").index
    return df.loc[order].reset_index(drop=True)


def _mode_rank(modes: pd.Series) -> pd.Series:
    rank = {m: i for i, m in enumerate(sort_modes(modes))}
    return modes.map(rank)
