"""A run killed with SIGKILL: every reader sees each trial that ended before the kill.

The run directories here are left the way a SIGKILL leaves them: run.json still says
"running", the journal holds complete trials (and a torn trial in flight), and the parquet
snapshots are empty (killed before the first 60 s flush), absent, or a flush behind.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from test_results import trial_events
from typer.testing import CliRunner, Result

from analysis.load import load_run
from analysis.report import write_report
from analysis.stats import Settings
from bench.cli import app
from bench.results.reader import read_run
from bench.results.schema import ALL_NODES, Ev
from bench.results.store import EVENTS, HOPS, RunStore, load_events, load_hops, load_meta
from bench.timeline import assemble

COMPLETE = {1, 2, 3}  # trials with their trial_end in the journal; 4 was in flight


def _empty_snapshots(run: Path) -> None:
    """Killed before the first flush: the parquet files RunStore.create wrote, empty."""


def _no_snapshots(run: Path) -> None:
    (run / EVENTS).unlink()
    (run / HOPS).unlink()


def killed_run(path: Path, snapshots: Callable[[Path], None] = _empty_snapshots,
               flushed: int = 0) -> Path:
    """A run dir as SIGKILL leaves it; the first `flushed` trials made it into the parquet."""
    store = RunStore.create(path, {"run_id": "r1", "provider": "local",
                                  "proxy_modes": ["nftables"]})
    for trial in sorted(COMPLETE):
        store.append_events(trial_events(trial))
        if trial == flushed:
            store.flush()
    store.append_events(trial_events(4, done=False))  # the trial the kill interrupted
    store.close()  # journal and lock released, nothing flushed, run.json untouched
    snapshots(path)
    assert load_meta(path)["status"] == "running"
    return path


SHAPES = {"empty": (_empty_snapshots, 0), "absent": (_no_snapshots, 0),
          "stale": (_empty_snapshots, 1)}


@pytest.fixture(params=sorted(SHAPES))
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    snapshots, flushed = SHAPES[request.param]
    return killed_run(tmp_path / "r", snapshots, flushed)


def said(result: Result) -> str:
    """stderr of a CLI call, its line wrapping undone."""
    return " ".join(result.stderr.split())


def _trials(df: pd.DataFrame) -> set[int]:
    return set(df["trial"].tolist())


def test_read_run_merges_the_journal(run: Path) -> None:
    got = read_run(run)
    assert got.status == "running" and got.trials == len(COMPLETE)
    assert _trials(got.events) == COMPLETE  # trial 4 has no trial_end: left out
    assert got.from_journal == len(COMPLETE) - (1 if (run / EVENTS).is_file()
                                                 and len(load_events(run)) else 0)
    expected = assemble(pd.DataFrame([e for t in sorted(COMPLETE) for e in trial_events(t)]))
    pd.testing.assert_frame_equal(got.hops, expected)


def test_analysis_sees_the_trials(run: Path) -> None:
    data = load_run(run)
    assert _trials(data.hops) == COMPLETE and _trials(data.events) == COMPLETE
    assert data.runs["n_trials"].tolist() == [len(COMPLETE)]
    assert data.runs["status"].tolist() == ["running"]


def test_show_says_the_run_did_not_finish_and_shows_its_trials(run: Path) -> None:
    result = CliRunner().invoke(app, ["show", str(run)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "this run did not finish: killed" in said(result)
    assert f"it holds {len(COMPLETE)} complete trial(s)" in said(result)
    assert f"hopbench run --resume {run}" in said(result)
    line = next(ln for ln in result.stdout.splitlines() if "ready_to_traffic" in ln)
    cells = [c for c in line.split() if c not in ("│", "┃")]
    assert cells[1:4] == ["node", str(len(COMPLETE)), "0"]  # over, n, censored


def test_reassemble_catches_the_parquet_up_with_the_journal(run: Path) -> None:
    result = CliRunner().invoke(app, ["reassemble", str(run)])
    assert result.exit_code == 0, result.output
    assert _trials(load_hops(run)) == COMPLETE and _trials(load_events(run)) == COMPLETE
    assert read_run(run).from_journal == 0
    RunStore.open(run).finish()  # and the run still resumes: the journal is untouched
    assert _trials(load_hops(run)) == COMPLETE


def test_report_counts_the_trials(run: Path, tmp_path: Path) -> None:
    write_report(run, tmp_path / "report", settings=Settings(n_boot=50))
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    e2e = summary[(summary["hop"] == "ready_to_traffic") & (summary["scope"] == "all-nodes")]
    assert e2e["n"].tolist() == [len(COMPLETE)]


def test_a_finished_run_reads_as_before(tmp_path: Path) -> None:
    run = killed_run(tmp_path / "r")
    RunStore.open(run).finish()
    got = read_run(run)
    assert got.status == "finished" and got.from_journal == 0
    pd.testing.assert_frame_equal(got.hops, load_hops(run))
    pd.testing.assert_frame_equal(got.events, load_events(run))
    show = CliRunner().invoke(app, ["show", str(run)])
    assert show.exit_code == 0 and "did not finish" not in said(show)


def test_a_live_run_is_not_called_killed(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "r", {"provider": "local"})
    store.append_events(trial_events(1))
    try:
        show = CliRunner().invoke(app, ["show", str(tmp_path / "r")])
        assert show.exit_code == 0, show.output
        assert "still running (pid" in said(show) and "1 complete trial(s)" in said(show)
    finally:
        store.finish()


def test_hops_of_a_trial_the_hops_snapshot_lacks_are_assembled(tmp_path: Path) -> None:
    run = killed_run(tmp_path / "r", flushed=3)
    hops = load_hops(run)
    (run / HOPS).write_bytes(b"")
    hops[hops["trial"] == 1].to_parquet(run / HOPS)  # a flush that raced: hops behind events
    got = read_run(run).hops
    assert _trials(got) == COMPLETE
    e2e = got[(got["hop"] == "ready_to_traffic") & (got["node"] == ALL_NODES)]
    assert not any(math.isnan(x) for x in e2e["latency_ms"])
    assert Ev.TRIAL_END not in set(got["end_event"])
