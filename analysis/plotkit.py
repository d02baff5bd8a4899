"""Small plotting helpers shared by every figure: Agg figures, colours, series, empty panels.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas, never through
pyplot: no global state, no GUI backend, safe in tests, servers and threads. In a notebook
they display after `%matplotlib inline` like any figure.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

from analysis.frame import mode_key, with_scope

DPI = 100
MODE_COLORS = {"iptables": "#1f77b4", "nftables": "#ff7f0e", "ipvs": "#2ca02c"}
_EXTRA_COLORS = ("#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")
LINESTYLES = ("-", "--", ":", "-.")


def figure(width: float, height: float) -> Figure:
    """A new Agg-backed figure, laid out with `margins` (fixed, in inches).

    Not constrained layout: it measures every label and makes savefig draw the figure
    twice, which doubled the time of a report; these figures have regular shapes.
    """
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    margins(fig)
    return fig


def margins(fig: Figure, *, left: float = 0.8, right: float = 0.25, top: float = 0.7,
            bottom: float = 0.6, hspace: float = 0.8, wspace: float = 0.7, rows: int = 1,
            columns: int = 1) -> None:
    """Place the subplot grid with margins and gaps given in inches."""
    width, height = fig.get_size_inches()
    panel_h = max(0.5, (height - top - bottom - hspace * (rows - 1)) / max(rows, 1))
    panel_w = max(0.5, (width - left - right - wspace * (columns - 1)) / max(columns, 1))
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height,
                        bottom=bottom / height, hspace=hspace / panel_h, wspace=wspace / panel_w)


def panel_grid(fig: Figure, panels: int, columns: int, *, bottom: float = 0.6,
               hspace: float = 0.95, sharey: bool = False) -> list[Axes]:
    """`panels` axes on a grid `columns` wide with room for titles and axis labels.

    With `sharey`, only the first column labels the y axis.
    """
    rows = max(1, -(-panels // columns))
    margins(fig, bottom=bottom, hspace=hspace, rows=rows, columns=columns,
            wspace=0.35 if sharey else 0.9)
    axes = grid(fig, panels, columns, sharey)
    if sharey:
        for ax in axes:
            ax.tick_params(axis="y", labelleft=first_column(ax))
    return axes


def save(fig: Figure, path: Path) -> Path:
    """Write `fig` as PNG and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, pil_kwargs=_PNG)
    return path


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, pil_kwargs=_PNG)
    return buf.getvalue()


_PNG = {"compress_level": 1}  # plots are mostly flat colour: level 6 is slower, hardly smaller
#: the hops columns figures read; the text ones become categoricals (see plot_frame)
PLOT_COLUMNS = ["run_id", "trial", "service", "scenario", "proxy_mode", "direction", "node",
                "hop", "scope", "latency_ms", "censored", "value"]
_CATEGORICAL = ["run_id", "service", "scenario", "proxy_mode", "direction", "node", "hop",
                "scope"]


def plot_frame(hops: pd.DataFrame) -> pd.DataFrame:
    """The hops columns figures need, text as categoricals (cheap to filter); idempotent.

    Filtering a 200,000-row frame of Arrow strings copies every string column; with
    categoricals it moves integer codes, which halves the time of a report.
    """
    if list(hops.columns) == PLOT_COLUMNS and all(
            isinstance(hops[c].dtype, pd.CategoricalDtype) for c in _CATEGORICAL):
        return hops
    scoped = with_scope(hops)
    return scoped[PLOT_COLUMNS].astype({c: "category" for c in _CATEGORICAL})


def color(mode: str) -> str:
    if mode in MODE_COLORS:
        return MODE_COLORS[mode]
    return _EXTRA_COLORS[sum(map(ord, mode)) % len(_EXTRA_COLORS)]


@dataclass(frozen=True)
class Series:
    """One line on a plot: a proxy mode, and a scenario when a run has several."""

    proxy_mode: str
    scenario: str
    label: str
    color: str
    linestyle: str


