"""The PILOT_DEBOUNCE_AFTER sweep (analysis.debounce): the debounce read from each run's
provenance, the table's medians from hand-written per-node rows, the figure and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_synth import add_mesh, hops_frame, make_run

from analysis.debounce import (
    COLUMNS,
    ISTIO_DEFAULT_MS,
    debounce_figure,
    debounce_setting,
    debounce_table,
    go_duration_ms,
    main,
)
from analysis.load import RunData
from analysis.quantiles import quantiles, sample
from analysis.stats import Settings
from bench.results.schema import ALL_NODES, CLUSTER

FAST = Settings(n_boot=200)


def _meta(run_id: str, value: str | None) -> dict[str, object]:
    env = {} if value is None else {"istiod": {"PILOT_DEBOUNCE_AFTER": value}}
    return {"run_id": run_id, "component_env": env}


def _run(run_id: str, value: str | None, add_push: list[float], add_e2e: list[float],
         remove_push: list[float]) -> RunData:
    """Two nodes per trial: node n1 gets the value, n2 the value + 1; the "*" row a huge
    value and a cluster-level row of another hop, which must both be left out."""
    rows = []
    for direction, scenario, hop, values in (
            ("add", "scale-up", "slice_to_push", add_push),
            ("add", "scale-up", "ready_to_mesh_traffic", add_e2e),
            ("remove", "delete", "slice_to_push", remove_push)):
        for trial, v in enumerate(values):
            common = {"run_id": run_id, "trial": trial, "direction": direction,
                      "scenario": scenario, "hop": hop}
            rows += [{**common, "node": "n1", "latency_ms": v},
                     {**common, "node": "n2", "latency_ms": v + 1.0},
                     {**common, "node": ALL_NODES, "latency_ms": 1e6}]
            rows.append({**common, "hop": "mesh_debounce", "node": CLUSTER, "latency_ms": 5e5})
    hops = hops_frame(rows)
    return RunData(hops=hops, events=pd.DataFrame(), runs=pd.DataFrame(),
                   meta={run_id: _meta(run_id, value)})


@pytest.mark.parametrize(("text", "ms"), [("0", 0.0), ("0s", 0.0), ("0ms", 0.0),
                                          ("100ms", 100.0), ("1.5s", 1500.0),
                                          ("1m30s", 90_000.0), ("250us", 0.25),
                                          ("500µs", 0.5)])
def test_go_duration(text: str, ms: float) -> None:
    assert go_duration_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["", "100", "ms", "1x", "1 s", "fast"])
def test_go_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="PILOT_DEBOUNCE_AFTER"):
        go_duration_ms(text)


def test_debounce_from_provenance() -> None:
    assert debounce_setting(_meta("a", "500ms")) == (500.0, "500ms")
    assert debounce_setting(_meta("a", "0s")) == (0.0, "0s")
    assert debounce_setting(_meta("a", None)) == (ISTIO_DEFAULT_MS, "")  # istio's default
    assert debounce_setting({"component_env": {"kube-proxy": {"X": "1"}}})[0] == ISTIO_DEFAULT_MS


def test_table_medians_per_debounce() -> None:
    slow = _run("slow", "500ms", [500.0, 510.0, 520.0], [600.0, 610.0, 620.0],
                [505.0, 515.0, 525.0])
    fast = _run("fast", "0ms", [3.0, 1.0, 2.0], [90.0, 80.0, 70.0], [4.0, 6.0, 5.0])
    dflt = _run("dflt", None, [100.0, 101.0, 102.0], [200.0, 201.0, 202.0],
                [103.0, 104.0, 105.0])
    table = debounce_table([slow, fast, dflt], FAST)
    assert list(table.columns) == COLUMNS
    assert len(table) == 3 * 3  # 3 debounces x (2 add hops + 1 remove hop present)
    got = {(r.debounce_ms, r.direction, r.hop): r for r in table.itertuples()}
    # per-node rows pooled (n1 and n2: 6 rows), never the "*" row nor another hop
    r = got[(0.0, "add", "slice_to_push")]
    assert (r.n, r.n_trials, r.n_censored) == (6, 3, 0)
    assert r.debounce == "0ms" and r.run_ids == "fast"
    # the project's quantile rule: inverted CDF of [1, 2, 2, 3, 3, 4] -> 2
    assert r.median_ms == 2.0
    assert r.median_ms == quantiles(sample([1, 2, 2, 3, 3, 4]), [0.5])[0]
    assert r.median_lo_ms <= r.median_ms <= r.median_hi_ms
    assert got[(500.0, "add", "slice_to_push")].median_ms == 510.0
    assert got[(500.0, "add", "ready_to_mesh_traffic")].median_ms == 610.0
    assert got[(0.0, "add", "ready_to_mesh_traffic")].median_ms == 80.0
    assert got[(0.0, "remove", "slice_to_push")].median_ms == 5.0
    assert got[(ISTIO_DEFAULT_MS, "remove", "slice_to_push")].median_ms == 104.0
    assert got[(ISTIO_DEFAULT_MS, "add", "slice_to_push")].debounce == ""
    # sorted: add before remove, slice_to_push before the end to end, debounce ascending
    assert list(table["direction"]) == ["add"] * 6 + ["remove"] * 3
    assert list(table["debounce_ms"][:3]) == [0.0, 100.0, 500.0]
    assert set(table["hop"][:3]) == {"slice_to_push"}


def test_same_debounce_pooled_and_censored() -> None:
    a = _run("a", "100ms", [10.0, 20.0], [1.0, 1.0], [1.0, 1.0])
    b = _run("b", "0.1s", [30.0, 40.0], [1.0, 1.0], [1.0, 1.0])
    table = debounce_table([a, b], FAST)
    r = table.loc[(table["direction"] == "add") & (table["hop"] == "slice_to_push")].iloc[0]
    assert (r["debounce_ms"], r["n"], r["n_trials"]) == (100.0, 8, 4)
    assert r["debounce"] == "0.1s / 100ms" and r["run_ids"] == "a b"
    censored = _run("c", "1ms", [np.nan, np.nan, np.nan], [1.0] * 3, [1.0] * 3)
    row = debounce_table([censored], FAST).iloc[0]
    assert np.isposinf(row["median_ms"]) and row["median_censored"]


def test_figure_and_cli(tmp_path: Path) -> None:
    runs = []
    for i, value in enumerate(["0ms", "500ms"]):
        run = make_run(tmp_path / f"d{i}", trials=16, nodes=2, modes=("iptables",),
                       censor_frac=0.0, seed=i, extra_meta={
                           "component_env": {"istiod": {"PILOT_DEBOUNCE_AFTER": value}}})
        runs.append(str(add_mesh(run, seed=i)))
    table = debounce_table([], FAST)
    assert table.empty and list(table.columns) == COLUMNS
    out = tmp_path / "out"
    assert main([*runs, "--out", str(out), "--boot", "50"]) == 0
    written = pd.read_csv(out / "debounce.csv")
    assert set(written["debounce_ms"]) == {0.0, 500.0}
    assert set(zip(written["direction"], written["hop"])) == {
        ("add", "slice_to_push"), ("add", "ready_to_mesh_traffic"),
        ("remove", "slice_to_push"), ("remove", "unready_to_lb_gone")}
    assert (written["n"] == 16).all()  # 8 trials of each direction x 2 nodes
    assert (out / "debounce.png").stat().st_size > 1000
    fig = debounce_figure(written)
    assert [ax.get_title().split(" ")[0] for ax in fig.axes] == ["add", "remove"]
