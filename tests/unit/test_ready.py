"""bench.ready.is_ready on pods and nodes as JSON objects, the one shape the harness meets."""

from __future__ import annotations

from typing import Any

import pytest

from bench.ready import condition, is_ready


def pod_json(*conds: tuple[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "p"},
            "status": {"conditions": [{"type": t, "status": s} for t, s in conds]}}


@pytest.mark.parametrize(("conds", "ready"), [
    ((("PodScheduled", "True"), ("Ready", "True")), True),
    ((("Ready", "False"), ("ContainersReady", "True")), False),
    ((("ContainersReady", "True"), ("hopbench.io/gate", "True")), False),
    ((("Ready", "Unknown"),), False),
    ((), False),
])
def test_raw_json_pods_and_nodes(conds: tuple[tuple[str, str], ...], ready: bool) -> None:
    assert is_ready(pod_json(*conds)) is ready
    node = {"kind": "Node", **pod_json(*conds)}  # a node reports Ready the same way
    assert is_ready(node) is ready


def test_objects_without_status_are_not_ready() -> None:
    assert not is_ready({"metadata": {}})
    assert not is_ready({"status": {"conditions": None}})
    assert not is_ready({"status": None})
    assert not is_ready(None)


def test_condition_finds_other_kinds() -> None:
    pod = pod_json(("hopbench.io/ready", "False"), ("Ready", "True"))
    assert condition(pod, "hopbench.io/ready") == {"type": "hopbench.io/ready",
                                                   "status": "False"}
    assert condition(pod, "Missing") is None
