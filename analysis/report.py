"""`write_report`: run directories in, PNGs + CSV tables + one self-contained report.html out.

The CLI's `hopbench report RUN_DIR... --out DIR` calls this plain function; so can nox and
notebooks. The HTML embeds every PNG as base64 and needs no network or sibling files, so it
can be mailed or attached to an issue as is.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.frame import MESH, has_mesh, label
from analysis.headline import DirectionAnswer, ModeAnswer, Quantile, headline
from analysis.load import KEY_PROVENANCE, RunData, load_runs
from analysis.plotkit import fmt_ms
from analysis.plots import FIGURES, MESH_CAPTIONS, MESH_FIGURES, render_all, sli_of
from analysis.report_growth import growth_section
from analysis.stats import Settings, Tables, summary_tables
from bench.results.schema import instruments as mode_instruments

#: key in the returned dict -> (Tables attribute, file name)
CSV_FILES = {"summary_csv": ("summary", "summary.csv"),
             "ratios_csv": ("ratios", "mode_ratios.csv"),
             "nodes_csv": ("nodes", "node_stats.csv"),
             "spread_csv": ("spread", "node_spread.csv")}
#: written only for runs with the mesh path: stats.compare_paths
MESH_CSV = ("mesh_csv", "mesh_vs_kube_proxy.csv")
HTML_FILE = "report.html"
OPENING_FIGURE = "waterfall"  # shown beside the answer, not again among the figures


def write_report(run_dirs: Iterable[Path | str] | Path | str, out_dir: Path | str, *,
                 allow_mixed: bool = False, settings: Settings | None = None) -> dict[str, Path]:
    """Write every figure (<name>.png), the CSV tables and report.html into `out_dir`.

    Returns name -> path: one key per figure of `analysis.plots.FIGURES`, plus
    summary_csv, ratios_csv, nodes_csv, spread_csv and html (report.html); for runs with
    the mesh path also the figures of `MESH_FIGURES` and mesh_csv; for a sweep
    (runs with more than one point) also growth_csv, growth_exponents_csv and one key per
    `analysis.plots_growth.GROWTH_FIGURES`. Raises an
    `errors.AnalysisError` on bad input, e.g. `ProvenanceMismatch` for runs that must not
    be pooled (unless allow_mixed); nothing is written then.
    """
    dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    data = load_runs(dirs, allow_mixed=allow_mixed)
    cfg = settings or Settings()
    tables = summary_tables(data.hops, cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = render_all(data, out, tables)
    for key, (attr, name) in CSV_FILES.items():
        frame: pd.DataFrame = getattr(tables, attr)
        frame.to_csv(out / name, index=False)
        paths[key] = out / name
    if has_mesh(data.hops) and tables.paths is not None:
        key, name = MESH_CSV
        tables.paths.to_csv(out / name, index=False)
        paths[key] = out / name
    extra, growth = growth_section(data, out, cfg, _figure)  # a sweep only; else nothing
    paths.update(extra)
    page = render_html(data, tables, paths, cfg, growth)
    paths["html"] = out / HTML_FILE
    paths["html"].write_text(page, encoding="utf-8")
    return paths


def render_html(data: RunData, tables: Tables, figures: dict[str, Path],
                cfg: Settings, growth: str = "") -> str:
    """The report page as one HTML string with the PNGs of `figures` inlined; `growth` is
    a sweep's section (analysis.report_growth), placed after the answer."""
    body = [
        (f"<h1>hopbench report</h1><p class=meta>generated {_now()} from "
         f"{len(data.runs)} run(s); {cfg.confidence:.0%} bootstrap intervals "
         f"({cfg.n_boot} trial resamples, seed {cfg.seed})</p>"),
        _warnings(data, tables),
        _answer(headline(data, tables), figures.get(OPENING_FIGURE), has_mesh(data.hops)),
        *([growth] if growth else []),
        *([mesh_section(data, tables, figures)] if has_mesh(data.hops) else []),
        "<h2>Runs</h2>", _table(data.runs), _run_json(data),
        "<h2>Instruments</h2>",
        ("<p>The run's checks of itself, per run and mode (run.json <code>modes</code>): "
         "rate, the node agents' CPU (highest node; goal ≤ 5 % of a core), the share of "
         "time the prober ran at its fine interval, rule changes that came while a probe "
         "focus still waited for kube-proxy's next sync (should be 0), and the API watch's "
         "delay behind the audit log.</p>"), _table(instruments(data.meta)),
        "<h2>Latency per hop</h2>",
        ("<p>Per-node hops are pooled over nodes (scope <i>node</i>); <i>all-nodes</i> is the "
         "time until every node had converged. Censored trials count in n; a quantile that "
         "falls among them is shown as “&gt; bound (censored)”.</p>"),
        _table(_summary_view(tables.summary)),
        "<h2>Mode vs baseline: ratio of medians</h2>",
        "<p>&lt; 1 means faster than the baseline.</p>", _table(_ratio_view(tables.ratios)),
        "<h2>Per-node spread</h2>",
        ("<p><i>separated</i>: the slowest node's median CI lies wholly above the fastest "
         "node's.</p>"), _table(_spread_view(tables.spread)),
        "<h2>Figures</h2>",
        *(_figure(spec.name, spec.caption, figures[spec.name]) for spec in FIGURES
          if spec.name in figures and spec.name != OPENING_FIGURE),
        _method(),
    ]
    return _PAGE.format(body="\n".join(body))


