"""bench.sources.agents.events: hand-written node logs in, one trial's EventRows out.

Stamps are small round numbers on each node's clock; a trial's window is on the harness
clock, so a node's offset decides what falls inside it."""

from __future__ import annotations

import json
from typing import Any

from bench.results.schema import Ev, EventRow
from bench.sources.agents.clocks import SHARED_CLOCK, ClockOffset
from bench.sources.agents.events import Ask, merge_runs, trial_events
from bench.sources.agents.nodelog import NodeLog
from bench.sources.agents.wire import AgentInfo, FailRunReport, PodSeen
from bench.sources.base import TrialRef

MS = 1_000_000
S = 1_000 * MS
IP = "10.64.1.7"
POD = "target-abc"
SVC = "svc0"
INFO = AgentInfo(rule_resolution_ns=5 * MS, probe_interval_ns=2 * MS,
                 rule_method="nft-monitor")


def _ref(direction: str) -> TrialRef:
    return TrialRef("run1", 3, SVC, "scale-up" if direction == "add" else "delete",
                    "nftables", direction)


def _log(node: str = "n1", offset: ClockOffset | None = None, **kw: Any) -> NodeLog:
    log = NodeLog(node, offset or ClockOffset(0, 0, 15), info=INFO)
    for k, v in kw.items():
        setattr(log, k, v)
    return log


def _seen(first: int, last: int, count: int = 4, first_gap: int = 0,
          last_gap: int = 0) -> PodSeen:
    return PodSeen(first_ns=first, last_ns=last, count=count, first_gap_ns=first_gap,
                   last_gap_ns=last_gap)


def _run(first: int, last: int, count: int, reasons: dict[str, int], first_gap: int = 0,
         last_gap: int = 0) -> FailRunReport:
    return FailRunReport(first_ns=first, last_ns=last, count=count, reasons=reasons,
                         first_gap_ns=first_gap, last_gap_ns=last_gap)


def _events(logs: list[NodeLog], direction: str, start: int = 10 * S,
            end: int = 20 * S) -> list[EventRow]:
    return trial_events({log.node: log for log in logs},
                        Ask(_ref(direction), SVC, POD, IP, start, end))


def _by(rows: list[EventRow], event: str) -> list[EventRow]:
    return [r for r in rows if r["event"] == event]


def test_first_answer_is_t5_with_its_gap_as_resolution() -> None:
    log = _log(pods={SVC: {POD: _seen(12 * S, 15 * S, count=9, first_gap=3 * MS)}})
    (r,) = _events([log], "add")
    assert (r["event"], r["t_ns"], r["value"], r["resolution_ns"]) == (
        Ev.FIRST_SUCCESS, 12 * S, 9.0, 3 * MS)
    assert (r["node"], r["pod"], r["pod_ip"], r["source"]) == ("n1", POD, IP, "agent-prober")
    assert (r["trial"], r["direction"], r["service"]) == (3, "add", SVC)


def test_first_answer_without_a_gap_has_the_probe_interval_as_resolution() -> None:
    log = _log(pods={SVC: {POD: _seen(12 * S, 15 * S)}})
    assert _by(_events([log], "add"), Ev.FIRST_SUCCESS)[0]["resolution_ns"] == 2 * MS


def test_first_answer_outside_the_window_is_not_this_trials() -> None:
    log = _log(pods={SVC: {POD: _seen(9 * S, 15 * S)}, "svc1": {POD: _seen(12 * S, 13 * S)}})
    assert _events([log], "add") == []


def test_last_answer_is_r5_with_the_gap_after_it() -> None:
    log = _log(pods={SVC: {POD: _seen(2 * S, 14 * S, count=40, last_gap=5 * MS)}})
    rows = _events([log], "remove")
    assert [(r["event"], r["t_ns"], r["value"], r["resolution_ns"]) for r in rows] == [
        (Ev.LAST_SUCCESS, 14 * S, 40.0, 5 * MS)]


def test_last_answer_before_the_window_still_counts() -> None:
    """A removed pod may have answered last before the trigger (idle probing): R5 is
    its last answer whenever it was, and the hop comes out negative, kept and flagged."""
    log = _log(pods={SVC: {POD: _seen(2 * S, 9 * S)}})
    assert [r["t_ns"] for r in _by(_events([log], "remove"), Ev.LAST_SUCCESS)] == [9 * S]


def test_rule_add_is_the_first_matching_change_in_the_window() -> None:
    changes = [
        {"t_ns": 9 * S, "service": "ns/svc0:80", "ip": IP, "present": True},    # before
        {"t_ns": 11 * S, "service": "ns/svc0:80", "ip": "10.64.1.8", "present": True},
        {"t_ns": 12 * S, "service": "ns/svc0:80", "ip": IP, "present": False},  # other way
        {"t_ns": 13 * S, "service": "ns/svc0:80", "ip": IP, "present": True},   # this one
        {"t_ns": 14 * S, "service": "ns/svc0:80", "ip": IP, "present": True},   # a later one
    ]
    rows = _events([_log(rule_changes=changes)], "add")
    assert [(r["event"], r["t_ns"]) for r in rows] == [(Ev.RULE_PRESENT, 13 * S)]
    assert rows[0]["resolution_ns"] == 5 * MS and rows[0]["source"] == "agent-rules"
    assert json.loads(rows[0]["detail"]) == {"service": "ns/svc0:80", "method": "nft-monitor"}


