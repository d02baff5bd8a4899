"""Distribution figures: ECDF per hop, box per hop x mode, the black-hole window.

One panel per hop, because hops differ by orders of magnitude (a kubelet readiness probe
takes a second, a rule lands in a millisecond) and each needs its own axis. Per-node hops
are pooled over nodes (scope "node"), and the end-to-end hop gets an extra panel for "all
nodes converged". Censored trials stay in the denominators: an ECDF stops below 1 by the
censored fraction, and a whisker in the censored mass is drawn as an arrow off the top.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.frame import (
    BLACKHOLE,
    SCOPE_ALL,
    SCOPE_CLUSTER,
    SCOPE_NODE,
    end_to_end,
    label,
)
from analysis.plotkit import (
    figure,
    first_column,
    log_axis,
    margins,
    n_label,
    no_data,
    panel_grid,
    plot_frame,
    split,
    wants_log,
)
from analysis.quantiles import quantiles, sample
from bench.results.schema import HOPS

COLUMNS = 4
TITLES = {"add": "Add (pod becomes Ready)", "remove": "Remove (pod goes away)",
          "restart": "Restart (kube-proxy restarted on one node)"}


def panels(hops: pd.DataFrame, direction: str) -> list[tuple[str, str, str]]:
    """(hop, scope, title) of every panel of a direction, in chain order."""
    pairs = hops[["hop", "scope"]].drop_duplicates()
    present = set(zip(pairs["hop"].tolist(), pairs["scope"].tolist()))
    out = []
    for hop in HOPS:
        scope = SCOPE_NODE if hop.per_node else SCOPE_CLUSTER
        if hop.direction == direction and (hop.name, scope) in present:
            out.append((hop.name, scope, hop.label + (" (per node)" if hop.per_node else "")))
    e2e = end_to_end(direction)
    if (e2e, SCOPE_ALL) in present:
        out.append((e2e, SCOPE_ALL, f"{label(direction, e2e)}\n(all nodes converged)"))
    return out


def _per_hop_figure(hops: pd.DataFrame, direction: str, row_height: float, what: str
                    ) -> tuple[Figure, pd.DataFrame, list[tuple[str, str, str]]]:
    """The grid shared by the per-hop figures: one panel per hop present, a title, and a
    "no data" panel (specs empty) when the runs have no trial of this direction."""
    scoped = _direction(hops, direction)
    specs = panels(scoped, direction)
    fig = figure(4.2 * COLUMNS, row_height * max(1, -(-len(specs) // COLUMNS)) + 0.8)
    fig.suptitle(f"{TITLES.get(direction, direction)}: {what}", fontsize=14)
    if not specs:
        no_data(fig.subplots(), f"no {direction} trials in these runs")
    return fig, scoped, specs


def ecdf_figure(hops: pd.DataFrame, direction: str) -> Figure:
    """ECDF of every hop of `direction`, modes overlaid, log x where the values span > 10x."""
    fig, scoped, specs = _per_hop_figure(hops, direction, 3.6,
                                         "ECDF per hop, per-node hops pooled over nodes")
    if not specs:
        return fig
    for ax, (hop, scope, title) in zip(panel_grid(fig, len(specs), COLUMNS, sharey=True),
                                       specs):
        _ecdf_panel(ax, _rows(scoped, hop, scope), title)
    return fig


def box_figure(hops: pd.DataFrame, direction: str) -> Figure:
    """Box per hop x mode from censoring-aware quantiles: p25-p75 box, median, p1-p99."""
    fig, scoped, specs = _per_hop_figure(
        hops, direction, 4.0, "latency per hop and mode "
        "(box p25–p75, line p50, whiskers p1–p99; ↑ = in the censored tail)")
    if not specs:
        return fig
    for ax, (hop, scope, title) in zip(panel_grid(fig, len(specs), COLUMNS, bottom=0.85,
                                                  hspace=1.3), specs):
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
