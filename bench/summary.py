"""Latency distribution per hop, as a table for the CLI (`show`, end of a run).

A quick and honest look at a run without the notebooks. One line per sweep point x
proxy_mode x scenario x direction x hop x scope (a run without a sweep has one point, ""),
where scope is (same names as analysis.frame)
- "cluster":   a cluster-level hop (one sample per trial, node == CLUSTER);
- "node":      a per-node hop pooled over every node row (one sample per trial and node);
- "all-nodes": the same hop's ALL_NODES rows, "all nodes converged" = max over nodes
  (one sample per trial), on its own line right under the "node" line.
Quantiles are analysis.quantiles' (the project's one estimator, shared with report.html and
run.json): nearest-rank, so every number is a measured sample. Censored samples are not
dropped, which would bias the tail low: they count as +inf (as does a NaN latency not
flagged censored: unknown, so not small), so a quantile that falls among them reads as inf
("censored" in `render`). Negative samples are kept and counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from rich import box
from rich.table import Table

from analysis.quantiles import quantiles, sample
from bench.results.point import Point
from bench.results.schema import ALL_NODES, CLUSTER, HOP_DTYPES, HOPS, instruments
from bench.timeline import coerce

KEYS = ["point", "proxy_mode", "scenario", "direction", "hop", "scope"]
QUANTILES = {"p50_ms": 0.50, "p90_ms": 0.90, "p99_ms": 0.99}
SUMMARY_DTYPES: dict[str, str] = {
    **dict.fromkeys(KEYS, "str"),
    "n": "int64", "censored": "int64", "negative": "int64",
    **dict.fromkeys([*QUANTILES, "max_ms"], "float64"),
}
SCOPES = ("cluster", "node", "all-nodes")
_HOP_ORDER: dict[tuple[str, str], int] = {(h.direction, h.name): i for i, h in enumerate(HOPS)}
_LABEL: dict[tuple[str, str], str] = {(h.direction, h.name): h.label for h in HOPS}


def summary_table(hops: pd.DataFrame) -> pd.DataFrame:
    """Distribution of latency_ms per (point, proxy_mode, scenario, direction, hop, scope)."""
    df = coerce(hops, HOP_DTYPES)
    df["scope"] = np.select(
        [df["node"] == CLUSTER, df["node"] == ALL_NODES], [SCOPES[0], SCOPES[2]], SCOPES[1]
    )
    lines = [_line(key, group) for key, group in df.groupby(KEYS, sort=False)]
    lines.sort(key=_order)
    return coerce(pd.DataFrame(lines, columns=list(SUMMARY_DTYPES)), SUMMARY_DTYPES)


def _line(key: tuple[Any, ...], group: pd.DataFrame) -> dict[str, Any]:
    s = sample(group["latency_ms"].to_numpy(float), group["censored"].to_numpy(bool))
    values = quantiles(s, [*QUANTILES.values(), 1.0])
    return {
        **dict(zip(KEYS, key, strict=True)),
        "n": len(group),
        "censored": int(group["censored"].sum()),
        "negative": int((group["flag"] == "negative").sum()),
        **{name: float(v) for name, v in zip([*QUANTILES, "max_ms"], values, strict=True)},
    }


def _order(line: Mapping[str, Any]) -> tuple[Any, ...]:
    hop = _HOP_ORDER.get((line["direction"], line["hop"]), len(_HOP_ORDER))
    p = Point.parse(line["point"])
    return (p.services, p.endpoints, p.churn_per_s, line["proxy_mode"], line["scenario"],
            line["direction"], hop, line["hop"],
            SCOPES.index(line["scope"]))


def render(df: pd.DataFrame, title: str = "latency per hop (ms)", width: int | None = None
           ) -> Table:
    """A rich table of `summary_table` output; inf shows as "censored", NaN as "-".

    Under 100 columns (`width`, e.g. an 80-column terminal) the table drops its `neg` and
    `max` columns and its inner borders, so that every remaining column keeps its text.
    """
    compact = width is not None and width < 100
    table = Table(title=title, caption="ms; censored samples count as +inf; nearest-rank "
                  "quantiles; 'all' = slowest node per trial", caption_justify="left",
                  box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD)
    table.add_column("mode / scenario / hop", no_wrap=True, overflow="ellipsis")
    table.add_column("over", no_wrap=True, min_width=4)
    stats = ("n", "cens", "p50", "p90", "p99") if compact else (
        "n", "cens", "neg", "p50", "p90", "p99", "max")
    for name in stats:
        table.add_column(name, justify="right", no_wrap=True)
    group = None
    for r in df.to_dict("records"):
        key = (str(r["proxy_mode"]), str(r["scenario"]), str(r["direction"]), str(r["point"]))
        if key != group:
            group = key
            table.add_section()
            at = f" @ {key[3]}" if key[3] else ""  # the sweep point; "" without a sweep
            # two short lines, not one long one: the first column stays narrow enough for
            # every number to fit an 80-column terminal
            table.add_row(f"[bold]{key[0]} / {key[1]}[/]\n({key[2]}){at}",
                          *[""] * (1 + len(stats)))
        scope = {"all-nodes": "all"}.get(str(r["scope"]), str(r["scope"]))
        cells = {"n": str(r["n"]), "cens": str(r["censored"]), "neg": str(r["negative"]),
                 **{c[:3]: _ms(float(r[c])) for c in (*QUANTILES, "max_ms")}}
        table.add_row(f"  {r['hop']}", scope, *(cells[name] for name in stats))
    return table


def instruments_table(meta: Mapping[str, Any], width: int | None = None) -> Table | None:
    """The run's checks of its own instruments (run.json `modes`), one column per mode:
    rate, agent CPU, how long the prober ran at its fine interval, rule changes that
    beat the probe focus, the resolution of each source and the API watch's delay."""
    modes = meta.get("modes") or {}
    if not modes:
        return None
    table = Table(title="instruments", box=box.SIMPLE_HEAD if width and width < 100
                  else box.HEAVY_HEAD)
    table.add_column("", no_wrap=True)
    for mode in modes:
        table.add_column(str(mode))
    rows: dict[str, list[str]] = {}
    for mode, m in modes.items():
        ins = instruments(str(mode), m)
        delay = ins.watch_delay_ms
        cells = {
            "trials per minute": f"{_or_dash(ins.trials_per_minute)} "
                                 f"({_or_dash(ins.trials)} in {ins.elapsed_s:.0f} s"
                                 + (f", {ins.segments} segments)" if ins.segments > 1
                                    else ")"),
            "agent CPU per node": ", ".join(f"{n} {v * 100:.1f} %"
                                            for n, v in ins.agent_cpu.items()),
            "fine probing, share of time": ", ".join(f"{n} {v * 100:.0f} %"
                                                     for n, v in ins.fine_share.items()),
            "rule changes before the focus": ", ".join(
                f"{n} {v}" for n, v in ins.early_rule_changes.items()),
            "rule watch": f"{ins.rule_method or '-'}, {_ns_ms(ins.rule_resolution_ns)}",
            "prober interval": f"{_ns_ms(ins.probe_interval_ns)} (idle "
                               f"{_ns_ms(ins.probe_idle_interval_ns)})",
            "API watch delay p50/p90": "pod {} / {}, slice {} / {} ms".format(
                *(delay.get(k, "-") for k in ("pod_ready_p50", "pod_ready_p90",
                                              "slice_ready_p50", "slice_ready_p90"))),
            "agent errors": ", ".join(f"{n} {v}" for n, v in ins.agent_errors.items()),
        }
        if m.get("mesh"):  # a mesh run: its Go client's CPU is apart from the agent's
            cells["mesh client CPU per node"] = ", ".join(
                f"{n} {v * 100:.1f} %" for n, v in (m.get("mesh_client_cpu_fraction")
                                                    or {}).items())
        for name, value in cells.items():
            rows.setdefault(name, []).append(value or "-")
    for name, values in rows.items():
        table.add_row(name, *values)
    return table


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def _ns_ms(value: Any) -> str:
    if value is None:
        return "-"
    return f"{float(value) / 1e6:g} ms"


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "[yellow]censored[/]" if value > 0 else "-inf"
    return f"{value:,.1f}" if abs(value) < 100 else f"{value:,.0f}"