def test_rule_remove_is_r4() -> None:
    changes = [{"t_ns": 11 * S, "service": "s", "ip": IP, "present": True},
               {"t_ns": 12 * S, "service": "s", "ip": IP, "present": False}]
    rows = _events([_log(rule_changes=changes)], "remove")
    assert [(r["event"], r["t_ns"]) for r in rows] == [(Ev.RULE_ABSENT, 12 * S)]


def test_every_sync_in_the_window_is_a_row() -> None:
    syncs = [{"t_ns": t, "seen_ns": t + 40 * MS, "syncs": n}
             for t, n in ((9 * S, 1), (11 * S, 2), (19 * S, 1), (21 * S, 1))]
    rows = _events([_log(syncs=syncs)], "add")
    assert [(r["event"], r["t_ns"], r["value"]) for r in rows] == [
        (Ev.PROXY_SYNC, 11 * S, 2.0), (Ev.PROXY_SYNC, 19 * S, 1.0)]
    assert all(r["resolution_ns"] == MS and r["source"] == "agent-metrics" for r in rows)
    assert json.loads(rows[0]["detail"]) == {"seen_ns": 11 * S + 40 * MS}


def test_failed_requests_closed_and_open_runs_make_one_window() -> None:
    log = _log(fail_runs={SVC: [
        _run(8 * S, 9 * S, 50, {"timeout": 50}),                    # began before: not ours
        _run(12 * S, 12 * S + 300 * MS, 6, {"refused": 6}, first_gap=2 * MS),
        _run(13 * S, 13 * S + 10 * MS, 2, {"refused": 1, "reset": 1}),
    ]}, open_fail={SVC: _run(14 * S, 15 * S, 3, {"timeout": 3}, last_gap=7 * MS),
                   "svc1": _run(12 * S, 13 * S, 99, {"timeout": 99})})
    first, last = _events([log], "remove")
    assert (first["event"], first["t_ns"], first["value"], first["resolution_ns"]) == (
        Ev.FAIL_FIRST, 12 * S, 11.0, 2 * MS)
    assert json.loads(first["detail"]) == {"reasons": {"refused": 7, "reset": 1,
                                                       "timeout": 3}}
    assert (last["event"], last["t_ns"], last["value"], last["resolution_ns"]) == (
        Ev.FAIL_LAST, 15 * S, 11.0, 7 * MS)
    assert json.loads(last["detail"]) == {"runs": 3}


def test_merge_runs_takes_the_earliest_start_and_the_latest_end() -> None:
    w = merge_runs([_run(5, 30, 2, {"a": 2}), _run(3, 10, 1, {"b": 1}),
                    _run(7, 40, 4, {"a": 4})])
    assert (w.first["first_ns"], w.last["last_ns"], w.count, w.reasons, w.runs) == (
        3, 40, 7, {"a": 6, "b": 1}, 3)


def test_the_offset_moves_node_stamps_into_the_window_and_is_kept_on_the_row() -> None:
    """n2's clock is 4 s behind: its 7 s stamp is 11 s on the harness clock (inside), its
    17 s stamp is 21 s (outside). The row keeps the node's stamp, clock and offset."""
    behind = ClockOffset(offset_ns=4 * S, uncertainty_ns=300_000, samples=15)
    syncs = [{"t_ns": 7 * S, "seen_ns": 7 * S, "syncs": 1},
             {"t_ns": 17 * S, "seen_ns": 17 * S, "syncs": 1}]
    pods = {SVC: {POD: _seen(7 * S + 5 * MS, 9 * S)}}
    rows = _events([_log("n2", behind, syncs=syncs, pods=pods)], "add")
    assert [(r["event"], r["t_ns"]) for r in rows] == [
        (Ev.PROXY_SYNC, 7 * S), (Ev.FIRST_SUCCESS, 7 * S + 5 * MS)]
    assert {(r["clock"], r["offset_ns"], r["uncertainty_ns"]) for r in rows} == {
        ("node:n2", 4 * S, 300_000)}


def test_a_node_on_the_harness_kernel_stamps_on_the_harness_clock() -> None:
    rows = _events([_log(offset=SHARED_CLOCK, pods={SVC: {POD: _seen(12 * S, 12 * S)}})],
                   "add")
    assert {(r["clock"], r["offset_ns"], r["uncertainty_ns"]) for r in rows} == {
        ("harness", 0, 0)}


def test_nodes_in_order_each_sync_rule_answer_failures() -> None:
    def busy(node: str) -> NodeLog:
        return _log(node, syncs=[{"t_ns": 11 * S, "seen_ns": 11 * S, "syncs": 1}],
                    rule_changes=[{"t_ns": 12 * S, "service": "s", "ip": IP,
                                   "present": False}],
                    pods={SVC: {POD: _seen(1 * S, 13 * S)}},
                    open_fail={SVC: _run(14 * S, 14 * S, 1, {"refused": 1})})
    rows = _events([busy("n1"), _log("n3"), busy("n2")], "remove")
    per_node = [Ev.PROXY_SYNC, Ev.RULE_ABSENT, Ev.LAST_SUCCESS, Ev.FAIL_FIRST, Ev.FAIL_LAST]
    assert [(r["node"], r["event"]) for r in rows] == (
        [("n1", e) for e in per_node] + [("n2", e) for e in per_node])


def test_a_log_before_any_collect_gives_no_rows() -> None:
    assert _events([NodeLog("n1", ClockOffset(0, 0, 15))], "add") == []
