"""The growth section of report.html for a sweep: figures over N and the exponent table.

`write_report` calls `growth_section` for every report; it returns nothing for a run of
one point (the report is then exactly as before) and, for a sweep (more than one point,
`growth.is_sweep`), writes growth.csv (the tidy table), growth_exponents.csv and one PNG
per `plots_growth.GROWTH_FIGURES`, and returns their paths with the section's HTML.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.growth import VALUE, Growth, growth_table, is_sweep, points_of
from analysis.load import RunData
from analysis.plotkit import save
from analysis.plots_growth import GROWTH_FIGURES, growth_figure
from analysis.stats import Settings

GROWTH_CSV = "growth.csv"
EXPONENTS_CSV = "growth_exponents.csv"

Figure = Callable[[str, str, Path], str]  # report._figure: name, caption, PNG -> HTML


def growth_section(data: RunData, out: Path, cfg: Settings,
                   figure_html: Figure) -> tuple[dict[str, Path], str]:
    """(name -> path, HTML) of the growth section; ({}, "") unless the runs are a sweep."""
    if not is_sweep(data):
        return {}, ""
    growth = growth_table(data, cfg)
    paths: dict[str, Path] = {}
    growth.table.to_csv(out / GROWTH_CSV, index=False)
    growth.exponents.to_csv(out / EXPONENTS_CSV, index=False)
    paths["growth_csv"], paths["growth_exponents_csv"] = out / GROWTH_CSV, out / EXPONENTS_CSV
    figures = []
    for spec in GROWTH_FIGURES:
        paths[spec.name] = save(growth_figure(growth, spec), out / f"{spec.name}.png")
        figures.append(figure_html(spec.name, spec.caption, paths[spec.name]))
    points = ", ".join(p.label for p in points_of(data))
    page = [
        "<section id=growth><h2>Growth with the number of Services</h2>",
        (f"<p>A sweep over {len(points_of(data))} points ({html.escape(points)}). Each "
         "figure over the number of background Services N on log axes; bands are "
         f"{cfg.confidence:.0%} bootstrap intervals. The <i>growth exponent</i> b is the "
         "least-squares slope of log(figure) on log(N) over the points with N &gt; 0, a "
         "power-law fit (figure ≈ a·N<sup>b</sup>): b = 1 grows in proportion to N, b = 0 "
         "does not grow. Its interval comes from the same bootstrap where the figure has "
         "samples (trials, syncs, connections); none for one number per point. Tables: "
         f"{GROWTH_CSV}, {EXPONENTS_CSV}.</p>"),
        "<h3>Fitted growth exponents</h3>", _table(exponent_view(growth)),
        *figures,
        "<h3>Every point</h3>", _table(table_view(growth)),
        "</section>",
    ]
    return paths, "\n".join(page)


def exponent_view(growth: Growth) -> pd.DataFrame:
    """The exponent table as the report shows it: one row per mode, metric and statistic."""
    rows = []
    for _, r in growth.exponents.iterrows():
        b = "" if not np.isfinite(r["exponent"]) else f"{r['exponent']:.2f}"
        if b and np.isfinite(r["lo"]) and np.isfinite(r["hi"]):
            b += f" [{r['lo']:.2f}, {r['hi']:.2f}]"
        rows.append({"metric": r["label"], "stat": "" if r["stat"] == VALUE else r["stat"],
                     "mode": r["proxy_mode"], "M": r["endpoints"],
                     "churn/s": f"{r['churn_per_s']:g}", "exponent b": b,
                     "points (N > 0)": f"{r['n_points']}: N = {_n(r['services_min'])}"
                                       f"…{_n(r['services_max'])}", "note": r["note"]})
    return pd.DataFrame(rows)


def table_view(growth: Growth) -> pd.DataFrame:
    """Every (metric, mode, point, statistic) estimate with its interval, readable."""
    rows = []
    for _, r in growth.table.iterrows():
        rows.append({"metric": r["label"], "stat": "" if r["stat"] == VALUE else r["stat"],
                     "mode": r["proxy_mode"], "N": r["services"], "M": r["endpoints"],
                     "churn/s": f"{r['churn_per_s']:g}",
                     "estimate": _value(r["estimate"], r["lo"], r["hi"], str(r["unit"])),
                     "n": r["n"], "censored": r["n_censored"], "from": r["source"]})
    return pd.DataFrame(rows)


def _value(est: float, lo: float, hi: float, unit: str) -> str:
    if np.isposinf(est):
        return "censored"
    text = f"{_g(est)} {unit}"
    if np.isfinite(lo):
        text += f" [{_g(lo)}, {_g(hi) if np.isfinite(hi) else 'censored'}]"
    return text


def _g(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:,.0f}"


def _n(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{int(value):,}"


def _table(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p><i>no rows</i></p>"
    return str(df.to_html(index=False, border=0, classes="t", na_rep="", escape=True))
