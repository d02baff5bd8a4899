"""The synthetic run generator must shape its data exactly like the harness does.

Its hops are compared with `bench.timeline.assemble` of its own events, so the analysis
tests exercise the real table shape (censor reasons, all-nodes rows, black-hole zeros).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from analysis_synth import make_run

from bench.results.schema import EVENT_COLUMNS, HOP_COLUMNS, SCHEMA_VERSION
from bench.timeline import assemble

KEY = ["run_id", "trial", "direction", "node", "hop"]


def test_synthetic_hops_equal_the_harness_assembly(tmp_path: Path) -> None:
    run = make_run(tmp_path / "r", trials=60, censor_frac=0.1, negative_frac=0.1,
                   modes=("iptables", "ipvs"), scenarios=("scale", "kill"))
    events = pd.read_parquet(run / "events.parquet")
    ours = pd.read_parquet(run / "hops.parquet")
    assert list(events.columns) == EVENT_COLUMNS and list(ours.columns) == HOP_COLUMNS
    theirs = assemble(events)
    a = theirs.sort_values(KEY).reset_index(drop=True)
    b = ours.sort_values(KEY).reset_index(drop=True)
    assert len(a) == len(b)
    for col in HOP_COLUMNS:
        if a[col].dtype.kind == "f":
            np.testing.assert_allclose(b[col].to_numpy(float), a[col].to_numpy(float),
                                       atol=1e-6, err_msg=col)
        else:
            assert (a[col].astype(str) == b[col].astype(str)).all(), col
    assert ours["censored"].any() and (ours["flag"] == "negative").any()
    assert ((ours["hop"] == "blackhole") & (ours["latency_ms"] == 0)).any()


def test_run_json_carries_the_provenance_keys(tmp_path: Path) -> None:
    meta = json.loads((make_run(tmp_path / "r", trials=6) / "run.json").read_text())
    for key in ("schema_version", "provider", "kubernetes_version", "node_count",
                "proxy_modes", "scenarios", "sli"):
        assert key in meta
    assert meta["schema_version"] == SCHEMA_VERSION