def _answer(modes: list[ModeAnswer], waterfall: Path | None, mesh: bool = False) -> str:
    """The opening: per mode, end to end on the slowest node and the hop it goes to."""
    if not modes:
        return "<section id=answer><p><i>no end-to-end hops in these runs</i></p></section>"
    text = "".join(f"<h3>{html.escape(m.proxy_mode)}</h3>"
                   + "".join(_direction_answer(d) for d in m.directions) for m in modes)
    fig = ""
    if waterfall is not None:
        spec = next(s for s in FIGURES if s.name == OPENING_FIGURE)
        caption = MESH_CAPTIONS.get(spec.name, spec.caption) if mesh else spec.caption
        fig = _figure(spec.name, caption, waterfall)
    parts = [p for m in modes for d in m.directions for p in d.parts]
    odd = (" A share can exceed 100 %: medians do not add up, and a hop can be negative (the "
           "rule can appear before kube-proxy reports its sync done)."
           if any(p.share > 1 or p.median_ms < 0 for p in parts) else "")
    return ("<section id=answer class=answer><div class=answer-text><h2>The answer</h2>"
            "<p class=note>End to end on the slowest node of each trial (“all nodes "
            "converged”): p50 and p99 over trials with their bootstrap interval. The dominant "
            "hop has the largest median on each trial's slowest node; its share is that "
            f"median over the end-to-end median.{odd}</p>"
            f"{text}</div><div class=answer-fig>{fig}</div></section>")


def _direction_answer(d: DirectionAnswer) -> str:
    cens = f", {d.n_censored} censored" if d.n_censored else ""
    what = d.label.removeprefix("end to end: ").removeprefix("mesh end to end: ")
    kind = {"add": "Add", "remove": "Removal", "restart": "kube-proxy restart"}.get(
        d.direction, d.direction)
    head = (f"<p class=e2e><b>{kind}</b> "
            f"({html.escape(d.scenario)}, {d.n} trials{cens}), {html.escape(what)} on every "
            f"node: p50 {_answer_q(d.p50)}, p99 {_answer_q(d.p99)}</p>")
    if d.dominant is None:
        return head + f"<p class=why>{html.escape(d.why)}</p>"
    top = d.dominant
    share = "" if np.isnan(top.share) else f", {top.share:.0%} of the end-to-end median"
    steps = " · ".join(f"{html.escape(p.label)} {fmt_ms(p.median_ms)}" for p in d.parts)
    return (head + f"<p class=why>Dominant hop: <b>{html.escape(top.label)}</b>, median "
            f"{fmt_ms(top.median_ms)}{share}. Why: {html.escape(d.why)}</p>"
            f"<p class=steps>medians on the slowest node: {steps}</p>")


def mesh_section(data: RunData, tables: Tables, figures: Mapping[str, Path]) -> str:
    """The "Mesh path" section (runs with --mesh only): the mesh's end to end against
    kube-proxy's on the same trials, the mesh's own answer, and its figures."""
    comparison = tables.paths if tables.paths is not None else pd.DataFrame()
    answers = headline(data, tables, MESH)
    text = "".join(f"<h3>{html.escape(m.proxy_mode)}</h3>"
                   + "".join(_direction_answer(d) for d in m.directions) for m in answers)
    return "\n".join([
        "<section id=mesh><h2>Mesh path</h2>",
        ("<p>The same trials measured on a second discovery path: the mesh's control plane "
         "(istiod) reads the same EndpointSlice, pushes the endpoints over xDS (EDS) to a "
         "proxyless gRPC client on each node, whose balancer and picker take the pod in or "
         "out; its chain and hops are in the waterfall, the ECDF and box figures and the "
         "tables above (their mesh rows). Here each node's end to end on the mesh is paired "
         "with kube-proxy's on the same trial and node: the medians of both, and the median "
         "of the per-pair ratios mesh / kube-proxy (&lt; 1: the mesh is faster) with its "
         "bootstrap interval (trials resampled). A pair with either side censored has an "
         "unknown ratio and counts as censored.</p>"),
        _table(_paths_view(comparison)),
        ("<p class=note>The mesh's end to end on the slowest node of each trial, and the hop "
         "it goes to (as in the answer above).</p>"),
        text or "<p><i>no mesh end-to-end hops at all nodes</i></p>",
        *(_figure(spec.name, spec.caption, figures[spec.name]) for spec in MESH_FIGURES
          if spec.name in figures),
        "</section>",
    ])


