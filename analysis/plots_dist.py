"""Distribution figures: ECDF per hop, box per hop x mode, the black-hole window, the mesh
path against kube-proxy's.

One panel per hop, because hops differ by orders of magnitude (a kubelet readiness probe
takes a second, a rule lands in a millisecond) and each needs its own axis. Per-node hops
are pooled over nodes (scope "node"), and the end-to-end hop gets an extra panel for "all
nodes converged". Censored trials stay in the denominators: an ECDF stops below 1 by the
censored fraction, and a whisker in the censored mass is drawn as an arrow off the top.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.frame import (
    BLACKHOLE,
    KUBE_PROXY,
    PATH_END_TO_END,
    PATHS,
    SCOPE_ALL,
    SCOPE_CLUSTER,
    SCOPE_NODE,
    label,
)
from analysis.plotkit import (
    figure,
    first_column,
    log_axis,
    margins,
    n_label,
    no_data,
    plot_frame,
    split,
    wants_log,
)
from analysis.plotkit import grid as plot_grid
from analysis.quantiles import quantiles, sample
from analysis.stats import paired_end_to_end
from bench.results.schema import HOPS

COLUMNS = 4
TITLES = {"add": "Add (pod becomes Ready)", "remove": "Remove (pod goes away)",
          "restart": "Restart (kube-proxy restarted on one node)"}
#: the heading over a path's panels (kube-proxy's gets one only beside another path's)
PATH_TITLES = {KUBE_PROXY: "kube-proxy path: EndpointSlice → kube-proxy → rules → prober",
               "mesh": "mesh path: EndpointSlice → istiod → xDS (EDS) → proxyless gRPC client"}

Panel = tuple[str, str, str]  # (hop, scope, title)


def panel_groups(hops: pd.DataFrame, direction: str) -> list[tuple[str, list[Panel]]]:
    """(path, its panels) of a direction, kube-proxy's first: each path's hops in chain
    order (schema Hop.path), then its end-to-end hop at "all nodes converged"."""
    pairs = hops[["hop", "scope"]].drop_duplicates()
    present = set(zip(pairs["hop"].tolist(), pairs["scope"].tolist()))
    out = []
    for path in PATHS:
        group = []
        for hop in HOPS:
            scope = SCOPE_NODE if hop.per_node else SCOPE_CLUSTER
            if (hop.direction == direction and hop.path == path
                    and (hop.name, scope) in present):
                # the mesh's labels are longer: its "(per node)" goes on a line of its own
                wrap = "\n" if path != KUBE_PROXY and len(hop.label) > 36 else " "
                group.append((hop.name, scope,
                              hop.label + (f"{wrap}(per node)" if hop.per_node else "")))
        e2e = PATH_END_TO_END.get(path, {}).get(direction)
        if e2e is not None and (e2e, SCOPE_ALL) in present:
            group.append((e2e, SCOPE_ALL, f"{label(direction, e2e)}\n(all nodes converged)"))
        if group:
            out.append((path, group))
    return out


def panels(hops: pd.DataFrame, direction: str) -> list[Panel]:
    """(hop, scope, title) of every panel of a direction, in chain order, path by path."""
    return [p for _, group in panel_groups(hops, direction) for p in group]


@dataclass(frozen=True)
class _Grid:
    """The cells of a per-hop figure, row by row: (path, panel), or None for an empty cell
    (a path's panels start on a row of their own); `headed`: whether paths get headings."""

    cells: list[tuple[str, Panel] | None]
    headed: bool

    @property
    def rows(self) -> int:
        return max(1, -(-len(self.cells) // COLUMNS))


def _per_hop_figure(hops: pd.DataFrame, direction: str, row_height: float, what: str
                    ) -> tuple[Figure, pd.DataFrame, _Grid]:
    """The grid shared by the per-hop figures: one panel per hop present, a title, and a
    "no data" panel (no cells) when the runs have no trial of this direction.

    With more than one path (a run with --mesh), each path's panels start on a row of their
    own under the path's heading."""
    scoped = _direction(hops, direction)
    groups = panel_groups(scoped, direction)
    cells: list[tuple[str, Panel] | None] = []
    for path, group in groups:
        cells += [None] * (-len(cells) % COLUMNS) + [(path, p) for p in group]
    grid = _Grid(cells, len(groups) > 1)
    extra = _HEADING + _HEADING_GAP * (grid.rows - 1) if grid.headed else 0.0
    fig = figure(4.2 * COLUMNS, row_height * grid.rows + 0.8 + extra)
    fig.suptitle(f"{TITLES.get(direction, direction)}: {what}", fontsize=14)
    if not cells:
        no_data(fig.subplots(), f"no {direction} trials in these runs")
    return fig, scoped, grid


_HEADING = 0.5       # inches over the first row for its path's heading
_HEADING_GAP = 0.35  # more room between rows for the headings of the later paths


def _axes(fig: Figure, grid: _Grid, *, bottom: float = 0.6, hspace: float = 0.95,
          sharey: bool = False) -> list[tuple[Axes, Panel]]:
    """An axes per panel of `grid` (as plotkit.panel_grid; empty cells hidden), and each
    path's heading over its first row when the figure shows several paths."""
    if grid.headed:
        hspace += _HEADING_GAP
    margins(fig, top=0.7 + (_HEADING if grid.headed else 0.0), bottom=bottom, hspace=hspace,
            rows=grid.rows, columns=COLUMNS, wspace=0.35 if sharey else 0.9)
    axes = plot_grid(fig, len(grid.cells), COLUMNS, sharey)
    out, last = [], None
    for ax, cell in zip(axes, grid.cells):
        if sharey:
            ax.tick_params(axis="y", labelleft=first_column(ax))
        if cell is None:
            ax.set_visible(False)
            continue
        path, panel = cell
        if grid.headed and path != last:
            fig.text(0.005, ax.get_position().y1 + 0.32 / fig.get_size_inches()[1],
                     PATH_TITLES.get(path, f"{path} path"), fontsize=12, fontweight="bold",
                     ha="left", va="bottom", color="#333333")
        last = path
        out.append((ax, panel))
    return out


def ecdf_figure(hops: pd.DataFrame, direction: str) -> Figure:
    """ECDF of every hop of `direction`, modes overlaid, log x where the values span > 10x."""
    fig, scoped, cells = _per_hop_figure(hops, direction, 3.6,
                                         "ECDF per hop, per-node hops pooled over nodes")
    if not cells.cells:
        return fig
    for ax, (hop, scope, title) in _axes(fig, cells, sharey=True):
        _ecdf_panel(ax, _rows(scoped, hop, scope), title)
    return fig


def box_figure(hops: pd.DataFrame, direction: str) -> Figure:
    """Box per hop x mode from censoring-aware quantiles: p25-p75 box, median, p1-p99."""
    fig, scoped, cells = _per_hop_figure(
        hops, direction, 4.0, "latency per hop and mode "
        "(box p25–p75, line p50, whiskers p1–p99; ↑ = in the censored tail)")
    if not cells.cells:
        return fig
    for ax, (hop, scope, title) in _axes(fig, cells, bottom=0.85, hspace=1.3):
        _box_panel(ax, _rows(scoped, hop, scope), title)
    return fig


def blackhole_figure(hops: pd.DataFrame) -> Figure:
    """Removal black-hole window (first to last failed request) per node x trial, by mode."""
    scoped = plot_frame(hops)
    rows = scoped.loc[(scoped["hop"] == BLACKHOLE) & (scoped["scope"] == SCOPE_NODE)]
    fig = figure(14, 5)
    margins(fig, columns=2)
    fig.suptitle("Removal black hole: requests failing while the rule still points at the "
                 "gone pod (per node × trial)", fontsize=14)
    left, right = fig.subplots(1, 2)
    if rows.empty:
        no_data(left, "no black-hole rows (no removal trials)", "window")
        no_data(right, "no black-hole rows (no removal trials)", "failed requests")
        return fig
    for s, part in split(rows):
        lat = part["latency_ms"].to_numpy(dtype=float)
        hit = int((lat > 0).sum())
        pct = 100.0 * hit / len(part)
        text = n_label(s.label, len(part), int(part["censored"].sum()))
        _ecdf(left, lat, part["censored"].to_numpy(bool), s.color, s.linestyle,
              f"{text}: {pct:.0f}% saw failures")
        counts = part["value"].to_numpy(dtype=float)
        counts = counts[np.isfinite(counts) & (counts > 0)]
        if counts.size:
            bins = np.arange(0.5, max(2.0, np.quantile(counts, 0.995)) + 1.5)
            right.hist(counts, bins=bins, histtype="step", color=s.color,
                       linestyle=s.linestyle, linewidth=1.6, label=f"{s.label} (n={hit})")
    _style_ecdf(left, "black-hole window per node × trial", "window (ms), 0 = no failure")
    right.set_title("failed requests in one window (windows > 0 only)", fontsize=10)
    right.set_xlabel("failed requests (count)")
    right.set_ylabel("node × trials")
    right.grid(alpha=0.3)
    if right.has_data():
        right.legend(fontsize=9, loc="upper right")
    else:
        no_data(right, "no failed requests recorded")
    return fig


def _direction(hops: pd.DataFrame, direction: str) -> pd.DataFrame:
    scoped = plot_frame(hops)
    return scoped.loc[scoped["direction"] == direction]


def _rows(df: pd.DataFrame, hop: str, scope: str) -> pd.DataFrame:
    return df.loc[(df["hop"] == hop) & (df["scope"] == scope)]


def _ecdf_panel(ax: Axes, rows: pd.DataFrame, title: str) -> None:
    for s, part in split(rows):
        cens = part["censored"].to_numpy(bool)
        _ecdf(ax, part["latency_ms"].to_numpy(dtype=float), cens, s.color, s.linestyle,
              n_label(s.label, len(part), int(cens.sum())))
    log = wants_log(rows["latency_ms"].to_numpy(dtype=float))
    if log:
        log_axis(ax, "x")
    _style_ecdf(ax, title, "latency (ms)" + (", log scale" if log else ""))


def _ecdf(ax: Axes, values: np.ndarray, censored: np.ndarray, color: str, style: str,
          text: str) -> None:
    finite = np.sort(values[np.isfinite(values) & ~censored])
    if not finite.size:
        ax.plot([], [], color=color, linestyle=style, label=text + " — all censored")
        return
    y = np.arange(1, finite.size + 1) / values.size
    ax.step(np.r_[finite[0], finite], np.r_[0.0, y], where="post", color=color,
            linestyle=style, linewidth=1.6, label=text)


def _style_ecdf(ax: Axes, title: str, xlabel: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    if first_column(ax):
        ax.set_ylabel("fraction of trials ≤ x")
    ax.set_ylim(0, 1.34)  # headroom above 1 holds the legend clear of the curves
    ax.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    for q in (0.5, 0.9, 0.99):
        ax.axhline(q, color="#999999", linewidth=0.6, linestyle=":")
    ax.grid(alpha=0.3, which="major")
    ax.legend(fontsize=8, loc="upper left", borderaxespad=0.3, framealpha=0.9)


def _box_panel(ax: Axes, rows: pd.DataFrame, title: str) -> None:
    stats, colors, tails = [], [], []
    for s, part in split(rows):
        smp = sample(part["latency_ms"].to_numpy(dtype=float), part["censored"].to_numpy(bool))
        q1, med, q3, lo, hi = quantiles(smp, [0.25, 0.5, 0.75, 0.01, 0.99])
        stats.append({"med": med, "q1": q1, "q3": q3, "whislo": lo, "whishi": hi,
                      "label": f"{s.label}\nn={smp.n}"
                               + (f"\n{smp.n_censored} cens." if smp.n_censored else "")})
        colors.append(s.color)
        tails.append(bool(np.isinf(hi)))
    finite = np.array([v for st in stats for k, v in st.items()
                       if k != "label" and np.isfinite(v)])
    if not finite.size:
        no_data(ax, "every trial censored", title)
        return
    log = bool(finite.min() > 0 and finite.max() / finite.min() > 10)
    top = finite.max() * (1.6 if log else 1.1) if finite.max() > 0 else 1.0
    for st in stats:
        for k in ("med", "q1", "q3", "whislo", "whishi"):
            st[k] = top if np.isinf(st[k]) else st[k]
    artists = ax.bxp(stats, showfliers=False, patch_artist=True, widths=0.6,
                     medianprops={"color": "black", "linewidth": 1.6})
    for patch, c in zip(artists["boxes"], colors):
        patch.set_facecolor(c)
        patch.set_alpha(0.55)
    for i, tail in enumerate(tails, start=1):
        if tail:
            ax.annotate("", xy=(i, top), xytext=(i, top / (1.25 if log else 1.05)),
                        arrowprops={"arrowstyle": "->", "color": "#c00000"})
    if log:
        log_axis(ax, "y")
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("latency (ms)" + (", log scale" if log else ""))
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(alpha=0.3, axis="y")


def ratio_figure(ratios: pd.DataFrame) -> Figure:
    """Forest plot: each mode's median over the baseline's, per hop, with its bootstrap CI."""
    directions = [d for d in TITLES if (ratios["direction"] == d).any()] if len(ratios) else []
    height = 1.2 + sum(0.3 * _ratio_rows(ratios, d) + 1.0 for d in directions)
    fig = figure(14, height if directions else 4.0)
    base = ", ".join(sorted(ratios["baseline"].unique())) if len(ratios) else ""
    level = f"{ratios['ci'].iloc[0]:.0%} CI" if len(ratios) else "CI"
    fig.suptitle(f"Ratio of medians vs {base or 'baseline'} ({level}); < 1 = faster",
                 fontsize=14)
    if not directions:
        no_data(fig.subplots(), "one proxy mode only: nothing to compare")
        return fig
    heights = [_ratio_rows(ratios, d) for d in directions]
    margins(fig, left=3.4, bottom=0.6, hspace=0.9, rows=len(directions))
    axes = fig.subplots(len(directions), 1, squeeze=False,
                        gridspec_kw={"height_ratios": heights}).ravel()
    for ax, direction in zip(axes, directions):
        _ratio_panel(ax, ratios.loc[ratios["direction"] == direction], direction)
    return fig


def _ratio_rows(ratios: pd.DataFrame, direction: str) -> int:
    part = ratios.loc[ratios["direction"] == direction]
    return max(1, len(part[["scenario", "hop", "scope"]].drop_duplicates()))


def _ratio_panel(ax: Axes, part: pd.DataFrame, direction: str) -> None:
    keys = part[["scenario", "hop", "scope"]].drop_duplicates().reset_index(drop=True)
    several = keys["scenario"].nunique() > 1
    names = [f"{label(direction, h)}{' (all nodes)' if sc == SCOPE_ALL else ''}"
             f"{f' · {s}' if several else ''}"
             for s, h, sc in keys.itertuples(index=False, name=None)]
    row = {tuple(k): i for i, k in enumerate(keys.itertuples(index=False, name=None))}
    modes = list(split(part))
    for m, (s, sub) in enumerate(modes):
        y = np.array([row[k] for k in sub[["scenario", "hop", "scope"]]
                     .itertuples(index=False, name=None)]) + (m - (len(modes) - 1) / 2) * 0.18
        ratio = sub["ratio"].to_numpy(float)
        lo, hi = sub["ratio_lo"].to_numpy(float), sub["ratio_hi"].to_numpy(float)
        ok = np.isfinite(ratio) & (ratio > 0)
        err = np.vstack([ratio - lo, hi - ratio])[:, ok]
        ax.errorbar(ratio[ok], y[ok], xerr=np.where(np.isfinite(err), err, 0), fmt="o",
                    color=s.color, capsize=3, markersize=5,
                    label=f"{s.label} vs {sub['baseline'].iloc[0]} "
                          f"(n={int(sub['n'].max())} per hop)")
    ax.axvline(1.0, color="#444444", linewidth=1)
    log_axis(ax, "x")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_title(TITLES.get(direction, direction), fontsize=11)
    ax.set_xlabel("median ratio (log scale)")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=9, loc="lower right")


def paths_figure(hops: pd.DataFrame, comparison: pd.DataFrame) -> Figure:
    """Mesh end to end against kube-proxy's on the same trials, per node, one row per direction:
    left each pair (kube-proxy's on x, the mesh's on y, one point per node x trial), right the
    ECDF of the per-pair ratio with its median and bootstrap interval (stats.compare_paths)."""
    directions = [d for d in TITLES if len(comparison) and (comparison["direction"] == d).any()]
    fig = figure(14, 1.3 + 4.2 * max(1, len(directions)))
    fig.suptitle("Mesh path vs kube-proxy on the same trials: end to end per node × trial",
                 fontsize=14)
    if not directions:
        no_data(fig.subplots(), "no trials measured on both paths")
        return fig
    margins(fig, hspace=1.0, wspace=0.9, rows=len(directions), columns=2)
    axes = fig.subplots(len(directions), 2, squeeze=False)
    for (left, right), direction in zip(axes, directions):
        pairs = paired_end_to_end(hops, direction)
        rows = comparison.loc[comparison["direction"] == direction]
        _pairs_panel(left, pairs, rows, direction)
        _pair_ratio_panel(right, pairs, rows, direction)
    return fig


def _pairs_panel(ax: Axes, pairs: pd.DataFrame, rows: pd.DataFrame, direction: str) -> None:
    finite = []
    for s, part in split(pairs):
        ok = ~(part["censored"] | part["censored_base"]).to_numpy(bool)
        x = part["latency_ms_base"].to_numpy(float)[ok]
        y = part["latency_ms"].to_numpy(float)[ok]
        finite += [x, y]
        ax.scatter(x, y, s=18, color=s.color, alpha=0.7, edgecolor="none",
                   label=n_label(s.label, len(part), int((~ok).sum()), " node × trials"))
    values = np.concatenate(finite) if finite else np.array([])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size:
        lo, hi = values.min() / 1.3, values.max() * 1.3
        ax.plot([lo, hi], [lo, hi], color="#444444", linewidth=0.8, linestyle="--",
                label="same latency")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        log_axis(ax, "x")
        log_axis(ax, "y")
    mesh = rows["hop"].iloc[0] if len(rows) else ""
    base = rows["baseline_hop"].iloc[0] if len(rows) else ""
    ax.set_title(f"{TITLES.get(direction, direction)}: pairs", fontsize=11)
    ax.set_xlabel(f"kube-proxy: {label(direction, base)} (ms, log)", fontsize=9)
    ax.set_ylabel(f"{label(direction, mesh)} (ms, log)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")


def _pair_ratio_panel(ax: Axes, pairs: pd.DataFrame, rows: pd.DataFrame,
                      direction: str) -> None:
    for s, part in split(pairs):
        unknown = (part["censored"] | part["censored_base"]).to_numpy(bool)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = part["latency_ms"].to_numpy(float) / part["latency_ms_base"].to_numpy(float)
        row = rows.loc[(rows["proxy_mode"] == s.proxy_mode) & (rows["scenario"] == s.scenario)]
        text = s.label
        if len(row):
            r = row.iloc[0]
            ci = "" if np.isnan(r["ratio_lo"]) else f" [{r['ratio_lo']:.2f}, {r['ratio_hi']:.2f}]"
            text += f": median {r['ratio']:.2f}{ci}"
            if np.isfinite(r["ratio"]) and r["ratio"] > 0:
                ax.axvline(r["ratio"], color=s.color, linestyle=s.linestyle, linewidth=0.8)
                if np.isfinite(r["ratio_lo"]) and np.isfinite(r["ratio_hi"]):
                    ax.axvspan(r["ratio_lo"], r["ratio_hi"], color=s.color, alpha=0.12)
        _ecdf(ax, np.where(unknown, np.nan, ratio), unknown, s.color, s.linestyle,
              n_label(text, len(part), int(unknown.sum())))
    ax.axvline(1.0, color="#444444", linewidth=1)
    finite = (pairs["latency_ms"] / pairs["latency_ms_base"]).to_numpy(float)
    if wants_log(np.r_[finite, 1.0]):
        log_axis(ax, "x")
    level = f"{rows['ci'].iloc[0]:.0%}" if len(rows) else ""
    _style_ecdf(ax, f"{TITLES.get(direction, direction)}: mesh / kube-proxy per node × trial "
                f"(median, {level} bootstrap CI)", "ratio (< 1: the mesh is faster)")
