"""The mesh path beside kube-proxy's in the analysis: grouping, paired comparison, waterfall,
and the report's "Mesh path" section (only for runs that measured it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_synth import add_mesh, hops_frame, make_run

from analysis.frame import (
    CHAIN_ORDER,
    KUBE_PROXY,
    MESH,
    chain_events,
    has_mesh,
    path_of,
    with_scope,
)
from analysis.headline import chain, headline
from analysis.load import load_run
from analysis.plots import FIGURES, MESH_FIGURES
from analysis.plots_chain import chain_steps, paths_waterfall_figure, waterfall_figure
from analysis.plots_dist import panel_groups
from analysis.report import CSV_FILES, MESH_CSV, write_report
from analysis.stats import Settings, compare_paths, summary_tables
from bench.results.schema import HOPS, MESH_END_TO_END, Ev

FAST = Settings(n_boot=200)


@pytest.fixture(scope="module")
def mesh_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = make_run(tmp_path_factory.mktemp("runs") / "mesh", trials=48, nodes=2,
                   censor_frac=0.0)
    return add_mesh(run)  # type: ignore[no-any-return]


def test_chain_order_puts_each_paths_hops_together() -> None:
    for direction in ("add", "remove"):
        kube = [CHAIN_ORDER[(direction, h.name)] for h in HOPS
                if h.direction == direction and h.path == KUBE_PROXY]
        mesh = [CHAIN_ORDER[(direction, h.name)] for h in HOPS
                if h.direction == direction and h.path == MESH]
        assert mesh and max(kube) < min(mesh)
        assert path_of(direction, MESH_END_TO_END[direction]) == MESH


def test_chain_events_follow_the_schema() -> None:
    assert chain_events("add") == (Ev.POD_READY, Ev.SLICE_READY, Ev.PROXY_SYNC,
                                   Ev.RULE_PRESENT, Ev.FIRST_SUCCESS)
    mesh = chain_events("add", MESH)
    assert mesh[:2] == (Ev.POD_READY, Ev.SLICE_READY) and mesh[-1] == Ev.MESH_FIRST
    assert [e for e in mesh if e in (Ev.MESH_SLICE_SEEN, Ev.MESH_PUSH, Ev.EDS_SENT,
                                     Ev.EDS_RECEIVED, Ev.LB_UPDATE, Ev.PICKER_READY)] == [
        Ev.MESH_SLICE_SEEN, Ev.MESH_PUSH, Ev.EDS_SENT, Ev.EDS_RECEIVED, Ev.LB_UPDATE,
        Ev.PICKER_READY]
    remove = chain_events("remove", MESH)
    assert remove[0] == Ev.POD_UNREADY and remove[-1] == Ev.LB_UPDATE
    assert Ev.MESH_LAST not in remove and Ev.MESH_FAIL_LAST not in remove
    assert chain_events("restart", MESH) == ()


def test_headline_chain_of_the_mesh_shares_ready_to_slice() -> None:
    steps = chain("add", MESH)
    assert steps[0].name == "ready_to_slice" and steps[-1].end == Ev.MESH_FIRST
    assert all(h.path == MESH for h in steps[1:])
    old = chain("add", MESH, {"ready_to_slice", "slice_to_push", "push_to_eds",
                              "eds_to_mesh_traffic"})  # a run recorded before a later hop
    assert [h.name for h in old] == ["ready_to_slice", "slice_to_push", "push_to_eds",
                                     "eds_to_mesh_traffic"]
    assert [h.name for h in chain("remove")] == ["unready_to_slice", "slice_to_sync",
                                                  "sync_to_rule"]


def _pair(trial: int, node: str, kube: float | None, mesh: float | None,
          mode: str = "iptables") -> list[dict[str, object]]:
    common = {"trial": trial, "node": node, "proxy_mode": mode}
    return [{**common, "hop": "ready_to_traffic", "latency_ms": kube},
            {**common, "hop": "ready_to_mesh_traffic", "latency_ms": mesh}]


def test_paired_ratio_on_hand_made_numbers() -> None:
    # per-pair ratios 0.1, 0.2, 0.5, 0.25, 0.3 (and one more node-row elsewhere): the median
    # of the ratios is 0.25, not the ratio of the medians (60 / 300 = 0.2)
    rows = [*_pair(0, "n1", 100.0, 10.0), *_pair(0, "n2", 200.0, 40.0),
            *_pair(1, "n1", 120.0, 60.0), *_pair(1, "n2", 400.0, 100.0),
            *_pair(2, "n1", 300.0, 90.0),
            {"trial": 2, "node": "n2", "hop": "ready_to_traffic", "latency_ms": 50.0}]
    table = compare_paths(hops_frame(rows), FAST)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["direction"], row["proxy_mode"], row["hop"], row["baseline_hop"]) == (
        "add", "iptables", "ready_to_mesh_traffic", "ready_to_traffic")
    assert row["n_pairs"] == 5 and row["n_trials"] == 3 and row["n_censored"] == 0
    assert row["ratio"] == pytest.approx(0.25)
    assert row["p50_ms"] == 60.0 and row["baseline_p50_ms"] == 200.0
    assert row["ratio_lo"] <= row["ratio"] <= row["ratio_hi"]
    assert 0.1 <= row["ratio_lo"] and row["ratio_hi"] <= 0.5


def test_paired_ratio_counts_a_censored_side_as_unknown() -> None:
    rows = [*_pair(0, "n1", 100.0, 10.0), *_pair(1, "n1", 100.0, None),
            *_pair(2, "n1", None, 30.0)]
    row = compare_paths(hops_frame(rows), FAST).iloc[0]
    assert row["n_pairs"] == 3 and row["n_censored"] == 2
    assert np.isposinf(row["ratio"]) and row["ratio_censored"]  # 2 of 3 unknown
    assert compare_paths(hops_frame(_pair(0, "n1", 100.0, 10.0)[:1])).empty


def test_paired_ratio_is_per_mode_and_bootstrapped_by_trial() -> None:
    rows = [r for t in range(20) for n in ("n1", "n2") for r in (
        *_pair(t, n, 100.0 + t, 50.0 + t / 2),
        *_pair(t, n, 100.0, 25.0, mode="nftables"))]
    table = compare_paths(hops_frame(rows), FAST)
    assert list(table["proxy_mode"]) == ["iptables", "nftables"]
    assert table["ratio"].tolist() == pytest.approx([0.5, 0.25])
    assert (table["n_trials"] == 20).all() and (table["n_pairs"] == 40).all()
    assert table.iloc[1]["ratio_lo"] == table.iloc[1]["ratio_hi"] == 0.25


def test_mesh_panels_form_their_own_group(mesh_run: Path) -> None:
    hops = with_scope(load_run(mesh_run).hops)
    groups = panel_groups(hops.loc[hops["direction"] == "add"], "add")
    assert [p for p, _ in groups] == [KUBE_PROXY, MESH]
    mesh_hops = [hop for hop, _, _ in groups[1][1]]
    assert mesh_hops[-1] == "ready_to_mesh_traffic"  # its all-nodes panel closes the group
    assert {h.name for h in HOPS if h.direction == "add" and h.path == MESH} == set(mesh_hops)
    assert all(path_of("add", h) == KUBE_PROXY for h, _, _ in groups[0][1])
    titles = [t for _, _, t in groups[1][1]]
    label = next(h.label for h in HOPS if h.name == "eds_to_lb" and h.direction == "add")
    assert any(t.startswith(label) for t in titles)


def test_chain_steps_solve_the_events_no_hop_joins() -> None:
    value = {("ready_to_slice", ""): 10.0, ("slice_to_mesh", ""): -3.0,
             ("mesh_debounce", ""): 100.0, ("slice_to_push", "n1"): 99.0,
             ("push_to_eds", "n1"): 2.0, ("eds_to_lb", "n1"): 1.0,
             ("lb_to_picker", "n1"): 4.0, ("eds_to_mesh_traffic", "n1"): 8.0}
    steps = chain_steps(value, "add", MESH, "n1")
    assert [s.end_event for s in steps] == list(chain_events("add", MESH)[1:])
    width = {s.end_event: s.width_ms for s in steps}
    assert width[Ev.MESH_SLICE_SEEN] == -3.0          # istiod before the harness's watch
    assert width[Ev.EDS_SENT] == pytest.approx(2.0)   # 99 - (-3 + 100): push → EDS sent
    assert width[Ev.MESH_FIRST] == pytest.approx(3.0)  # 8 - 1 - 4: picker → first RPC
    assert steps[-1].at_ms + steps[-1].width_ms == pytest.approx(10 + 99 + 2 + 8)
    assert chain_steps({("ready_to_slice", ""): 10.0}, "add", MESH, "n1")[-1].end_event \
        == Ev.SLICE_READY  # stops where no hop dates the next event


def test_waterfall_draws_both_chains_only_with_the_mesh(mesh_run: Path, tmp_path: Path) -> None:
    hops = load_run(mesh_run).hops
    fig = waterfall_figure(hops)
    ticks = {t.get_text() for ax in fig.axes for t in ax.get_yticklabels()}
    assert {"node-0 · kube-proxy", "node-0 · mesh", "node-1 · mesh"} <= ticks
    titles = " ".join(ax.get_title() for ax in fig.axes)
    assert "add" in titles and "remove" in titles
    plain = waterfall_figure(load_run(make_run(tmp_path / "plain", trials=12, nodes=2)).hops)
    assert not any("mesh" in t.get_text() for ax in plain.axes for t in ax.get_yticklabels())
    empty = paths_waterfall_figure(hops.iloc[0:0])
    assert any("no trials with both paths" in t.get_text() for ax in empty.axes
               for t in ax.texts)


def test_report_has_a_mesh_section_only_with_mesh_rows(mesh_run: Path, tmp_path: Path) -> None:
    plain = make_run(tmp_path / "plain", trials=24, nodes=2)
    assert not has_mesh(load_run(plain).hops) and has_mesh(load_run(mesh_run).hops)
    without = write_report(plain, tmp_path / "out_plain", settings=FAST)
    page = without["html"].read_text(encoding="utf-8")
    assert "Mesh path" not in page and "<section id=mesh>" not in page
    assert set(without) == {s.name for s in FIGURES} | set(CSV_FILES) | {"html"}
    assert page.count("data:image/png;base64,") == len(FIGURES)

    with_mesh = write_report(mesh_run, tmp_path / "out_mesh", settings=FAST)
    page = with_mesh["html"].read_text(encoding="utf-8")
    assert "<h2>Mesh path</h2>" in page
    assert page.count("data:image/png;base64,") == len(FIGURES) + len(MESH_FIGURES)
    for spec in MESH_FIGURES:
        assert with_mesh[spec.name].stat().st_size > 15_000
    table = pd.read_csv(with_mesh[MESH_CSV[0]])
    assert set(table["direction"]) == {"add", "remove"}
    assert (table["ratio_lo"] <= table["ratio"]).all()
    assert (table["ratio"] <= table["ratio_hi"]).all()
    section = page[page.index("<h2>Mesh path</h2>"):]
    first = table.iloc[0]
    assert f"{first['ratio']:.2f} [{first['ratio_lo']:.2f}, {first['ratio_hi']:.2f}]" in section


def test_mesh_headline_credits_istiods_debounce(mesh_run: Path) -> None:
    data = load_run(mesh_run)
    tables = summary_tables(data.hops, FAST)
    answers = [d for m in headline(data, tables, MESH) for d in m.directions]
    assert {d.direction for d in answers} == {"add", "remove"}
    for d in answers:
        assert d.hop == MESH_END_TO_END[d.direction]
        assert d.dominant is not None and d.dominant.hop in ("mesh_debounce", "slice_to_push")
        assert "PILOT_DEBOUNCE_AFTER" in d.why
    kube = [d for m in headline(data, tables) for d in m.directions]
    assert all(not d.hop.startswith("ready_to_mesh") for d in kube)
