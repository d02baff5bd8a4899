"""The parts of bench.sources.agents alone: a node log folding /collect replies, the
queries a scenario asks, the collector's pace and error count, the control's focus.

Transports are hand-written fakes (pure units: no agent, no network)."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from bench.sources.agents import queries
from bench.sources.agents.clocks import ClockOffset
from bench.sources.agents.collector import Collector
from bench.sources.agents.control import AgentControl
from bench.sources.agents.nodelog import NodeLog, absorb, forget
from bench.sources.agents.store import AgentStore
from bench.sources.agents.wire import AgentInfo, CollectReply

S = 1_000_000_000
IP = "10.64.1.7"


def _reply(**probe: Any) -> CollectReply:
    r: dict[str, Any] = {
        "node": "n1", "t_ns": 0, "rule_changes": [], "syncs": [],
        "probe": {"pods": {}, "fail_runs": {}, "open_fail": {}, "requests": 0,
                  "focused_s": 0.5, **probe},
        "cpu_s": 0.0, "wall_s": 0.0, "rule_mode": "nftables", "rule_method": "nft-monitor",
        "rule_resolution_ns": 5_000_000, "probe_interval_ns": 5_000_000,
        "probe_idle_interval_ns": 100_000_000, "kube_proxy_min_sync_s": 1.0,
        "early_rule_changes": 0, "sync_poll_interval_ns": 250_000_000, "routes": {}}
    return r  # type: ignore[return-value]


def _seen(first: int, last: int) -> dict[str, int]:
    return {"first_ns": first, "last_ns": last, "count": 1, "first_gap_ns": 0,
            "last_gap_ns": 0}


def _run(first: int) -> dict[str, Any]:
    return {"first_ns": first, "last_ns": first, "count": 1, "reasons": {"refused": 1},
            "first_gap_ns": 0, "last_gap_ns": 0}


# --- nodelog -------------------------------------------------------------------------------
def test_absorb_appends_changes_and_replaces_state() -> None:
    log = NodeLog("n1", ClockOffset(0, 0, 15))
    one = _reply(pods={"svc0": {"a": _seen(1, 2)}}, fail_runs={"svc0": [_run(1)]},
                 open_fail={"svc0": _run(3)})
    one["rule_changes"] = [{"t_ns": 1, "service": "s", "ip": IP, "present": True}]
    one["wall_s"], one["cpu_s"] = 10.0, 1.0
    absorb(log, one)
    two = _reply(pods={"svc0": {"a": _seen(1, 9), "b": _seen(5, 5)}},
                 fail_runs={"svc0": [_run(3)]}, focused_s=2.0)
    two["syncs"] = [{"t_ns": 4, "seen_ns": 5, "syncs": 1}]
    two["wall_s"], two["cpu_s"] = 20.0, 1.5
    absorb(log, two)
    assert [c["t_ns"] for c in log.rule_changes] == [1] and len(log.syncs) == 1
    assert log.pods["svc0"]["a"]["last_ns"] == 9 and "b" in log.pods["svc0"]
    assert [r["first_ns"] for r in log.fail_runs["svc0"]] == [1, 3]
    assert log.open_fail == {}  # the run closed: the latest reply has none open
    assert log.info["probe_focused_s"] == 2.0 and log.info["rule_method"] == "nft-monitor"
    assert log.cpu == [(10.0, 1.0), (20.0, 1.5)]
    assert queries.cpu_fraction(log) == pytest.approx(0.05)


def test_an_old_agent_without_settings_gives_none() -> None:
    r: dict[str, Any] = dict(_reply())
    del r["kube_proxy_min_sync_s"], r["rule_method"], r["probe"]["focused_s"]
    log = NodeLog("n1", ClockOffset(0, 0, 15))
    absorb(log, r)  # type: ignore[arg-type]
    assert log.info["rule_method"] is None and log.info["probe_focused_s"] is None


def test_forget_makes_the_next_answer_a_first_one() -> None:
    log = NodeLog("n1", ClockOffset(0, 0, 15))
    absorb(log, _reply(pods={"svc0": {"a": _seen(1, 2)}}))
    forget(log, "svc0", "a")
    forget(log, "svc9", "a")  # unknown target: nothing to do
    assert queries.first_answer(log, "svc0", "a") is None
    absorb(log, _reply(pods={"svc0": {"a": _seen(7, 7)}}))
    assert queries.first_answer(log, "svc0", "a") == 7


# --- queries -------------------------------------------------------------------------------
def _log_with_changes(offset_ns: int) -> NodeLog:
    log = NodeLog("n1", ClockOffset(offset_ns, 0, 15))
    log.rule_changes = [{"t_ns": 10 * S, "service": "s", "ip": IP, "present": True},
                        {"t_ns": 20 * S, "service": "s", "ip": IP, "present": False}]
    log.syncs = [{"t_ns": 10 * S + 1, "seen_ns": 0, "syncs": 1}]
    return log


def test_rule_change_compares_on_the_harness_clock() -> None:
    log = _log_with_changes(offset_ns=5 * S)  # node stamps are 5 s behind the harness
    assert queries.rule_change(log, IP, True, 15 * S) == 10 * S  # node stamp returned
    assert queries.rule_change(log, IP, True, 15 * S + 1) is None
    assert queries.rule_change(log, IP, False, 0) == 20 * S
    assert queries.rule_change(log, "10.0.0.1", True, 0) is None


def test_synced_after_waits_for_the_sync_after_the_change() -> None:
    log = _log_with_changes(offset_ns=0)
    assert queries.synced_after(log, IP, True, 0)        # sync at 10 s + 1 ns
    assert not queries.synced_after(log, IP, False, 0)   # no sync after 20 s yet
    assert queries.synced_after(log, IP, False, 21 * S)  # no change since: nothing to wait


def test_the_sync_that_made_the_change_may_end_just_before_its_rule_stamp() -> None:
    """The agent asks the nf_tables generation every 5 ms: its stamp of a commit can
    follow kube-proxy's own end-of-sync stamp by a few ms. That sync is the one that made
    the change (a restart on an idle cluster has no other: waiting for a later one hung
    the trial for its whole timeout)."""
    log = _log_with_changes(offset_ns=0)
    log.info = AgentInfo(rule_resolution_ns=5_000_000)
    log.syncs = [{"t_ns": 20 * S - 15_000_000, "seen_ns": 0, "syncs": 2}]  # 15 ms before
    assert queries.synced_after(log, IP, False, 0)
    log.syncs = [{"t_ns": 20 * S - 25_000_000, "seen_ns": 0, "syncs": 2}]  # beyond the slack
    assert not queries.synced_after(log, IP, False, 0)


def test_answers_and_cpu_before_anything_was_seen() -> None:
    log = NodeLog("n1", ClockOffset(0, 0, 15))
    assert queries.first_answer(log, "svc0", "a") is None
    assert queries.last_answer(log, "svc0", "a") is None
    assert math.isnan(queries.cpu_fraction(log))


# --- collector and control, with fake agents ----------------------------------------------
class FakeAgent:
    def __init__(self, node: str, replies: list[Any] | None = None) -> None:
        self.node = node
        self.replies = replies or []
        self.calls: list[tuple[str, str, Any]] = []
        self.down = False

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                timeout: float = 5.0) -> Any:
        self.calls.append((method, path, body))
        if self.down:
            raise OSError("connection refused")
        if path == "/clock":
            return {"t_ns": 0, "boot_id": "another-kernel"}
        if path == "/collect":
            return copy.deepcopy(self.replies.pop(0)) if self.replies else _reply()
        return {}


def test_collector_folds_each_agents_reply_and_counts_failures() -> None:
    n1 = FakeAgent("n1", [_reply(pods={"svc0": {"a": _seen(4, 4)}})])
    n2 = FakeAgent("n2")
    n2.down = True
    c = Collector([n1, n2], poll_s=60, idle_poll_s=60)
    offsets = {"n1": ClockOffset(7, 1, 15), "n2": ClockOffset(-7, 1, 15)}
    c.start(offsets)
    try:
        assert c.nodes["n1"].pods["svc0"]["a"]["first_ns"] == 4
        assert c.nodes["n2"].offset == offsets["n2"] and c.nodes["n2"].cpu == []
        c.collect_once()
        assert c.errors == {"n1": 0, "n2": 2}
    finally:
        c.stop()


def test_collector_is_fast_while_focused_and_briefly_after() -> None:
    c = Collector([], poll_s=0.1, idle_poll_s=0.5)
    assert c.interval() == 0.5
    c.focused("svc0", True)
    c.focused("svc1", True)
    c.focused("svc0", False)
    assert c.interval() == 0.1
    c.focused("svc1", False)
    assert c.interval() == 0.1  # the trial's end still waits for its last answers
    c._fast_until = 0.0
    assert c.interval() == 0.5


def test_control_focus_reaches_every_agent_and_counts_the_one_that_missed_it() -> None:
    up, down = FakeAgent("n1"), FakeAgent("n2")
    down.down = True
    ctl = AgentControl([up, down])
    try:
        ctl.focus("svc0", 25.0, after_sync=True)
        ctl.focus("svc0", 0)
    finally:
        ctl.close()
    assert [c for c in up.calls if c[1] == "/focus"] == [
        ("POST", "/focus", {"target": "svc0", "seconds": 25.0, "after_sync": True}),
        ("POST", "/focus", {"target": "svc0", "seconds": 0, "after_sync": False})]
    assert ctl.errors == {"n2": 2}


def test_store_sums_errors_and_forgets_on_both_sides() -> None:
    n1, n2 = FakeAgent("n1", [_reply(pods={"svc0": {"a": _seen(4, 4)}})]), FakeAgent("n2")
    store = AgentStore([n1, n2], poll_s=60, idle_poll_s=60)
    store.start()
    try:
        assert store.first_answer("n1", "svc0", "a") == 4
        n2.down = True
        store.focus("svc0", 5.0)
        store.collect_once()
        n2.down = False
        store.forget("svc0", "a")
        assert store.first_answer("n1", "svc0", "a") is None
        assert ("POST", "/forget", {"target": "svc0", "pod": "a", "ip": ""}) in n1.calls
    finally:
        store.stop()
    assert store.errors == {"n1": 0, "n2": 2}  # one focus, one collect
    assert set(store.offsets()) == {"n1", "n2"}
