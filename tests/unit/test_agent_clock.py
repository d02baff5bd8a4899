"""An agent on the harness's own kernel stamps on the harness clock: its offset is exactly 0
with uncertainty 0, and its rows say clock "harness". Only an agent on another kernel has
an offset to estimate. The agent's real /clock handler answers over loopback."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any, cast

import pytest

from bench.agent.server import Agent, make_handler
from bench.results.schema import Ev
from bench.sources.agents import AgentStore, NodeLog, boot_id, estimate_offset
from bench.sources.base import TrialRef

SKEW_NS = 3_000_000  # the fake node's clock runs 3 ms ahead of the harness


class SkewedAgent:
    """A node agent on another kernel: its own boot id, its clock 3 ms ahead."""

    node = "n1"

    def __init__(self, boot: str) -> None:
        self.boot = boot

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                timeout: float = 5.0) -> Any:
        assert (method, path) == ("GET", "/clock")
        return {"t_ns": time.time_ns() + SKEW_NS, "boot_id": self.boot}


class LoopbackAgent:
    """The real agent HTTP handler on 127.0.0.1, reached the way transports reach it."""

    node = "n1"

    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                timeout: float = 5.0) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                    timeout=timeout) as resp:
            return json.loads(resp.read())


@pytest.fixture
def agent_port() -> Iterator[int]:
    handler = make_handler(cast(Agent, None), token="t")  # /clock needs no agent state
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_this_kernel_has_a_boot_id() -> None:
    assert len(boot_id()) == 36  # a UUID; without it nothing could be called shared


def test_agent_on_the_harness_kernel_has_offset_exactly_zero(agent_port: int) -> None:
    offset = estimate_offset(LoopbackAgent(agent_port))
    assert (offset.offset_ns, offset.uncertainty_ns, offset.shared) == (0, 0, True)
    assert offset.clock == "harness"


def test_agent_on_another_kernel_is_estimated() -> None:
    offset = estimate_offset(SkewedAgent("another-kernel"), harness_boot_id="this-kernel")
    assert not offset.shared and offset.clock == ""
    assert offset.samples == 15 and offset.uncertainty_ns > 0
    # the node is ahead, so the offset brings its stamps back: about -3 ms
    assert abs(offset.offset_ns + SKEW_NS) <= offset.uncertainty_ns + 1_000_000


def _rows(store: AgentStore) -> list[dict[str, Any]]:
    log = store.nodes["n1"]
    log.info = {"rule_resolution_ns": 5_000_000, "probe_interval_ns": 5_000_000}
    now = time.time_ns()
    log.rule_changes.append({"t_ns": now, "ip": "10.0.0.9", "present": True, "service": "s"})
    log.pods["svc0"] = {"pod-a": {"first_ns": now + 1, "last_ns": now + 1, "count": 1}}  # type: ignore[typeddict-item]
    ref = TrialRef("run", 0, "svc0", "scale-up", "iptables", "add")
    rows = store.trial_events(ref, "svc0", "pod-a", "10.0.0.9", now - 10**10, now + 10**10)
    return [dict(r) for r in rows]


def test_rows_and_run_json_of_a_shared_clock(agent_port: int) -> None:
    store = AgentStore([])
    store.nodes["n1"] = NodeLog("n1", estimate_offset(LoopbackAgent(agent_port)))
    rows = _rows(store)
    assert {r["event"] for r in rows} == {Ev.RULE_PRESENT, Ev.FIRST_SUCCESS}
    assert {(r["clock"], r["offset_ns"], r["uncertainty_ns"]) for r in rows} == {
        ("harness", 0, 0)}
    assert store.offsets() == {"n1": {"offset_ns": 0, "uncertainty_ns": 0,
                                      "clock": "harness"}}


def test_rows_of_a_node_clock_carry_its_offset() -> None:
    store = AgentStore([])
    offset = estimate_offset(SkewedAgent("another-kernel"), harness_boot_id="this-kernel")
    store.nodes["n1"] = NodeLog("n1", offset)
    rows = _rows(store)
    assert {(r["clock"], r["offset_ns"], r["uncertainty_ns"]) for r in rows} == {
        ("node:n1", offset.offset_ns, offset.uncertainty_ns)}
    assert store.offsets()["n1"]["clock"] == "node:n1"