def series(df: pd.DataFrame) -> list[Series]:
    """The (mode, scenario) series present in `df`, in display order."""
    if df.empty:
        return []
    pairs = df[["proxy_mode", "scenario"]].drop_duplicates()
    scenarios = sorted(pairs["scenario"].astype(str).unique())
    several = len(scenarios) > 1
    out = []
    for mode, scenario in sorted(pairs.itertuples(index=False, name=None),
                                 key=lambda p: (mode_key(str(p[0])), str(p[1]))):
        text = f"{mode} · {scenario}" if several else str(mode)
        style = LINESTYLES[scenarios.index(str(scenario)) % len(LINESTYLES)]
        out.append(Series(str(mode), str(scenario), text, color(str(mode)), style))
    return out


def rows_of(df: pd.DataFrame, s: Series) -> pd.DataFrame:
    return df.loc[(df["proxy_mode"] == s.proxy_mode) & (df["scenario"] == s.scenario)]


def split(df: pd.DataFrame) -> Iterator[tuple[Series, pd.DataFrame]]:
    for s in series(df):
        yield s, rows_of(df, s)


def n_label(text: str, n: int, censored: int = 0, unit: str = "") -> str:
    """Legend text with n (and censored count when there are any)."""
    extra = f", {censored} censored" if censored else ""
    return f"{text} (n={n}{unit}{extra})"


def wants_log(values: np.ndarray) -> bool:
    """Log scale when every finite value is positive and they span more than 10x (p1..p99)."""
    finite = values[np.isfinite(values)]
    if finite.size < 2 or finite.min() <= 0:
        return False
    lo, hi = np.quantile(finite, [0.01, 0.99])
    return bool(hi / lo > 10)


def log_axis(ax: Axes, which: str = "x") -> None:
    """Log scale, plain labels (1, 2, 5, 10 ...; denser on short ranges). Call after plotting."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()
    decades = np.log10(hi / lo) if lo > 0 and hi > lo else 2.0
    subs = ((1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0) if decades < 0.8
            else (1.0, 2.0, 3.0, 5.0) if decades < 1.6
            else (1.0, 2.0, 5.0) if decades < 2.2 else (1.0, 3.0) if decades < 4 else (1.0,))
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_minor_locator(NullLocator())  # labelled 1-2-5 majors suffice; minors cost time
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def no_data(ax: Axes, message: str, title: str = "") -> None:
    """An empty panel that says plainly what is missing."""
    ax.set_axis_off()
    ax.add_patch(_frame(ax))
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=14, wrap=True,
            transform=ax.transAxes, color="#444444")
    if title:
        ax.set_title(title)


def _frame(ax: Axes) -> Rectangle:
    return Rectangle((0.02, 0.02), 0.96, 0.96, transform=ax.transAxes, fill=True,
                     facecolor="#f4f4f4", edgecolor="#bbbbbb", linestyle="--")


def first_column(ax: Axes) -> bool:
    """True for an axes in the first column of its grid (or not on a grid at all)."""
    spec = ax.get_subplotspec()
    return spec is None or bool(spec.is_first_col())


def grid(fig: Figure, panels: int, columns: int, sharey: bool = False) -> list[Axes]:
    """`panels` axes on a grid `columns` wide; unused cells are hidden."""
    rows = max(1, -(-panels // columns))
    axes = fig.subplots(rows, columns, squeeze=False, sharey=sharey).ravel().tolist()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return axes[:panels]


def fmt_ms(value: float) -> str:
    """Readable milliseconds: 0.42 ms, 12.3 ms, 845 ms, 2.31 s; inf as 'censored'."""
    if not np.isfinite(value):
        return "censored" if value > 0 else "n/a"
    if abs(value) >= 1000:
        return f"{value / 1000:.2f} s"
    if abs(value) >= 100:
        return f"{value:.0f} ms"
    if abs(value) >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"
