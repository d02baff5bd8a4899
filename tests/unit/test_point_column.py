"""The `point` column (schema 2): it separates trials of different sweep points everywhere a
trial is named (assembly, the store's completeness key, the reader), and a run written
before it (schema 1) still reads, as the point "" (no background)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from test_results import trial_events
from typer.testing import CliRunner

from analysis.load import load_run
from bench.cli import app
from bench.results.reader import read_run
from bench.results.store import JOURNAL, RunStore
from bench.timeline import assemble, events_frame

A, B = "bg0x2c0", "bg500x2c0"


def at(point: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "point": point} for r in rows]


def test_same_trial_number_at_two_points_is_two_trials(tmp_path: Path) -> None:
    rows = at(A, trial_events(1)) + at(B, trial_events(1))
    hops = assemble(events_frame(rows))
    e2e = hops[hops["hop"] == "ready_to_traffic"]
    assert sorted(e2e["point"].unique()) == [A, B]
    assert len(e2e[e2e["node"] == "a"]) == 2  # one per point, not one merged trial
    store = RunStore.create(tmp_path / "run", {"provider": "test"})
    store.append_events(at(A, trial_events(1)))
    assert store.complete_trials == {(A, "nftables", "scale-up", 1)}  # B's trial 1 still to run
    store.append_events(at(B, trial_events(1)))
    assert (B, "nftables", "scale-up", 1) in store.complete_trials
    store.finish()
    run = read_run(tmp_path / "run")
    assert run.trials == 2 and sorted(run.hops["point"].unique()) == [A, B]
    assert sorted(load_run(tmp_path / "run").hops["point"].unique()) == [A, B]
    shown = CliRunner().invoke(app, ["show", str(tmp_path / "run")], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert f"@ {A}" in shown.output and f"@ {B}" in shown.output
    assert shown.output.index(f"@ {A}") < shown.output.index(f"@ {B}")  # ascending N
    narrow = CliRunner().invoke(app, ["show", str(tmp_path / "run")], env={"COLUMNS": "80"})
    assert narrow.exit_code == 0 and "…" not in narrow.output, narrow.output  # nothing cut


def schema1_run(path: Path) -> Path:
    """A killed run as schema 1 wrote it: no `point` anywhere (parquet nor journal)."""
    store = RunStore.create(path, {"provider": "test", "run_id": "old"})
    store.append_events(trial_events(1) + trial_events(2))
    store.flush()
    store.append_events(trial_events(3))
    store.close()  # killed: run.json says "running"
    for name in ("events.parquet", "hops.parquet"):
        df = pd.read_parquet(path / name).drop(columns=["point"])
        df.to_parquet(path / name, index=False)
    lines = [json.loads(x) for x in (path / JOURNAL).read_text().splitlines()]
    (path / JOURNAL).write_text("".join(
        json.dumps({k: v for k, v in r.items() if k != "point"}) + "\n" for r in lines))
    meta = json.loads((path / "run.json").read_text())
    (path / "run.json").write_text(json.dumps({**meta, "schema_version": 1}))
    return path


def test_a_schema_1_run_reads_as_no_background(tmp_path: Path) -> None:
    path = schema1_run(tmp_path / "old")
    run = read_run(path)
    assert run.trials == 3 and run.from_journal == 1  # trial 3 only in the journal
    assert set(run.events["point"]) == {""} and set(run.hops["point"]) == {""}
    data = load_run(path)
    assert set(data.hops["point"]) == {""} and data.meta["old"]["schema_version"] == 2
    result = CliRunner().invoke(app, ["show", str(path)])
    assert result.exit_code == 0, result.output
    assert "ready_to_traffic" in result.output
    result = CliRunner().invoke(app, ["reassemble", str(path)])
    assert result.exit_code == 0 and "of 3 trial(s)" in result.output, result.output
