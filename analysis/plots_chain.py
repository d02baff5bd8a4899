"""Figures about where time goes: per-node heatmap, the median trial as a waterfall, the SLI.

These answer the maintainer's questions the distributions do not: which node is slow,
which step of the chain (kubelet → API server/etcd → EndpointSlice → kube-proxy → rules →
first request) the typical trial spends its time in, and how far kube-proxy's own SLI
histogram sits from the direct measurement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from analysis.frame import (
    DIRECTIONS,
    KUBE_PROXY,
    MESH,
    SCOPE_NODE,
    TRANSITION,
    chain_events,
    end_to_end,
    has_mesh,
    label,
    n_transitions,
    sort_modes,
)
from analysis.plotkit import Series, figure, fmt_ms, margins, no_data, plot_frame, split
from analysis.quantiles import quantiles, sample
from analysis.sli import (
    KUBE_PROXY_BUCKETS_S,
    MESH_BUCKETS_S,
    SliHistogram,
    direct_programming,
    direct_push,
    pooled,
)
from bench.results.schema import HOPS, Ev

#: the add chain as drawn in the waterfall, in order
CHAIN = ("trigger_to_ready", "ready_to_slice", "slice_to_sync", "sync_to_rule",
         "rule_to_traffic")
CHAIN_COLORS = ("#8c6d31", "#7b4173", "#3182bd", "#31a354", "#e6550d")
_ANNOTATE_MAX_NODES = 40
PLAIN = FuncFormatter(lambda v, _: f"{v:g}")


def nodes_figure(hops: pd.DataFrame) -> Figure:
    """Heatmap node x mode of end-to-end p50 and p99, one row of panels per direction."""
    scoped = plot_frame(hops)
    directions = [d for d in DIRECTIONS if ((scoped["direction"] == d)
                                            & (scoped["hop"] == end_to_end(d))).any()]
    nodes = sorted(scoped.loc[scoped["scope"] == SCOPE_NODE, "node"].unique())
    fig = figure(14, 1.2 + max(1, len(directions)) * (1.2 + 0.42 * max(3, len(nodes))))
    fig.suptitle("Per-node end-to-end latency (cell: quantile over that node's trials)",
                 fontsize=14)
    if not directions:
        no_data(fig.subplots(), "no end-to-end hops in these runs")
        return fig
    margins(fig, left=0.9, right=0.4, bottom=0.7, hspace=1.2, wspace=1.6,
            rows=len(directions), columns=2)
    axes = fig.subplots(len(directions), 2, squeeze=False)
    for row, direction in zip(axes, directions):
        hop = end_to_end(direction)
        part = scoped.loc[(scoped["direction"] == direction) & (scoped["hop"] == hop)
                          & (scoped["scope"] == SCOPE_NODE)]
        for ax, (name, q) in zip(row, (("p50", 0.5), ("p99", 0.99))):
            _heatmap(ax, part, nodes, q, f"{direction}: {label(direction, hop)} — {name}")
    return fig


def waterfall_figure(hops: pd.DataFrame) -> Figure:
    """The median add trial of each mode as a waterfall: one bar per hop, one row per node.

    The kubelet's trigger → Ready (about a readiness-probe period) would squash every later
    hop, so it gets a narrow axis of its own on the left; the right axis counts from Ready.
    A run with the mesh path gets both chains of the same trial, add and remove
    (`paths_waterfall_figure`).
    """
    scoped = plot_frame(hops)
    if has_mesh(scoped):
        return paths_waterfall_figure(scoped)
    add = scoped.loc[(scoped["direction"] == "add")
                     & scoped["hop"].isin([*CHAIN, end_to_end("add")])]
    groups = list(split(add))
    nodes = sorted(add.loc[add["scope"] == SCOPE_NODE, "node"].unique())
    height = 1.8 + max(1, len(groups)) * (0.9 + 0.45 * max(1, len(nodes)))
    fig = figure(15, height)
    fig.suptitle("Median add trial, hop by hop: kubelet → API server/etcd (T1, T2 seen on the "
                 "API watch) → EndpointSlice → kube-proxy → rules → first answer", fontsize=12)
    if not groups or not nodes:
        no_data(fig.subplots(), "no add trials with per-node hops in these runs")
        return fig
    margins(fig, left=0.9, bottom=1.2, hspace=0.75, wspace=0.25, rows=len(groups), columns=2)
    axes = fig.subplots(len(groups), 2, squeeze=False, gridspec_kw={"width_ratios": [1, 4]})
    picked = [(s, _median_chain(part)) for s, part in groups]
    found = [m for _, m in picked if m is not None]
    ready = max([m.ready for m in found], default=1.0)
    span = max([m.span for m in found], default=1.0)
    for (left, right), (s, median) in zip(axes, picked):
        if median is None:
            no_data(left, "")
            no_data(right, f"{s.label}: every add trial has a censored hop", s.label)
            continue
        _waterfall_panel(left, right, s, median, ready, span)
    handles = [Patch(color=c, label=label("add", h)) for h, c in zip(CHAIN, CHAIN_COLORS)]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=9, frameon=False)
    axes[-1][0].set_xlabel("ms since trigger")
    axes[-1][1].set_xlabel("ms since pod Ready (T1)")
    return fig


#: colours of the mesh chain's steps after the shared Ready → slice, in chain order
MESH_COLORS = ("#17becf", "#e7ba52", "#843c39", "#e377c2", "#393b79", "#637939", "#d62728",
               "#7f7f7f")
#: a chain event as a waterfall step names it (events no hop joins get "a → b" steps)
EVENT_NAMES = {Ev.TRIGGER: "trigger", Ev.POD_READY: "Ready", Ev.POD_UNREADY: "unready",
               Ev.SLICE_READY: "slice", Ev.SLICE_UNREADY: "slice", Ev.PROXY_SYNC: "sync",
               Ev.RULE_PRESENT: "rule", Ev.RULE_ABSENT: "rule gone",
               Ev.FIRST_SUCCESS: "answer", Ev.MESH_SLICE_SEEN: "istiod handled",
               Ev.MESH_PUSH: "push", Ev.EDS_SENT: "EDS sent", Ev.EDS_RECEIVED: "EDS received",
               Ev.LB_UPDATE: "balancer", Ev.PICKER_READY: "picker", Ev.MESH_FIRST: "first RPC"}
_PATH_NAMES = {KUBE_PROXY: "kube-proxy", MESH: "mesh"}


@dataclass(frozen=True)
class Step:
    """One bar of a chain in the waterfall: from one chain event to the next, ms from T1."""

    start_event: str
    end_event: str
    at_ms: float       # the start event's time since the chain's first event (T1 / R1)
    width_ms: float    # negative when the later event was stamped first
    label: str
    color: str


def chain_steps(value: Mapping[tuple[str, str], float], direction: str, path: str,
                node: str) -> list[Step]:
    """The steps of `path`'s chain (frame.chain_events) on `node` in one trial.

    `value` maps (hop, node) to the trial's latency ("" for cluster-level hops). Each
    event's time since the chain's first event is solved from the direction's hops of
    either path (the mesh's push → EDS sent is slice → EDS sent minus slice → push); the
    chain stops at the first event no hop dates. A step's label is its hop's (schema
    Hop.label) where one hop joins the two events, else "a → b" from EVENT_NAMES.
    """
    events = chain_events(direction, path)
    if not events:
        return []
    times = _event_times(value, direction, node, events[0])
    colors = (CHAIN_COLORS[1:] if path == KUBE_PROXY
              else (CHAIN_COLORS[1], *MESH_COLORS))
    steps = []
    for i, (a, b) in enumerate(zip(events, events[1:])):
        if a not in times or b not in times:
            break
        hop = next((h for h in HOPS if h.direction == direction and h.start == a
                    and h.end == b), None)
        name = hop.label if hop is not None else (
            f"{_PATH_NAMES.get(path, path)}: {EVENT_NAMES.get(a, a)} → {EVENT_NAMES.get(b, b)}")
        steps.append(Step(a, b, times[a], times[b] - times[a], name,
                          colors[i % len(colors)]))
    return steps


def _event_times(value: Mapping[tuple[str, str], float], direction: str, node: str,
                 origin: str) -> dict[str, float]:
    """Event -> ms since `origin` on `node`, propagated along the direction's hops."""
    times = {origin: 0.0}
    hops = [h for h in HOPS if h.direction == direction]
    changed = True
    while changed:
        changed = False
        for h in hops:
            width = value.get((h.name, ""), value.get((h.name, node), np.nan))
            if np.isnan(width) or (h.start in times) == (h.end in times):
                continue
            if h.start in times:
                times[h.end] = times[h.start] + width
            else:
                times[h.start] = times[h.end] - width
            changed = True
    return times


@dataclass(frozen=True)
class _PathsMedian:
    """The median trial of one series and direction: per (path, node) its steps."""

    trial: int
    complete: int
    lead_ms: float                                   # trigger → T1 / R1
    rows: list[tuple[str, str, list[Step]]]          # (path, node, steps), drawn top down

    @property
    def span(self) -> float:
        return max([s.at_ms + s.width_ms for _, _, st in self.rows for s in st] + [1e-6])


def paths_waterfall_figure(hops: pd.DataFrame) -> Figure:
    """The median trial of each mode, kube-proxy's chain and the mesh's one above the other,
    add and remove, on one time axis from T1 (pod Ready) / R1 (pod unready).

    The median trial is picked by kube-proxy's all-nodes end to end among the trials whose
    hops of both chains are complete, so the mesh's bars are the same trial's. The trigger
    → T1 / R1 gets a narrow axis of its own on the left, as in the kube-proxy waterfall.
    """
    scoped = plot_frame(hops)
    blocks = []
    for direction in DIRECTIONS:
        paths = [p for p in (KUBE_PROXY, MESH) if chain_events(direction, p)]
        if len(paths) < 2:
            continue
        needed = {h.name for p in paths for h in HOPS if h.direction == direction
                  and {h.start, h.end} <= {*chain_events(direction, p), Ev.TRIGGER}}
        part = scoped.loc[(scoped["direction"] == direction) & scoped["hop"].isin(needed)]
        for s, sub in split(part):
            blocks.append((direction, s, _paths_median(sub, direction, paths)))
    nodes = sorted(scoped.loc[scoped["scope"] == SCOPE_NODE, "node"].unique())
    rows_per = 2 * max(1, len(nodes))
    height = 2.2 + max(1, len(blocks)) * (1.1 + 0.32 * rows_per)
    fig = figure(15, height)
    fig.suptitle("Median trial, both discovery paths on the same trial: kube-proxy (Ready → "
                 "slice → sync → rule → first answer) and the mesh (Ready → slice → istiod → "
                 "push → EDS → balancer → picker → first RPC)", fontsize=11)
    if not blocks:
        no_data(fig.subplots(), "no trials with both paths in these runs")
        return fig
    margins(fig, left=1.6, bottom=1.6, hspace=0.8, wspace=0.25, rows=len(blocks), columns=2)
    axes = fig.subplots(len(blocks), 2, squeeze=False, gridspec_kw={"width_ratios": [1, 5]})
    found = [m for _, _, m in blocks if m is not None]
    span = max([m.span for m in found], default=1.0)
    lead = {d: max([m.lead_ms for dd, _, m in blocks if m is not None and dd == d],
                   default=1.0) for d, _, _ in blocks}
    legend: dict[str, list[str]] = {}  # colour -> the labels drawn in it
    for (left, right), (direction, s, median) in zip(axes, blocks):
        title = f"{s.label} · {direction}"
        if median is None:
            no_data(left, "")
            no_data(right, f"{title}: no {direction} trial with both chains complete", title)
            continue
        _paths_panel(left, right, title, median, lead[direction], span)
        for _, _, steps in median.rows:
            for step in steps:
                seen = legend.setdefault(step.color, [])
                if step.label not in seen:
                    seen.append(step.label)
    handles = [Patch(color=c, label=_merged(t)) for c, t in legend.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    axes[-1][0].set_xlabel("ms since trigger")
    axes[-1][1].set_xlabel("ms since pod Ready (T1) / unready (R1)")
    return fig


def _merged(labels: list[str]) -> str:
    """One legend text for the labels of one colour (add's and remove's step):
    "EndpointSlice controller: Ready → slice / unready → slice"."""
    heads = {t.partition(": ")[0] for t in labels}
    if len(labels) > 1 and len(heads) == 1 and all(": " in t for t in labels):
        return f"{heads.pop()}: " + " / ".join(t.partition(": ")[2] for t in labels)
    return " / ".join(labels)


def _paths_median(part: pd.DataFrame, direction: str, paths: list[str]) -> _PathsMedian | None:
    key, complete = median_trial(part, direction)
    if key is None:
        return None
    run_id, trial, service = key
    rows = part.loc[(part["trial"] == trial) & (part["run_id"] == run_id)
                    & (part["service"] == service)]
    value = {(str(r.hop), str(r.node)): float(r.latency_ms) for r in rows.itertuples(index=False)}
    nodes = sorted(rows.loc[rows["scope"] == SCOPE_NODE, "node"].unique())
    first = chain_events(direction)[0]
    lead = next((v for (h, n), v in value.items() if n == "" and any(
        x.name == h and x.direction == direction and x.start == Ev.TRIGGER and x.end == first
        for x in HOPS)), 0.0)
    drawn = [(p, n, chain_steps(value, direction, p, n)) for p in paths for n in nodes]
    return _PathsMedian(trial, complete, lead, drawn)


def _paths_panel(left: Axes, right: Axes, title: str, m: _PathsMedian, lead_max: float,
                 span: float) -> None:
    for y, (_, _, steps) in enumerate(m.rows):
        left.barh(y, m.lead_ms, left=0.0, height=0.7, color=CHAIN_COLORS[0],
                  edgecolor="white")
        for step in steps:
            right.barh(y, step.width_ms, left=step.at_ms, height=0.7, color=step.color,
                       edgecolor="white", hatch="//" if step.width_ms < 0 else None)
            if abs(step.width_ms) > 0.07 * span:
                right.text(step.at_ms + step.width_ms / 2, y, fmt_ms(step.width_ms),
                           ha="center", va="center", fontsize=8, color="white")
        end = steps[-1].at_ms + steps[-1].width_ms if steps else 0.0
        short = " + ".join(f"{EVENT_NAMES.get(st.end_event, st.end_event)} "
                           f"{fmt_ms(st.width_ms)}" for st in steps)
        right.text(max(end, 0.0) + 0.02 * span, y, f"{short} = {fmt_ms(end)}", va="center",
                   fontsize=7)
    labels = [f"{node} · {_PATH_NAMES.get(path, path)}" for path, node, _ in m.rows]
    left.text(m.lead_ms / 2, -0.62, fmt_ms(m.lead_ms), ha="center", va="bottom", fontsize=8)
    left.set_xlim(0, lead_max * 1.02 if lead_max > 0 else 1.0)
    right.set_xlim(-0.05 * span, span * 2.1)
    right.axvline(0, color="#444444", linewidth=0.8)
    for ax in (left, right):
        ax.set_yticks(range(len(labels)), labels if ax is left else [""] * len(labels))
        ax.set_ylim(len(labels) - 0.4, -0.9)
        ax.grid(alpha=0.3, axis="x")
    half = len(labels) / 2 - 0.5
    for ax in (left, right):
        ax.axhline(half, color="#999999", linewidth=0.8, linestyle="--")
    left.set_title(f"{title}: trigger", fontsize=10)
    right.set_title(f"{title}: trial {m.trial}, the median of {m.complete} trials complete on "
                    "both paths (by kube-proxy's all-nodes end to end)", fontsize=10)


def sli_figure(hops: pd.DataFrame, hists: Sequence[SliHistogram],
               problems: Sequence[str] = ()) -> Figure:
    """Per mode: kube-proxy's SLI histogram beside the direct Ready → sync-done measurement."""
    direct = direct_programming(hops)
    modes = sort_modes([*direct["proxy_mode"].unique(), *(h.proxy_mode for h in hists)])
    fig = figure(14, 1.4 + 3.2 * max(1, len(modes)))
    fig.suptitle("kube-proxy network_programming_duration SLI vs direct measurement of "
                 "the same interval (pod Ready → kube-proxy sync done, per node)", fontsize=13)
    note = "SLI: start truncated to the second, buckets ≥ 250 ms wide — a cross-check only."
    if problems:
        note += f"  {len(problems)} malformed SLI entr{'y' if len(problems) == 1 else 'ies'}"
        note += " skipped: " + "; ".join(problems[:2])
    fig.text(0.01, 0.002, note, fontsize=8, color="#555555", ha="left", va="bottom")
    if not modes:
        no_data(fig.subplots(), "no SLI data in run.json and no add trials to compare")
        return fig
    margins(fig, bottom=0.9, hspace=1.0, rows=len(modes))
    for ax, mode in zip(fig.subplots(len(modes), 1, squeeze=False).ravel(), modes):
        _sli_panel(ax, mode, pooled(hists, mode), direct.loc[direct["proxy_mode"] == mode])
    return fig


def _heatmap(ax: Axes, part: pd.DataFrame, nodes: list[str], q: float, title: str) -> None:
    cols = list(split(part))
    if not cols:
        no_data(ax, "no per-node rows", title)
        return
    grid = np.full((len(nodes), len(cols)), np.nan)
    above = np.full_like(grid, np.nan)  # largest finite value, the bound of a censored cell
    for j, (_, sub) in enumerate(cols):
        for i, (_, rows) in enumerate(_by_node(sub, nodes)):
            if len(rows):
                smp = sample(rows["latency_ms"].to_numpy(float), rows["censored"].to_numpy(bool))
                grid[i, j] = quantiles(smp, [q])[0]
                finite_x = smp.x[np.isfinite(smp.x)]
                above[i, j] = finite_x.max() if finite_x.size else np.nan
    finite = grid[np.isfinite(grid)]
    log = bool(finite.size and finite.min() > 0 and finite.max() / finite.min() > 3)
    norm: Normalize = (LogNorm(finite.min(), finite.max()) if log
                       else Normalize(finite.min(), finite.max()) if finite.size
                       else Normalize(0, 1))
    cmap = _cmap()
    image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, norm=norm)
    if len(nodes) <= _ANNOTATE_MAX_NODES:
        for (i, j), value in np.ndenumerate(grid):
            ax.text(j, i, _cell_text(value, float(above[i, j])), ha="center", va="center",
                    fontsize=9, color=_ink(value, norm, cmap))
    ax.set_xticks(range(len(cols)),
                  [f"{s.label}\nn={n_transitions(sub)} trials" for s, sub in cols])
    ax.set_yticks(range(len(nodes)), nodes)
    ax.set_title(title, fontsize=10)
    if finite.size:
        bar = ax.figure.colorbar(image, ax=ax, label="ms" + (" (log)" if log else ""))
        if log:
            bar.ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        bar.ax.yaxis.set_major_formatter(PLAIN)
        bar.ax.yaxis.set_minor_formatter(NullFormatter())


def _cell_text(value: float, above: float) -> str:
    if np.isnan(value):
        return "n/a"
    if np.isposinf(value):
        bound = f"> {fmt_ms(above)}\n" if np.isfinite(above) else ""
        return f"{bound}(censored)"
    return fmt_ms(value)


def _by_node(df: pd.DataFrame, nodes: list[str]) -> list[tuple[str, pd.DataFrame]]:
    groups = dict(tuple(df.groupby("node", sort=False)))
    return [(n, groups.get(n, df.iloc[0:0])) for n in nodes]


def _cmap() -> Colormap:
    return colormaps["viridis"].with_extremes(bad="#d9d9d9")


def _ink(value: float, norm: Normalize, cmap: Colormap) -> str:
    if not np.isfinite(value):
        return "#a00000"
    r, g, b, _ = cmap(norm(value))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def median_trial(part: pd.DataFrame, direction: str = "add"
                 ) -> tuple[tuple[str, int, str] | None, int]:
    """((run_id, trial, service), number of complete ones) of the lower-median transition.

    A transition's end to end is the max over nodes of kube-proxy's end-to-end hop of
    `direction` (add: Ready → first answer); it is complete when no row of `part` (the
    chains drawn and the end-to-end hops) is censored.
    """
    bad = part.loc[part["censored"] | part["latency_ms"].isna(), TRANSITION]
    e2e = part.loc[(part["hop"] == end_to_end(direction)) & (part["scope"] == SCOPE_NODE)]
    by_trial = e2e.groupby(TRANSITION, sort=False)["latency_ms"].max()
    complete = by_trial.drop(index=pd.MultiIndex.from_frame(bad.drop_duplicates()),
                             errors="ignore")
    if complete.empty:
        return None, 0
    ordered = complete.sort_values(kind="stable")
    run_id, trial, service = ordered.index[(len(ordered) - 1) // 2]
    return (str(run_id), int(trial), str(service)), len(ordered)


@dataclass(frozen=True)
class _Median:
    """The median trial of a series: its hops along the chain, per node."""

    trial: int
    complete: int
    ready: float                                 # trigger → Ready, ms
    chains: dict[str, list[tuple[str, float]]]   # node -> [(hop, ms)] in chain order

    @property
    def span(self) -> float:
        """Ready → end of the longest node chain, ms."""
        return max([sum(w for _, w in c[1:]) for c in self.chains.values()] + [1e-6])


def _median_chain(part: pd.DataFrame) -> _Median | None:
    key, complete = median_trial(part)
    if key is None:
        return None
    run_id, trial, service = key
    rows = part.loc[(part["trial"] == trial) & (part["run_id"] == run_id)
                    & (part["service"] == service)]
    value = {(str(r.hop), str(r.node)): float(r.latency_ms) for r in rows.itertuples(index=False)}
    nodes = sorted(rows.loc[rows["scope"] == SCOPE_NODE, "node"].unique())
    return _Median(trial, complete, value.get((CHAIN[0], ""), 0.0),
                   {node: _chain(value, node) for node in nodes})


def _waterfall_panel(left: Axes, right: Axes, s: Series, m: _Median, ready_max: float,
                     span: float) -> None:
    nodes = list(m.chains)
    for y, node in enumerate(nodes):
        start = -m.ready
        for hop, width in m.chains[node]:
            color = CHAIN_COLORS[CHAIN.index(hop)]
            for ax in (left, right):
                ax.barh(y, width, left=start + (m.ready if ax is left else 0.0), height=0.7,
                        color=color, edgecolor="white", hatch="//" if width < 0 else None)
            if hop != CHAIN[0] and abs(width) > 0.07 * span:
                right.text(start + width / 2, y, fmt_ms(width), ha="center", va="center",
                           fontsize=8, color="white")
            start += width
        steps = " + ".join(f"{_SHORT[h]} {fmt_ms(w)}" for h, w in m.chains[node][1:])
        right.text(start + 0.02 * span, y, f"{steps} = {fmt_ms(start)}", va="center",
                   fontsize=8)
    left.text(m.ready / 2, -0.62, fmt_ms(m.ready), ha="center", va="bottom", fontsize=8)
    left.set_xlim(0, ready_max * 1.02 if ready_max > 0 else 1.0)
    right.set_xlim(-0.02 * span, span * 1.75)
    for ax in (left, right):
        ax.set_yticks(range(len(nodes)), nodes if ax is left else [""] * len(nodes))
        ax.set_ylim(len(nodes) - 0.4, -0.9)
        ax.grid(alpha=0.3, axis="x")
    left.set_title(f"{s.label}: kubelet", fontsize=10)
    right.set_title(f"{s.label}: trial {m.trial}, the median of {m.complete} complete trials "
                    "(by all-nodes Ready → first answer)", fontsize=10)


_SHORT = {"trigger_to_ready": "kubelet", "ready_to_slice": "slice", "slice_to_sync": "sync",
          "sync_to_rule": "rule", "rule_to_traffic": "answer"}


def _chain(value: Mapping[tuple[str, str], float], node: str) -> list[tuple[str, float]]:
    """(hop, ms) along the chain for one node, stopping at the first missing hop."""
    out = []
    for hop in CHAIN:
        width = value.get((hop, ""), value.get((hop, node), np.nan))
        if np.isnan(width):
            break
        out.append((hop, width))
    return out


def mesh_sli_figure(hops: pd.DataFrame, hists: Sequence[SliHistogram]) -> Figure:
    """Per mode: istiod's convergence histogram beside the direct push → EDS sent."""
    direct = direct_push(hops)
    modes = sort_modes([*direct["proxy_mode"].unique(), *(h.proxy_mode for h in hists)])
    fig = figure(14, 1.4 + 3.2 * max(1, len(modes)))
    fig.suptitle("istiod's pilot_proxy_convergence_time vs direct measurement of the same "
                 "interval (push start after the debounce → EDS sent, per node)", fontsize=13)
    fig.text(0.01, 0.002, "convergence time: every push istiod made in the mode (all its "
             "clients, every type), buckets ≥ 100 ms wide — a cross-check only.",
             fontsize=8, color="#555555", ha="left", va="bottom")
    if not modes:
        no_data(fig.subplots(), "no mesh convergence data and no mesh hops to compare")
        return fig
    margins(fig, bottom=0.9, hspace=1.0, rows=len(modes))
    for ax, mode in zip(fig.subplots(len(modes), 1, squeeze=False).ravel(), modes):
        _sli_panel(ax, mode, pooled(hists, mode), direct.loc[direct["proxy_mode"] == mode],
                   direct_label="direct, push → EDS sent", sli_label="istiod convergence time",
                   bounds=MESH_BUCKETS_S, scope=", every push",
                   missing="istiod convergence time")
    return fig


def _sli_panel(ax: Axes, mode: str, hist: SliHistogram | None, direct: pd.DataFrame,
               direct_label: str = "direct, Ready → sync done",
               sli_label: str = "kube-proxy SLI",
               bounds: tuple[float, ...] = KUBE_PROXY_BUCKETS_S,
               scope: str = ", all nodes", missing: str = "SLI data") -> None:
    upper = np.asarray(hist.upper_s if hist else (*bounds, np.inf))
    secs = direct["latency_ms"].to_numpy(float) / 1000.0
    cens = int(direct["censored"].sum())
    measured = np.bincount(np.searchsorted(upper, secs[np.isfinite(secs)], side="left"),
                           minlength=upper.size)[: upper.size]
    sli = np.asarray(hist.counts if hist else np.zeros(upper.size), dtype=float)
    last = int(max(np.flatnonzero(measured).max(initial=0),
                   np.flatnonzero(sli).max(initial=0)))
    shown = slice(0, min(upper.size, last + 2))
    x = np.arange(upper.size)[shown]
    n_direct = max(len(direct), 1)
    ax.bar(x + 0.2, measured[shown] / n_direct, width=0.4, color="#444444",
           label=f"{direct_label} (n={len(direct)} node × trials"
                 + (f", {cens} censored, not binned)" if cens else ")"))
    if hist is not None and hist.total:
        ax.bar(x - 0.2, sli[shown] / hist.total, width=0.4, color="#e6550d", alpha=0.85,
               label=f"{sli_label} (n={hist.total} observations{scope})")
    else:
        ax.text(0.5, 0.6, f"no {missing} for {mode} in run.json", transform=ax.transAxes,
                ha="center", fontsize=13, color="#a00000",
                bbox={"facecolor": "white", "edgecolor": "#a00000"})
    ax.set_xticks(x, [_bucket_label(upper, i) for i in x], fontsize=8)
    ax.set_ylabel("fraction")
    ax.set_xlabel("bucket (upper bound, seconds)")
    ax.set_title(mode, fontsize=11)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=9, loc="upper right")


def _bucket_label(upper: np.ndarray, i: int) -> str:
    if np.isinf(upper[i]):
        return f">{upper[i - 1]:g}" if i else "all"
    return f"≤{upper[i]:g}"
