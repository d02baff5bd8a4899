"""Loading run directories: tidy frames, merge refusal on provenance, schema migration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_synth import make_run

from analysis.errors import AnalysisError
from analysis.load import (
    DuplicateRun,
    ProvenanceMismatch,
    RunDirError,
    load_run,
    load_runs,
    run_dirs_from_env,
)
from analysis.migrations import MIGRATIONS, RawRun, SchemaError, migrate  # type: ignore[attr-defined]
from bench.results.schema import EVENT_COLUMNS, HOP_COLUMNS, SCHEMA_VERSION


def test_load_one_run_gives_schema_frames(tmp_path: Path) -> None:
    run = make_run(tmp_path / "a", trials=12)
    data = load_run(run)
    assert list(data.hops.columns) == [*HOP_COLUMNS, "scope"]
    assert list(data.events.columns) == EVENT_COLUMNS
    assert data.hops["latency_ms"].dtype == np.float64
    assert data.hops["censored"].dtype == bool
    assert set(data.hops["scope"]) == {"cluster", "node", "all-nodes"}
    row = data.runs.iloc[0]
    assert (row["run_id"], row["provider"], row["node_count"], row["n_trials"]) == (
        "a", "local", 3, 12)
    assert row["proxy_modes"] == "iptables,nftables" and row["scenarios"] == "scale"
    assert "sli" in data.meta["a"]


def test_load_many_pools_rows(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", trials=10, modes=("iptables",))
    b = make_run(tmp_path / "b", trials=10, modes=("nftables",), seed=1)
    data = load_runs([a, b])
    assert set(data.hops["run_id"]) == {"a", "b"}
    assert len(data.hops) == len(load_run(a).hops) + len(load_run(b).hops)
    assert list(data.runs["run_id"]) == ["a", "b"]


@pytest.mark.parametrize(("field", "kwargs", "shown"), [
    ("kubernetes_version", {"kubernetes_version": "v1.34.2"}, "v1.34.2"),
    ("provider", {"provider": "kind"}, "kind"),
    ("node_count", {"nodes": 4}, "4"),
])
def test_merge_refused_when_key_provenance_differs(tmp_path: Path, field: str,
                                                   kwargs: dict[str, object],
                                                   shown: str) -> None:
    a = make_run(tmp_path / "a", trials=6)
    b = make_run(tmp_path / "b", trials=6, **kwargs)
    with pytest.raises(ProvenanceMismatch) as err:
        load_runs([a, b])
    message = str(err.value)
    assert field in message and shown in message and "(b)" in message
    assert "allow_mixed=True" in message
    assert isinstance(err.value, AnalysisError) and isinstance(err.value, ValueError)
    mixed = load_runs([a, b], allow_mixed=True)
    assert len(mixed.runs) == 2


def test_merge_error_names_every_difference(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", trials=6)
    b = make_run(tmp_path / "b", trials=6, provider="kind", kubernetes_version="v1.33.0")
    with pytest.raises(ProvenanceMismatch, match=r"kubernetes_version.*provider"):
        load_runs([a, b])


def test_same_run_twice_is_refused(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", trials=6)
    with pytest.raises(DuplicateRun, match="run a given more than once"):
        load_runs([a, a])


def test_schema_0_migrates_seconds_to_milliseconds(tmp_path: Path) -> None:
    new = load_run(make_run(tmp_path / "v1", trials=8, seed=3))
    old_dir = make_run(tmp_path / "v0", trials=8, seed=3, schema_version=0, run_id="v1")
    assert "latency_s" in pd.read_parquet(old_dir / "hops.parquet").columns
    old = load_run(old_dir)
    assert "latency_s" not in old.hops.columns
    np.testing.assert_allclose(old.hops["latency_ms"], new.hops["latency_ms"], rtol=1e-12)
    assert old.runs.iloc[0]["schema_version"] == 0  # as it was on disk
    assert old.meta["v1"]["schema_version"] == SCHEMA_VERSION


def test_migration_chain_is_complete_and_step_checked() -> None:
    assert sorted(MIGRATIONS) == list(range(SCHEMA_VERSION))
    raw = RawRun({"schema_version": 0}, pd.DataFrame({"latency_s": [0.25]}), pd.DataFrame())
    assert migrate(raw).hops["latency_ms"].tolist() == [250.0]
    assert migrate(RawRun({}, raw.hops, raw.events)).version == SCHEMA_VERSION  # unversioned=0


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    run = make_run(tmp_path / "a", trials=4)
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(SchemaError, match="newer than this hopbench reads"):
        load_run(run)


def test_not_a_run_dir(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match=r"no run\.json"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text("{")
    with pytest.raises(RunDirError, match="not valid JSON"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(RunDirError, match=r"no hops\.parquet"):
        load_run(tmp_path)
    with pytest.raises(RunDirError, match="no run directory"):
        load_runs([])


def test_missing_column_is_named(tmp_path: Path) -> None:
    run = make_run(tmp_path / "a", trials=4)
    hops = pd.read_parquet(run / "hops.parquet").drop(columns=["censor_reason"])
    hops.to_parquet(run / "hops.parquet")
    with pytest.raises(SchemaError, match="missing columns:? censor_reason"):
        load_run(run)


def test_events_are_optional(tmp_path: Path) -> None:
    run = make_run(tmp_path / "a", trials=4)
    (run / "events.parquet").unlink()
    data = load_run(run)
    assert data.events.empty and list(data.events.columns) == EVENT_COLUMNS


def test_select_narrows_rows(tmp_path: Path) -> None:
    data = load_run(make_run(tmp_path / "a", trials=12))
    add = data.select(direction="add", proxy_mode=["nftables"])
    assert set(add.hops["direction"]) == {"add"} and set(add.hops["proxy_mode"]) == {"nftables"}
    assert set(add.events["proxy_mode"]) == {"nftables"}


def test_run_dirs_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOPBENCH_RUN_DIR", f"{tmp_path / 'x'}:{tmp_path / 'y'}")
    assert run_dirs_from_env() == [tmp_path / "x", tmp_path / "y"]
    # a relative default is found from a subdirectory of the repository
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "results" / "sample").mkdir(parents=True)
    (tmp_path / "analysis" / "notebooks").mkdir(parents=True)
    monkeypatch.delenv("HOPBENCH_RUN_DIR")
    monkeypatch.chdir(tmp_path / "analysis" / "notebooks")
    assert run_dirs_from_env() == [tmp_path / "results" / "sample"]
