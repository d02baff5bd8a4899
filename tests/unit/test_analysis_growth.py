"""Growth over the number of background Services: the table, the exponents, the report section.

Inputs are synthetic sweeps whose true growth exponents are known (growth_synth), and
hand-written samples for the fit and the censoring rule.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_synth import hops_frame, latencies, make_run
from growth_synth import EXPONENTS, GROWTH, RESTART_HOPS, make_sweep
from test_analysis_report import assert_real_picture

from analysis.growth import (
    METRICS,
    Cell,
    Growth,
    exponents,
    growth_table,
    is_sweep,
    metric,
    points_of,
)
from analysis.load import RunData, load_run
from analysis.plots import FIGURES
from analysis.plots_growth import GROWTH_FIGURES
from analysis.quantiles import bootstrap, histogram_sample, quantiles, sample
from analysis.report import CSV_FILES, write_report
from analysis.stats import Settings
from bench.results.point import Point

FAST = Settings(n_boot=300)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sweep(tmp_path_factory.mktemp("sweep") / "sweep",  # type: ignore[no-any-return]
                      censor_restart_at=10000)


@pytest.fixture(scope="module")
def growth(sweep_dir: Path) -> Growth:
    return growth_table(load_run(sweep_dir), FAST)


def _exponent(growth: Growth, name: str, mode: str, stat: str) -> pd.Series:
    ex = growth.exponents
    hit = ex.loc[(ex["metric"] == name) & (ex["proxy_mode"] == mode) & (ex["stat"] == stat)]
    assert len(hit) == 1, (name, mode, stat)
    return hit.iloc[0]


def _cells(truth: float, seed: int, services: tuple[int, ...] = (1000, 3000, 10000, 30000),
           trials: int = 200) -> list[Cell]:
    """p50 cells of metric = 5 * N**truth * lognormal noise, trials per point."""
    rng = np.random.default_rng(seed)
    out = []
    for n in services:
        s = sample(5.0 * n ** truth * rng.lognormal(0.0, 0.4, trials))
        reps = bootstrap(s, [0.5], 1000, rng)[:, 0]
        out.append(Cell("iptables", Point(n), "m", "p50", float(quantiles(s, [0.5])[0]),
                        reps, s.n, 0, "trials"))
    return out


@pytest.mark.parametrize("truth", [0.0, 0.5, 1.0])
def test_fit_of_a_known_power_law_holds_the_truth_in_its_interval(truth: float) -> None:
    hits = 0
    for seed in range(20):
        row = exponents(_cells(truth, seed), 0.95).iloc[0]
        assert row["lo"] <= row["exponent"] <= row["hi"]
        assert abs(row["exponent"] - truth) < 0.1
        hits += row["lo"] <= truth <= row["hi"]
    assert hits >= 16  # a 95 % interval: 19 of 20 expected, 16 leaves room for chance


def test_one_number_per_point_gets_the_exact_slope_and_no_interval() -> None:
    cells = [Cell("nftables", Point(n), "rules", "value", 7.0 * n ** 1.0, None, 2, 0, "run.json")
             for n in (0, 500, 5000, 50000)]
    row = exponents(cells, 0.95).iloc[0]
    assert row["exponent"] == pytest.approx(1.0)
    assert np.isnan(row["lo"]) and row["n_points"] == 3  # N = 0 is left out of the fit
    assert "no interval" in row["note"]


def test_sweep_recovers_the_exponents_it_was_built_with(growth: Growth) -> None:
    for mode, truth in GROWTH.items():
        for name in ("ready_to_first_answer", "slice_to_sync"):
            row = _exponent(growth, name, mode, "p50")
            assert row["lo"] <= truth <= row["hi"], (name, mode, row.to_dict())
    for mode in GROWTH:
        program = _exponent(growth, "program_s", mode, "value")
        assert program["exponent"] == pytest.approx(EXPONENTS["program_s"][mode][1], abs=0.03)
        full = _exponent(growth, "sync_full", mode, "p50")
        assert full["lo"] - 0.03 <= EXPONENTS["sync_full"][mode][1] <= full["hi"] + 0.03
        connect = _exponent(growth, "connect", mode, "p50")
        assert connect["exponent"] == pytest.approx(EXPONENTS["connect"][mode][1], abs=0.05)
        assert _exponent(growth, "rules", mode, "value")["exponent"] == pytest.approx(1.0,
                                                                                       abs=0.01)


def test_table_has_every_metric_at_every_point(growth: Growth, sweep_dir: Path) -> None:
    table = growth.table
    assert sorted(table["services"].unique()) == [0, 1000, 5000, 10000]
    want = {m.name for m in METRICS} - {"sync_all"}  # the fixture has full and partial
    want |= {f"restart:{h}" for h in RESTART_HOPS}
    assert set(table["metric"]) == want
    # program_s only where there is something to program
    assert set(table.loc[table["metric"] == "program_s", "services"]) == {1000, 5000, 10000}
    rules = table.loc[(table["metric"] == "rules") & (table["services"] == 5000), "estimate"]
    assert set(rules) == {8 * 5000 + 40}
    finite = table.loc[table["source"] != "run.json"]
    ok = finite["censored"] | ((finite["lo"] <= finite["estimate"])
                               & (finite["estimate"] <= finite["hi"]))
    assert ok.all()


def test_censored_restart_point_is_flagged_and_stops_the_fit(growth: Growth) -> None:
    t = growth.table
    at = t.loc[(t["metric"] == "restart:started_to_sync") & (t["services"] == 10000)]
    assert at["censored"].all() and np.isposinf(at["estimate"]).all()
    assert (at["n_censored"] == 8).all()
    row = _exponent(growth, "restart:started_to_sync", "iptables", "p50")
    assert np.isnan(row["exponent"]) and row["note"] == "censored at N=10000"
    flat = _exponent(growth, "restart:kill_to_started", "iptables", "p50")  # never censored
    assert flat["lo"] <= 0.0 <= flat["hi"]


def test_quantile_counts_censored_trials_as_beyond_every_value() -> None:
    """3 of 10 trials censored: the median is the 5th value of all 10, not of the 7 left."""
    values: list[float | None] = [10, 20, 30, 40, 50, 60, 70, None, None, None]
    rows = latencies(values, direction="add", hop="ready_to_traffic", node="*")
    hops = hops_frame(rows).assign(point="bg1000x2c0")
    more = hops_frame(latencies([1.0] * 10, direction="add", hop="ready_to_traffic",
                                node="*")).assign(point="bg0x2c0")
    data = RunData(pd.concat([hops, more], ignore_index=True), pd.DataFrame(), pd.DataFrame(),
                   {})
    t = growth_table(data, FAST).table
    at = t.loc[(t["metric"] == "ready_to_first_answer") & (t["services"] == 1000)]
    by_stat = at.set_index("stat")
    assert by_stat.loc["p50", "estimate"] == 50.0  # the uncensored 7 alone would give 40
    assert by_stat.loc["p99", "censored"] and np.isposinf(by_stat.loc["p99", "estimate"])
    assert (at["n_censored"] == 3).all()


def test_histogram_quantile_is_a_bucket_bound_and_overflow_is_censored() -> None:
    s = histogram_sample([1.0, 2.0, 4.0, np.inf], [5, 3, 1, 1])
    assert s.n == 10 and s.n_censored == 1
    assert list(quantiles(s, [0.5, 0.8, 0.9, 0.95])) == [1.0, 2.0, 4.0, np.inf]
    with pytest.raises(ValueError, match="one non-negative count per bound"):
        histogram_sample([1.0, 2.0], [1])


def test_single_point_run_is_no_sweep_and_its_report_is_unchanged(tmp_path: Path) -> None:
    run = make_run(tmp_path / "one", trials=40, modes=("iptables",))
    data = load_run(run)
    assert points_of(data) == [Point()] and not is_sweep(data)
    paths = write_report(run, tmp_path / "out", settings=Settings(n_boot=50))
    assert set(paths) == {s.name for s in FIGURES} | set(CSV_FILES) | {"html"}
    page = paths["html"].read_text(encoding="utf-8")
    assert "id=growth" not in page and "growth exponent" not in page
    assert not list((tmp_path / "out").glob("growth*"))


def test_sweep_report_draws_every_growth_figure_and_names_each_metric(
        sweep_dir: Path, growth: Growth, tmp_path: Path) -> None:
    paths = write_report(sweep_dir, tmp_path / "out", settings=Settings(n_boot=100))
    for spec in GROWTH_FIGURES:
        assert_real_picture(paths[spec.name])
    page = paths["html"].read_text(encoding="utf-8")
    assert "id=growth" in page and "Fitted growth exponents" in page
    for name in set(growth.table["metric"]):
        assert metric(name).label in page, name
    assert page.count("data:image/png;base64,") == len(FIGURES) + len(GROWTH_FIGURES)
    assert not re.findall(r'(?:src|href)="(?!data:)', page)
    ex = pd.read_csv(paths["growth_exponents_csv"])
    assert {"exponent", "lo", "hi", "note"} <= set(ex.columns)
    assert len(pd.read_csv(paths["growth_csv"])) == len(growth.table)


@pytest.mark.parametrize(("sources", "says"), [
    (["histogram", "histogram"], "beyond the histogram's last bucket"),
    (["trials", "histogram"], "beyond the trial timeout"),
])
def test_censored_marker_says_what_it_was_censored_by(sources: list[str], says: str) -> None:
    import matplotlib.pyplot as plt

    from analysis import plots_growth

    fig, ax = plt.subplots()
    rows = pd.DataFrame({"censored": [True, False], "source": sources})
    plots_growth._censored_note(ax, rows)
    assert [t.get_text() for t in ax.texts] == [f"△ censored: {says}"]
    plt.close(fig)
