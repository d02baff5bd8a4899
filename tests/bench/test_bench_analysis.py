"""Benchmark: load + statistics + every figure for 10,000 trials x 3 nodes (goal < 10 s).

10,000 trials split over three kube-proxy modes and both directions, three nodes each:
about 200,000 hop rows and 150,000 events, the scale of a long run. One round loads the
run directory, computes every summary table (1,000 bootstrap resamples per group) and
renders every figure of the report to PNG.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from analysis_synth import make_run

from analysis.load import load_run
from analysis.plots import FIGURES, render_all
from analysis.stats import Settings, summary_tables

TRIALS = 10_000
NODES = 3


@pytest.fixture(scope="module")
def big_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("bench") / "run", trials=TRIALS, nodes=NODES,  # type: ignore[no-any-return]
                    modes=("iptables", "nftables", "ipvs"), censor_frac=0.01)


def test_bench_load_stats_plots(benchmark: pytest.FixtureRequest, big_run: Path,
                                tmp_path: Path) -> None:
    def once() -> int:
        data = load_run(big_run)
        tables = summary_tables(data.hops, Settings(n_boot=1000))
        paths = render_all(data, tmp_path / "figures", tables)
        return len(data.hops) + len(tables.summary) + len(paths)

    result = benchmark.pedantic(once, rounds=3, iterations=1, warmup_rounds=0)  # type: ignore[attr-defined]
    assert result > 0
    assert len(list((tmp_path / "figures").glob("*.png"))) == len(FIGURES)
    benchmark.extra_info.update({"trials": TRIALS, "nodes": NODES, "goal_s": 10})  # type: ignore[attr-defined]
