"""Growth figures of a sweep: each metric over the number of background Services N.

One figure per metric (or small family of metrics, one panel each), drawn from
`analysis.growth.Growth`: x is N on a log axis, one colour per kube-proxy mode, p50 solid
and p99 dashed (a one-number metric solid), each with its bootstrap interval as a band.
N = 0 has no place on a log axis, so it is drawn left of the smallest N, labelled "0", as
an unconnected marker with its interval as an error bar. A censored estimate (in the
censored mass of its trials) is a hollow triangle at the top of the panel. The legend
gives each line's fitted exponent b (estimate ≈ a·N^b, `growth.exponents`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from analysis.growth import RESTART_PREFIX, SERIES, VALUE, Growth, metric
from analysis.plotkit import (
    LINESTYLES,
    color,
    figure,
    log_axis,
    no_data,
    panel_grid,
    wants_log,
)

ZERO_AT = 0.25  # N = 0 is drawn at this fraction of the smallest N > 0
STYLE = {"p50": ("-", "o", 0.18), "p99": ("--", "s", 0.08), VALUE: ("-", "o", 0.0)}


@dataclass(frozen=True)
class GrowthFigure:
    """A growth figure of the report: file name, caption, and the metrics it draws."""

    name: str
    caption: str
    metrics: tuple[str, ...]  # a panel each; RESTART_PREFIX alone: every restart hop


GROWTH_FIGURES: tuple[GrowthFigure, ...] = (
    GrowthFigure("growth_ready", "Ready → first answer on the slowest node, over N.",
                 ("ready_to_first_answer",)),
    GrowthFigure("growth_slice_sync", "EndpointSlice → kube-proxy sync done (per node), over "
                 "N.", ("slice_to_sync",)),
    GrowthFigure("growth_sync", "kube-proxy's own sync duration histograms (full and partial "
                 "syncs), pooled over nodes, over N.", ("sync_full", "sync_partial",
                                                        "sync_all")),
    GrowthFigure("growth_program", "Time to program N Services from nothing.",
                 ("program_s",)),
    GrowthFigure("growth_restart", "proxy-restart: kill → kube-proxy started → its first "
                 "(full) sync → rule present → first answer, over N.", (RESTART_PREFIX,)),
    GrowthFigure("growth_connect", "TCP connect time through the ClusterIP (the data path), "
                 "over N.", ("connect",)),
    GrowthFigure("growth_rules", "Rules (or set elements) in kube-proxy's table, largest "
                 "node, over N.", ("rules",)),
    GrowthFigure("growth_rss", "kube-proxy RSS, largest node, over N.", ("proxy_rss",)),
    GrowthFigure("growth_resources", "kube-proxy CPU over the mode, API server and etcd RSS, "
                 "over N.", ("proxy_cpu", "apiserver_rss", "etcd_rss")),
)


def panels_of(spec: GrowthFigure, table: pd.DataFrame) -> list[str]:
    """The metrics a figure draws that the table holds (restart: every restart hop)."""
    present = list(dict.fromkeys(table["metric"].astype(str)))
    out: list[str] = []
    for name in spec.metrics:
        if name == RESTART_PREFIX:
            out += [m for m in present if m.startswith(RESTART_PREFIX)]
        elif name in present:
            out.append(name)
    return out


def growth_figure(growth: Growth, spec: GrowthFigure) -> Figure:
    """One growth figure; a panel that says what is missing when the runs lack its metrics."""
    names = panels_of(spec, growth.table)
    columns = min(max(len(names), 1), 2 if len(names) == 4 else 3)
    rows = -(-max(len(names), 1) // columns)
    fig = figure(6.2 * columns + 0.6, 4.1 * rows + 0.9)
    axes = panel_grid(fig, max(len(names), 1), columns, bottom=0.9)
    fig.suptitle(spec.caption, fontsize=12)
    if not names:
        no_data(axes[0], "none of these figures in the runs' run.json or trials\n("
                + ", ".join(m.rstrip(":") for m in spec.metrics) + ")")
        return fig
    for ax, name in zip(axes, names, strict=True):
        _panel(ax, growth, name)
    return fig


def _origin_in_every_series(rows: pd.DataFrame) -> pd.DataFrame:
    """N = 0 has no endpoints to churn, so a sweep's 0 point carries churn 0 (and any M):
    draw it as the start of each of its mode's series with N > 0."""
    zero, rest = rows[rows["services"] == 0], rows[rows["services"] > 0]
    if zero.empty or rest.empty:
        return rows
    parts = [rest]
    for mode, z in zero.groupby("proxy_mode", sort=False):
        keys = rest.loc[rest["proxy_mode"] == mode, ["endpoints", "churn_per_s"]]
        for endpoints, churn in keys.drop_duplicates().itertuples(index=False):
            parts.append(z.assign(endpoints=endpoints, churn_per_s=churn))
        if keys.empty:
            parts.append(z)
    return pd.concat([*parts[1:], rest], ignore_index=True)


