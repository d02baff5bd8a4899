"""bench.ready.is_ready on the three shapes the harness meets: raw JSON, kr8s, models."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

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
    assert not is_ready(client.V1Pod(metadata=client.V1ObjectMeta(name="p")))
    assert not is_ready(None)


def test_official_client_models() -> None:
    def pod(status: str) -> client.V1Pod:
        return client.V1Pod(status=client.V1PodStatus(conditions=[
            client.V1PodCondition(type="Initialized", status="True"),
            client.V1PodCondition(type="Ready", status=status)]))

    assert is_ready(pod("True")) and not is_ready(pod("False"))


def test_attribute_objects_over_dicts_as_kr8s_gives_them() -> None:
    class Kr8sLike:  # kr8s objects expose .status as a dict subclass
        status = {"conditions": [{"type": "Ready", "status": "True",
                                  "lastTransitionTime": "2026-01-01T00:00:00Z"}]}

    assert is_ready(Kr8sLike())
    assert condition(Kr8sLike(), "Ready")["lastTransitionTime"] == "2026-01-01T00:00:00Z"
