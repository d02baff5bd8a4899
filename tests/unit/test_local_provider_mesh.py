"""A local cluster brought up with a mesh is measured with it only when the run asks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.cluster.local.spec import ClusterSpec
from bench.providers.local import LocalProvider


def test_the_mesh_is_measured_only_with_run_mesh(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOPBENCH_STATE", str(tmp_path))
    spec = ClusterSpec(name="m1", mesh="istio")
    spec.state_dir.mkdir(parents=True)
    mesh = {"name": "istio", "xds": "10.88.0.2:15010", "client": "/x/meshclient",
            "log": "/x/istiod.log"}
    (spec.state_dir / "state.json").write_text(json.dumps({"mesh": mesh}))
    tools: Any = object()
    assert LocalProvider(spec, tools, measure_mesh=True).mesh() == mesh
    assert LocalProvider(spec, tools).mesh() is None  # run without --mesh: kube-proxy only
    plain = ClusterSpec(name="m1")  # a cluster without a mesh never reports one
    assert LocalProvider(plain, tools, measure_mesh=True).mesh() is None