def _panel(ax: Axes, growth: Growth, name: str) -> None:
    rows = _origin_in_every_series(growth.table.loc[growth.table["metric"] == name])
    m = metric(name)
    positive = rows.loc[rows["services"] > 0, "services"]
    smallest = float(positive.min()) if len(positive) else 1.0
    zero_x = smallest * ZERO_AT
    many = rows[["endpoints", "churn_per_s"]].drop_duplicates().shape[0] > 1
    exps = growth.exponents
    for key, series in rows.groupby(list(SERIES), sort=False):
        mode, endpoints, churn = key
        for stat, part in series.groupby("stat", sort=False):
            _line(ax, part.sort_values("services"), str(mode), str(stat), zero_x,
                  _legend(str(mode), int(endpoints), float(churn), str(stat), many,
                          exps, name))
    values = rows[["estimate", "lo", "hi"]].to_numpy(dtype=np.float64).ravel()
    if wants_log(values):
        log_axis(ax, "y")
    ax.set_xscale("log")
    ticks = sorted({*(float(n) for n in positive.unique()), *([zero_x] if (rows["services"]
                                                                           == 0).any() else [])})
    ax.set_xlim(min(ticks) / 1.6, max(ticks) * 1.6)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _n_label(v, zero_x)))
    ax.set_xlabel("background Services N (log scale)")
    ax.set_ylabel(m.unit)
    ax.set_title(m.label, fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best", frameon=False)
    _censored_note(ax, rows)


def _line(ax: Axes, part: pd.DataFrame, mode: str, stat: str, zero_x: float,
          text: str) -> None:
    style, marker, alpha = STYLE.get(stat, ("-", "o", 0.1))
    c = color(mode)
    x = part["services"].to_numpy(dtype=np.float64)
    est = part["estimate"].to_numpy(dtype=np.float64)
    lo = part["lo"].to_numpy(dtype=np.float64)
    hi = part["hi"].to_numpy(dtype=np.float64)
    finite = np.isfinite(est)
    pos = (x > 0) & finite
    ax.plot(x[pos], est[pos], linestyle=style, marker=marker, color=c, label=text, ms=5)
    band = pos & np.isfinite(lo)
    if band.sum() > 1 and alpha:
        top = np.where(np.isfinite(hi), hi, np.nan)
        ax.fill_between(x[band], lo[band], top[band], color=c, alpha=alpha, linewidth=0)
    zero = (x == 0) & finite
    if zero.any():
        err = None
        if np.isfinite(lo[zero]).all() and np.isfinite(hi[zero]).all():
            err = np.vstack([est[zero] - lo[zero], hi[zero] - est[zero]])
        ax.errorbar(np.full(int(zero.sum()), zero_x), est[zero], yerr=err, fmt=marker,
                    color=c, ms=5, capsize=3, linestyle="none")
    cens = ~finite & ~np.isnan(est)
    if cens.any():
        where = np.where(x[cens] > 0, x[cens], zero_x)
        ax.plot(where, np.full(where.size, 0.97), linestyle="none", marker="^", ms=9,
                markerfacecolor="none", markeredgecolor=c,
                transform=ax.get_xaxis_transform())


def _legend(mode: str, endpoints: int, churn: float, stat: str, many: bool,
            exps: pd.DataFrame, name: str) -> str:
    text = mode + (f" M={endpoints} churn={churn:g}/s" if many else "")
    text += "" if stat == VALUE else f" {stat}"
    hit = exps.loc[(exps["proxy_mode"] == mode) & (exps["endpoints"] == endpoints)
                   & (exps["churn_per_s"] == churn) & (exps["metric"] == name)
                   & (exps["stat"] == stat)]
    if hit.empty or not np.isfinite(hit["exponent"].iloc[0]):
        note = str(hit["note"].iloc[0]) if len(hit) else ""
        return text + (" (no fit: censored)" if note.startswith("censored") else "")
    row = hit.iloc[0]
    ci = (f" [{row['lo']:.2f}, {row['hi']:.2f}]" if np.isfinite(row["lo"])
          and np.isfinite(row["hi"]) else "")
    return f"{text}  b={row['exponent']:.2f}{ci}"


def _censored_note(ax: Axes, rows: pd.DataFrame) -> None:
    """What a censored marker means: a trial hop past its timeout, or a histogram
    quantile past the last finite bucket (kube-proxy's sync histograms end at 16.4 s)."""
    cens = rows.loc[rows["censored"].astype(bool)]
    if cens.empty:
        return
    beyond = ("the histogram's last bucket" if (cens["source"] == "histogram").all()
              else "the trial timeout")
    ax.text(0.99, 0.02, f"△ censored: beyond {beyond}", ha="right", va="bottom",
            fontsize=8, color="#555555", transform=ax.transAxes)


def _n_label(value: float, zero_x: float) -> str:
    if np.isclose(value, zero_x):
        return "0"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def growth_figures(growth: Growth, specs: Sequence[GrowthFigure] = GROWTH_FIGURES
                   ) -> dict[str, Figure]:
    """Every growth figure by name."""
    return {spec.name: growth_figure(growth, spec) for spec in specs}


def sweeps_figure(growths: Mapping[str, Growth], metrics: Sequence[str],
                  stat: str = "p50") -> Figure:
    """Several sweeps side by side: a panel per metric, colour per mode, line style per sweep
    (the name each is given), `stat` only (one-number metrics: their value); bands as above."""
    fig = figure(6.2 * min(len(metrics), 2) + 0.6, 4.1 * -(-len(metrics) // 2) + 0.9)
    axes = panel_grid(fig, len(metrics), min(len(metrics), 2), bottom=0.9)
    fig.suptitle(f"Sweeps compared ({stat}; one-number figures: their value)", fontsize=12)
    for ax, name in zip(axes, metrics, strict=True):
        drawn = False
        for k, (sweep, growth) in enumerate(growths.items()):
            t = growth.table
            rows = t.loc[(t["metric"] == name) & t["stat"].isin([stat, VALUE])
                         & (t["services"] > 0)]
            for mode, part in rows.groupby("proxy_mode", sort=False):
                part = part.sort_values("services")
                x = part["services"].to_numpy(dtype=np.float64)
                est = part["estimate"].to_numpy(dtype=np.float64)
                style = LINESTYLES[k % len(LINESTYLES)]
                ax.plot(x, np.where(np.isfinite(est), est, np.nan), linestyle=style,
                        marker="o", ms=4, color=color(str(mode)), label=f"{sweep} · {mode}")
                lo, hi = part["lo"].to_numpy(dtype=np.float64), part["hi"].to_numpy(
                    dtype=np.float64)
                if np.isfinite(lo).sum() > 1:
                    ax.fill_between(x, lo, np.where(np.isfinite(hi), hi, np.nan),
                                    color=color(str(mode)), alpha=0.1, linewidth=0)
                drawn = True
        if not drawn:
            no_data(ax, f"no {metric(name).label} at N > 0 in these sweeps")
            continue
        ax.set_xscale("log")
        ns = sorted({float(x) for line in ax.lines
                     for x in np.asarray(line.get_xdata(), dtype=np.float64)})
        ax.xaxis.set_major_locator(FixedLocator(ns))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _n_label(v, -1.0)))
        if wants_log(_ydata(ax)):
            log_axis(ax, "y")
        ax.set_title(metric(name).label, fontsize=11)
        ax.set_xlabel("background Services N (log scale)")
        ax.set_ylabel(metric(name).unit)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best", frameon=False)
    return fig


def _ydata(ax: Axes) -> np.ndarray:
    parts = [np.asarray(line.get_ydata(), dtype=np.float64) for line in ax.lines]
    return np.concatenate(parts) if parts else np.array([])
