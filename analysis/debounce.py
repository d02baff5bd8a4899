"""istiod's push debounce swept: the mesh hops against PILOT_DEBOUNCE_AFTER (issue 11, item 7).

A sweep is several runs with `--mesh istio --component-env istiod:PILOT_DEBOUNCE_AFTER=X`,
one X per run (`nox -s mesh_debounce`). Each run's X is read from its own provenance
(run.json `component_env`, the Go duration istiod was given; unset is istio's default,
100 ms), never from a directory name. `debounce_table` gives, per X, direction and hop,
the median of the per-node rows (nodes pooled, not the all-nodes "*" row) with the
project's one quantile rule and trial bootstrap (`analysis.stats.summarize`):
slice → push (T2 / R2 → EDS sent) and the mesh's end to end (Ready → first RPC on add,
unready → gone from the balancer on remove). `debounce_figure` plots them over X.

    python -m analysis.debounce RUN_DIR... --out DIR   # debounce.csv and debounce.png
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.frame import DIRECTIONS, SCOPE_NODE, label, with_scope
from analysis.load import RunData, load_run
from analysis.plotkit import LINESTYLES, figure, fmt_ms, grid, margins, save
from analysis.stats import GROUP, Settings, summarize
from bench.results.schema import MESH_END_TO_END

COMPONENT, VARIABLE = "istiod", "PILOT_DEBOUNCE_AFTER"
#: istio's default when the run did not set it (pilot/pkg/features/tuning.go)
ISTIO_DEFAULT_MS = 100.0
#: direction -> hops plotted over the debounce: istiod's part, then the mesh's end to end
SWEEP_HOPS: dict[str, tuple[str, ...]] = {d: ("slice_to_push", e2e) for d, e2e in
                                   MESH_END_TO_END.items()}
COLUMNS = ["debounce_ms", "debounce", "direction", "scenario", "proxy_mode", "hop", "label",
           "n", "n_trials", "n_censored", "median_ms", "median_lo_ms", "median_hi_ms",
           "median_censored", "ci", "run_ids"]
CSV = "debounce.csv"
PNG = "debounce.png"
_HOP_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
_UNIT_NS = {"ns": 1.0, "us": 1e3, "µs": 1e3, "μs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9,
            "h": 3600e9}
_TERM = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def go_duration_ms(text: str) -> float:
    """A Go `time.ParseDuration` string ("0", "100ms", "1.5s", "1m30s") in milliseconds."""
    raw = text.strip()
    body = raw.lstrip("+-")
    if body == "0":
        return 0.0
    if not body or _TERM.sub("", body):
        raise ValueError(f"{VARIABLE}={text!r} is not a Go duration (e.g. 0s, 100ms, 1s)")
    ns = sum(float(v) * _UNIT_NS[u] for v, u in _TERM.findall(body))
    return -ns / 1e6 if raw.startswith("-") else ns / 1e6


def debounce_setting(meta: Mapping[str, Any]) -> tuple[float, str]:
    """(ms, as given) of a run's PILOT_DEBOUNCE_AFTER from run.json `component_env`;
    (ISTIO_DEFAULT_MS, "") when the run did not set it."""
    env = (meta.get("component_env") or {}).get(COMPONENT) or {}
    if VARIABLE not in env:
        return ISTIO_DEFAULT_MS, ""
    return go_duration_ms(str(env[VARIABLE])), str(env[VARIABLE])


def debounce_table(runs: Sequence[RunData], settings: Settings | None = None) -> pd.DataFrame:
    """One row per debounce, direction, scenario, mode and hop (SWEEP_HOPS): the median over the
    per-node rows with its bootstrap CI, sorted by direction, hop and debounce.

    Runs with the same debounce are pooled (the bootstrap resamples each run's trials).
    """
    parts = []
    for data in runs:
        for run_id, meta in data.meta.items():
            ms, given = debounce_setting(meta)
            hops = with_scope(data.hops)
            mine = hops.loc[(hops["run_id"] == run_id) & (hops["scope"] == SCOPE_NODE)
                            & _wanted(hops)]
            parts.append(mine.assign(debounce_ms=ms, debounce=given))
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if rows.empty:
        return pd.DataFrame(columns=COLUMNS)
    by = ("debounce_ms", *GROUP)
    table = summarize(rows, settings, by)
    given = rows.groupby("debounce_ms")["debounce"].agg(lambda s: " / ".join(sorted(set(s))))
    ids = rows.groupby("debounce_ms")["run_id"].agg(lambda s: " ".join(sorted(set(map(str, s)))))
    out = table.rename(columns={"p50_ms": "median_ms", "p50_lo_ms": "median_lo_ms",
                                "p50_hi_ms": "median_hi_ms", "p50_censored": "median_censored"})
    out["debounce"] = out["debounce_ms"].map(given)
    out["run_ids"] = out["debounce_ms"].map(ids)
    order = {dh: i for i, dh in enumerate((d, h) for d, hs in SWEEP_HOPS.items() for h in hs)}
    out = out.assign(_k=[order.get((d, h), 99) for d, h in zip(out["direction"], out["hop"])])
    out = out.sort_values(["_k", "scenario", "proxy_mode", "debounce_ms"], kind="stable")
    return out[COLUMNS].reset_index(drop=True)


def _wanted(hops: pd.DataFrame) -> pd.Series:
    mask = pd.Series(False, index=hops.index)
    for direction, names in SWEEP_HOPS.items():
        mask |= (hops["direction"] == direction) & hops["hop"].isin(names)
    return mask


def debounce_figure(table: pd.DataFrame) -> Figure:
    """x: PILOT_DEBOUNCE_AFTER (ms); y: median with its CI as error bars; one line per hop
    (and mode / scenario when a sweep has several); add and remove panels.

    slice → push starts at the harness's watch of the slice (T2 / R2), which istiod may
    beat: with no debounce its median can be a few ms below zero, so the axis keeps 0 in
    view rather than starting there."""
    directions = [d for d in DIRECTIONS if d in SWEEP_HOPS]
    fig = figure(11.0, 4.4)
    margins(fig, columns=len(directions), wspace=0.9, top=0.8, bottom=1.25)
    axes = grid(fig, len(directions), len(directions))
    ci = float(table["ci"].iloc[0]) if len(table) else 0.95
    for ax, direction in zip(axes, directions):
        part = table.loc[table["direction"] == direction]
        lines = part[["hop", "scenario", "proxy_mode"]].drop_duplicates()
        several = len(lines[["scenario", "proxy_mode"]].drop_duplicates()) > 1
        for i, (hop, scenario, mode) in enumerate(lines.itertuples(index=False, name=None)):
            rows = part.loc[(part["hop"] == hop) & (part["scenario"] == scenario)
                            & (part["proxy_mode"] == mode)].sort_values("debounce_ms")
            _line(ax, rows, f"{label(direction, hop)}"
                            + (f" ({scenario}, {mode})" if several else ""),
                  _HOP_COLORS[list(SWEEP_HOPS[direction]).index(hop) % len(_HOP_COLORS)]
                  if hop in SWEEP_HOPS[direction] else _HOP_COLORS[-1],
                  LINESTYLES[i // max(1, len(SWEEP_HOPS[direction])) % len(LINESTYLES)],
                  above=i % 2 == 1)
        ticks = sorted(set(part["debounce_ms"]))
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlabel("PILOT_DEBOUNCE_AFTER (ms)")
        ax.set_ylabel("median (ms), per node")
        ax.axhline(0, color="#888888", linewidth=0.8)  # a median may be < 0 (see below)
        ax.margins(x=0.1)
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{direction} ({_scenarios(part)})")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), fontsize=8, frameon=False)
    fig.suptitle(f"istiod's push debounce: median per node with {ci:.0%} bootstrap CI "
                 "(trials resampled)")
    return fig


def _line(ax: Any, rows: pd.DataFrame, text: str, color: str, style: str,
          above: bool) -> None:
    """One hop over the debounce; values written above-left (`above`) or below-right, so
    two lines that nearly meet keep their numbers apart."""
    x = rows["debounce_ms"].to_numpy(float)
    y = rows["median_ms"].to_numpy(float)
    lo, hi = rows["median_lo_ms"].to_numpy(float), rows["median_hi_ms"].to_numpy(float)
    ok = np.isfinite(y)
    err = np.vstack([np.where(np.isfinite(lo), y - lo, 0), np.where(np.isfinite(hi), hi - y, 0)])
    n = int(rows["n"].min()) if len(rows) else 0
    ax.errorbar(x[ok], y[ok], yerr=err[:, ok], color=color, linestyle=style, marker="o",
                capsize=4, label=f"{text} (n ≥ {n})")
    for xi, yi in zip(x[ok], y[ok]):
        ax.annotate(fmt_ms(yi), (xi, yi), textcoords="offset points",
                    xytext=(-6, 6) if above else (6, -10), ha="right" if above else "left",
                    fontsize=7, color=color)
    for xi in x[~ok]:  # a censored median: beyond the bound, not plotted as a number
        ax.annotate("censored", (xi, 0), textcoords="offset points", xytext=(0, 6),
                    fontsize=7, color=color, ha="center")


def _scenarios(part: pd.DataFrame) -> str:
    return ", ".join(sorted(set(map(str, part["scenario"])))) or "no rows"


def write(run_dirs: Sequence[Path | str], out: Path | str,
          settings: Settings | None = None) -> tuple[pd.DataFrame, Path, Path]:
    """Load each run, write debounce.csv and debounce.png under `out`; the table and paths."""
    table = debounce_table([load_run(p) for p in run_dirs], settings)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / CSV, index=False)
    return table, out_dir / CSV, save(debounce_figure(table), out_dir / PNG)


def table_text(table: pd.DataFrame) -> str:
    """The table as a reader wants it: one line per debounce, direction and hop."""
    lines = []
    for _, r in table.iterrows():
        ci = f"[{fmt_ms(r['median_lo_ms'])}, {fmt_ms(r['median_hi_ms'])}]"
        lines.append(f"{r['debounce_ms']:>6g} ms  {r['direction']:<6} {r['scenario']:<9} "
                     f"{r['hop']:<22} n={r['n']:<3} median {fmt_ms(r['median_ms']):>9} {ci}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.debounce",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories, one per debounce")
    parser.add_argument("--out", required=True, help="directory for debounce.csv / .png")
    parser.add_argument("--boot", type=int, default=Settings().n_boot)
    args = parser.parse_args(argv)
    table, csv, png = write(args.runs, args.out, Settings(n_boot=args.boot))
    print(table_text(table))
    print(f"wrote {csv} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
