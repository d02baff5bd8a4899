"""run.json's provenance is one type (bench.results.provenance): what the runner writes
reads back the same, and a run.json of an older hopbench reads through it too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.load import load_run
from bench.results.point import Point
from bench.results.provenance import Provenance, provider_facts
from bench.results.reader import read_run
from bench.results.store import RunStore, read_provenance

SAMPLE = Path(__file__).resolve().parents[2] / "results" / "sample"

PROV = Provenance(
    run_id="abc123def456", created_at="2026-12-03T12:00:00+00:00", harness_version="0.1.0",
    git_commit="deadbeef", host_kernel="6.1.0", proxy_modes=("iptables", "nftables"),
    scenarios=("scale-up", "delete"), scenario_config={"trials": 3, "parallel": 1},
    points=(Point(0, 2, 0.0), Point(1000, 2, 5.0)),
    facts={"provider": "local", "kubernetes_version": "v1.35.4", "node_count": 2,
           "cluster": "sweep1", "nodes": ["n1", "n2"]})


def test_written_then_read_is_the_same_record(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run", PROV.to_meta())
    # results the run adds under the same keys must not leak into the record
    store.update_meta({"modes": {"iptables": {"trials": 3}},
                       "points": {**store.meta["points"],
                                  "bg1000x2c5": {**store.meta["points"]["bg1000x2c5"],
                                                 "fill": {"created": 2000}}}})
    store.finish({"finished_ok": True})
    assert read_provenance(tmp_path / "run") == PROV
    assert read_run(tmp_path / "run").provenance == PROV
    assert PROV.provider == "local" and PROV.node_count == 2
    assert PROV.kubernetes_version == "v1.35.4"
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert list(meta["points"]) == ["bg0x2c0", "bg1000x2c5"]  # the sweep, in run order
    assert meta["points"]["bg1000x2c5"]["churn_per_s"] == 5.0
    assert meta["provider"] == "local"  # provider facts stay flat, as before


def test_an_old_run_json_reads() -> None:
    old = read_provenance(SAMPLE)
    assert old.points == ()  # written before sweeps: its rows carry the point ""
    assert old.proxy_modes == ("iptables", "nftables")
    assert old.scenarios == ("scale-up", "delete")
    assert old.provider == "local" and old.node_count == 2
    assert old.scenario_config["trials"] > 0
    assert "modes" not in old.facts and "status" not in old.facts and "sli" not in old.facts
    assert "kube_proxy_args" in old.facts
    assert load_run(SAMPLE).runs.iloc[0]["proxy_modes"] == "iptables,nftables"


def test_older_list_shapes_read() -> None:
    p = Provenance.from_meta({"scenarios": [{"name": "scale", "params": {}}],
                              "proxy_modes": "iptables"})
    assert p.scenarios == ("scale",) and p.proxy_modes == ("iptables",)
    assert Provenance.from_meta({}) == Provenance()


def test_provider_may_not_overwrite_the_runs_own_keys() -> None:
    with pytest.raises(ValueError, match="run_id"):
        Provenance(run_id="x", facts={"run_id": "y"}).to_meta()
    # what providers really say (local and kubeconfig both name the harness version)
    facts = provider_facts({"provider": "local", "harness_version": "0.1.0", "nodes": []})
    rec = Provenance(run_id="x", harness_version="0.1.0", facts=facts)
    assert Provenance.from_meta(rec.to_meta()) == rec
