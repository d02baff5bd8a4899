"""The figures of a report, by name: what each shows, and how to render them all to PNG.

The figure functions live in `plots_dist` (distributions, mode ratios) and `plots_chain`
(nodes, the chain, the SLI); this module names them, so the report, the notebooks and the
tests agree on one list. Each entry draws from a `RunData` and its `stats.Tables` and
returns an Agg `Figure`; an absent input (no removal trials, no SLI in run.json) yields a
panel that says so, never a missing file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from matplotlib.figure import Figure

from analysis.frame import has_mesh
from analysis.load import RunData
from analysis.plotkit import plot_frame, save
from analysis.plots_chain import mesh_sli_figure, nodes_figure, sli_figure, waterfall_figure
from analysis.plots_dist import (
    blackhole_figure,
    box_figure,
    ecdf_figure,
    paths_figure,
    ratio_figure,
)
from analysis.sli import SliHistogram, parse_mesh_sli, parse_sli
from analysis.stats import Settings, Tables, compare_paths, summary_tables

__all__ = [
    "FIGURES", "MESH_CAPTIONS", "MESH_FIGURES", "FigureSpec", "blackhole_figure",
    "box_figure", "ecdf_figure", "figures_for", "nodes_figure", "paths_figure",
    "ratio_figure", "render_all", "sli_figure", "sli_of", "waterfall_figure",
]


@dataclass(frozen=True)
class FigureSpec:
    """A named figure of the report and the sentence that explains it."""

    name: str
    caption: str
    draw: Callable[[RunData, Tables], Figure]


def sli_of(data: RunData) -> tuple[list[SliHistogram], list[str]]:
    """Every SLI histogram in the runs' run.json, and the problems met reading them."""
    hists: list[SliHistogram] = []
    problems: list[str] = []
    for run_id, meta in data.meta.items():
        found, bad = parse_sli(meta, run_id)
        hists += found
        problems += [f"{run_id}: {p}" for p in bad]
    return hists, problems


def _sli(data: RunData, _: Tables) -> Figure:
    hists, problems = sli_of(data)
    return sli_figure(data.hops, hists, problems)


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("ecdf_add", "Add: ECDF of each hop, modes overlaid. A curve stopping below 1 "
               "leaves room for censored trials.", lambda d, t: ecdf_figure(d.hops, "add")),
    FigureSpec("ecdf_remove", "Remove: ECDF of each hop, modes overlaid.",
               lambda d, t: ecdf_figure(d.hops, "remove")),
    FigureSpec("box_add", "Add: box per hop and mode from censoring-aware quantiles.",
               lambda d, t: box_figure(d.hops, "add")),
    FigureSpec("box_remove", "Remove: box per hop and mode.",
               lambda d, t: box_figure(d.hops, "remove")),
    FigureSpec("ecdf_restart", "Restart: ECDF of each hop on the restarted node, modes "
               "overlaid.", lambda d, t: ecdf_figure(d.hops, "restart")),
    FigureSpec("box_restart", "Restart: box per hop and mode (kill → full sync → rule → "
               "first answer).", lambda d, t: box_figure(d.hops, "restart")),
    FigureSpec("ratios", "Each mode's median over the baseline's, per hop, with its bootstrap "
               "interval.", lambda d, t: ratio_figure(t.ratios)),
    FigureSpec("nodes", "End-to-end p50 and p99 per node and mode: the slow node stands out.",
               lambda d, t: nodes_figure(d.hops)),
    FigureSpec("waterfall", "The median add trial of each mode, hop by hop, one row per node.",
               lambda d, t: waterfall_figure(d.hops)),
    FigureSpec("blackhole", "Removal black-hole window and failed requests per node × trial.",
               lambda d, t: blackhole_figure(d.hops)),
    FigureSpec("sli", "kube-proxy's SLI histogram beside the direct measurement of the same "
               "interval.", _sli),
)


def _paths(data: RunData, tables: Tables) -> Figure:
    return paths_figure(data.hops, tables.paths if tables.paths is not None
                        else compare_paths(data.hops))


#: drawn only for runs with the mesh path (a run without --mesh keeps exactly FIGURES)
def _mesh_sli(data: RunData, _: Tables) -> Figure:
    hists: list[SliHistogram] = []
    for run_id, meta in data.meta.items():
        hists += parse_mesh_sli(meta, run_id)[0]
    return mesh_sli_figure(data.hops, hists)


MESH_FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("mesh_vs_kube_proxy", "The mesh's end to end against kube-proxy's on the same "
               "trials, per node: each pair, and the ECDF of their ratio with its median and "
               "bootstrap interval.", _paths),
    FigureSpec("mesh_sli", "istiod's own pilot_proxy_convergence_time (push start after the "
               "debounce → sent, every push of the mode) beside the direct push → EDS sent of "
               "the trials: a cross-check; it starts after the debounce, so it never shows "
               "the ~100 ms istiod waits first.", _mesh_sli),
)


#: a figure's caption for runs with the mesh path, where it differs
MESH_CAPTIONS = {"waterfall": "The median trial of each mode, add and remove, kube-proxy's "
                              "chain above the mesh's on the same trial, one row per node and "
                              "path, from pod Ready (unready)."}


def figures_for(data: RunData) -> tuple[FigureSpec, ...]:
    """The figures of these runs: FIGURES, and MESH_FIGURES when they measured the mesh."""
    return FIGURES + (MESH_FIGURES if has_mesh(data.hops) else ())


def render_all(data: RunData, out_dir: Path | str, tables: Tables | None = None,
               settings: Settings | None = None) -> dict[str, Path]:
    """Draw every figure of `figures_for(data)` into `out_dir/<name>.png`; name -> path.

    `tables` are computed (with `settings`) when not given.
    """
    out = Path(out_dir)
    tables = tables if tables is not None else summary_tables(data.hops, settings)
    data = replace(data, hops=plot_frame(data.hops))  # once, not in every figure
    paths = {}
    for spec in figures_for(data):
        fig = spec.draw(data, tables)
        paths[spec.name] = save(fig, out / f"{spec.name}.png")
    return paths