def _paths_view(comparison: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in comparison.iterrows():
        ratio = "censored" if r["ratio_censored"] else f"{r['ratio']:.2f}" + (
            "" if np.isnan(r["ratio_lo"]) else f" [{r['ratio_lo']:.2f}, {r['ratio_hi']:.2f}]")
        rows.append({
            "direction": r["direction"], "scenario": r["scenario"], "mode": r["proxy_mode"],
            "pairs (node × trial)": f"{r['n_pairs']} ({r['n_trials']} trials"
                                    + (f", {r['n_censored']} censored)" if r["n_censored"]
                                       else ")"),
            "mesh hop": label(r["direction"], r["hop"]),
            "kube-proxy hop": label(r["direction"], r["baseline_hop"]),
            "mesh p50": _pq(r, "p50"), "kube-proxy p50": _pq(r, "baseline_p50"),
            "mesh / kube-proxy (median ratio)": ratio,
        })
    return pd.DataFrame(rows)


def _pq(r: pd.Series, name: str) -> str:
    value, lo, hi = r[f"{name}_ms"], r[f"{name}_lo_ms"], r[f"{name}_hi_ms"]
    if np.isposinf(value):
        return "censored"
    return fmt_ms(value) + ("" if np.isnan(lo) else f" [{fmt_ms(lo)}, {fmt_ms(hi)}]")


def _answer_q(q: Quantile) -> str:
    if q.censored:
        bound = f" (&gt; {fmt_ms(q.above_ms)})" if np.isfinite(q.above_ms) else ""
        return f"<b>censored</b>{bound}"
    ci = "" if np.isnan(q.lo_ms) else f" [{fmt_ms(q.lo_ms)}, {fmt_ms(q.hi_ms)}]"
    return f"<b>{fmt_ms(q.value_ms)}</b>{ci}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _warnings(data: RunData, tables: Tables) -> str:
    notes = []
    unfinished = data.runs.loc[data.runs["status"] != "finished", ["run_id", "status"]]
    for run_id, status in unfinished.itertuples(index=False, name=None):
        notes.append(f"run {run_id} is {status or 'of unknown status'}: it may be incomplete")
    for key in KEY_PROVENANCE:
        values = data.runs[key].astype(str).unique()
        if len(values) > 1:
            notes.append(f"runs pooled although {key} differs: {', '.join(values)}")
    summary = tables.summary
    if not summary.empty and summary["n_flagged"].sum():
        notes.append(f"{int(summary['n_flagged'].sum())} rows are flagged (e.g. negative "
                     "intervals); they are kept, not clamped")
    _, problems = sli_of(data)
    notes += [f"SLI: {p}" for p in problems]
    if not notes:
        return ""
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f"<div class=warn><b>Read with care</b><ul>{items}</ul></div>"


def instruments(meta: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run and mode from run.json `modes`; keys an older run lacks stay empty."""
    rows = []
    for run_id, run in meta.items():
        for mode, m in (run.get("modes") or {}).items():
            ins = mode_instruments(str(mode), m)
            delay = ins.watch_delay_ms
            rows.append({
                "run_id": run_id, "proxy_mode": mode,
                "trials/min": ins.trials_per_minute,
                "agent CPU max %": (round(max(ins.agent_cpu.values()) * 100, 1)
                                    if ins.agent_cpu else None),
                "fine probing %": (round(max(ins.fine_share.values()) * 100)
                                   if ins.fine_share else None),
                "early rule changes": (sum(ins.early_rule_changes.values())
                                       if ins.early_rule_changes else None),
                "watch delay p50/p90 ms (slice)":
                    f"{delay.get('slice_ready_p50', '–')} / {delay.get('slice_ready_p90', '–')}",
            })
    return pd.DataFrame(rows)


def _run_json(data: RunData) -> str:
    parts = []
    for run_id, meta in data.meta.items():
        shown = {k: v for k, v in meta.items() if k != "sli"}
        text = html.escape(json.dumps(shown, indent=2, sort_keys=True, default=str))
        parts.append(f"<details><summary>run.json of {html.escape(run_id)}</summary>"
                     f"<pre>{text}</pre></details>")
    return "\n".join(parts)


def _q(row: pd.Series, name: str) -> str:
    value = row[f"{name}_ms"]
    if np.isposinf(value):
        bound = row.get("censored_above_ms", np.nan)
        return f"> {fmt_ms(bound)} (censored)" if np.isfinite(bound) else "censored"
    lo, hi = row[f"{name}_lo_ms"], row[f"{name}_hi_ms"]
    if np.isnan(lo):
        return fmt_ms(value)
    return f"{fmt_ms(value)} [{fmt_ms(lo)}, {fmt_ms(hi)}]"


def _summary_view(summary: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in summary.iterrows():
        rows.append({
            "direction": r["direction"], "scenario": r["scenario"], "mode": r["proxy_mode"],
            "hop": r["label"], "scope": r["scope"], "n": r["n"],
            "censored": f"{r['n_censored']} ({r['censored_frac']:.1%})",
            "p50": _q(r, "p50"), "p90": _q(r, "p90"), "p99": _q(r, "p99"),
            "max": _q(r, "max"), "flagged": r["n_flagged"],
        })
    return pd.DataFrame(rows)


def _ratio_view(ratios: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in ratios.iterrows():
        interval = ("" if np.isnan(r["ratio_lo"])
                    else f" [{r['ratio_lo']:.2f}, {r['ratio_hi']:.2f}]")
        rows.append({
            "direction": r["direction"], "scenario": r["scenario"],
            "hop": label(r["direction"], r["hop"]), "scope": r["scope"],
            "mode": f"{r['proxy_mode']} vs {r['baseline']}",
            "median": f"{fmt_ms(r['p50_ms'])} vs {fmt_ms(r['baseline_p50_ms'])}",
            "ratio": f"{r['ratio']:.2f}{interval}" + (" (censored)" if r["censored"] else ""),
        })
    return pd.DataFrame(rows)


def _spread_view(spread: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in spread.iterrows():
        rows.append({
            "direction": r["direction"], "scenario": r["scenario"], "mode": r["proxy_mode"],
            "hop": label(r["direction"], r["hop"]), "nodes": r["n_nodes"],
            "slowest node": f"{r['slowest_node']}: p50 {fmt_ms(r['slowest_p50_ms'])}"
                            f" [{fmt_ms(r['slowest_p50_lo_ms'])}, "
                            f"{fmt_ms(r['slowest_p50_hi_ms'])}]",
            "fastest node": f"{r['fastest_node']}: p50 {fmt_ms(r['fastest_p50_ms'])}",
            "p50 spread": fmt_ms(r["spread_p50_ms"]), "separated": r["separated"],
        })
    return pd.DataFrame(rows)


def _table(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p><i>no rows</i></p>"
    return str(df.to_html(index=False, border=0, classes="t", na_rep="", escape=True))


def _figure(name: str, caption: str, path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure id={html.escape(name)}><img alt=\"{html.escape(name)}\" "
            f"src=\"data:image/png;base64,{data}\"><figcaption>{html.escape(caption)}"
            "</figcaption></figure>")


def _method() -> str:
    return ("<h2>Method</h2><ul>"
            "<li>Quantiles are inverted-CDF order statistics (always a measured value).</li>"
            "<li>Censored trials (timeouts) are right-censored beyond every observed value: "
            "the Kaplan-Meier estimate then equals the ECDF with censored trials at +∞, so a "
            "quantile in the censored mass is reported as censored, never computed from the "
            "uncensored trials alone.</li>"
            "<li>Intervals: percentile bootstrap resampling whole trials, so the correlated "
            "per-node rows of one trial move together.</li>"
            "<li>kube-proxy's SLI histogram is a cross-check: 250 ms+ buckets and a start "
            "time truncated to the second.</li></ul>")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hopbench report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1500px; color: #222; }}
h1 {{ margin-bottom: 0; }} .meta {{ color: #666; margin-top: .2em; }}
table.t {{ border-collapse: collapse; font-size: 13px; margin: .5em 0 1.5em; }}
table.t th, table.t td {{ padding: 3px 8px; border-bottom: 1px solid #ddd; text-align: left; }}
table.t th {{ background: #f3f3f3; }}
.warn {{ background: #fff4e5; border: 1px solid #f0a040; padding: .5em 1em; margin: 1em 0; }}
figure {{ margin: 1.5em 0; }} figure img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ color: #555; font-size: 14px; }}
.answer {{ display: flex; gap: 2em; align-items: flex-start; border-bottom: 2px solid #ddd; }}
.answer-text {{ flex: 1 1 40%; min-width: 22em; }} .answer-fig {{ flex: 1 1 60%; }}
.answer h3 {{ margin: 1em 0 .2em; }} .answer p {{ margin: .3em 0; }}
.note, .steps {{ color: #666; font-size: 13px; }}
pre {{ background: #f7f7f7; padding: .5em; font-size: 12px; overflow-x: auto; }}
</style></head><body>
{body}
</body></html>
"""
