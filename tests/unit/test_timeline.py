"""Timeline assembly from hand-written events: every expected millisecond is written out."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from bench.results.schema import ALL_NODES, CLUSTER, HOP_COLUMNS, HOP_DTYPES, Ev
from bench.timeline import assemble, events_frame

MS = 1_000_000  # ns


def ev(event: str, t_ms: float, node: str = CLUSTER, *, trial: int = 1,
       direction: str = "add", offset_ms: float = 0.0, res_ms: float = 1.0,
       unc_ms: float = 0.0, value: float = math.nan, detail: str = "",
       run_id: str = "r1") -> dict[str, Any]:
    """One event; `t_ms` is on the event's own clock (harness clock = t_ms + offset_ms)."""
    return {
        "run_id": run_id, "trial": trial, "service": "svc-1", "scenario": "scale-up",
        "proxy_mode": "nftables", "direction": direction, "node": node, "event": event,
        "t_ns": round(t_ms * MS), "clock": "harness" if node == CLUSTER else f"node:{node}",
        "offset_ns": round(offset_ms * MS), "uncertainty_ns": round(unc_ms * MS),
        "resolution_ns": round(res_ms * MS), "source": "test", "pod": "web-1",
        "pod_ip": "10.1.0.7", "value": value, "detail": detail,
    }


def hops_of(*events: dict[str, Any]) -> pd.DataFrame:
    return assemble(events_frame(events))


def one(hops: pd.DataFrame, hop: str, node: str = CLUSTER, direction: str | None = None,
        trial: int = 1) -> pd.Series:
    sel = hops[(hops["hop"] == hop) & (hops["node"] == node) & (hops["trial"] == trial)]
    if direction is not None:
        sel = sel[sel["direction"] == direction]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def add_trial(**skip: bool) -> list[dict[str, Any]]:
    """Two nodes: a (fast) and b (slow); node events have 5 ms resolution."""
    events = [
        ev(Ev.TRIGGER, 0), ev(Ev.POD_READY, 100), ev(Ev.SLICE_READY, 130),
        ev(Ev.PROXY_SYNC, 180, "a", res_ms=5), ev(Ev.RULE_PRESENT, 182, "a", res_ms=5),
        ev(Ev.FIRST_SUCCESS, 190, "a", res_ms=5),
        ev(Ev.PROXY_SYNC, 200, "b", res_ms=5), ev(Ev.RULE_PRESENT, 205, "b", res_ms=5),
        ev(Ev.FIRST_SUCCESS, 215.5, "b", res_ms=5),
    ]
    return [e for e in events if not skip.get(f"{e['event']}@{e['node'] or 'cluster'}")]


def test_add_chain_exact_latencies() -> None:
    hops = hops_of(*add_trial())
    expected = {
        ("trigger_to_ready", CLUSTER): 100.0, ("ready_to_slice", CLUSTER): 30.0,
        ("slice_to_sync", "a"): 50.0, ("slice_to_sync", "b"): 70.0,
        ("slice_to_sync", ALL_NODES): 70.0,
        ("sync_to_rule", "a"): 2.0, ("sync_to_rule", "b"): 5.0, ("sync_to_rule", ALL_NODES): 5.0,
        ("rule_to_traffic", "a"): 8.0, ("rule_to_traffic", "b"): 10.5,
        ("rule_to_traffic", ALL_NODES): 10.5,
        ("ready_to_traffic", "a"): 90.0, ("ready_to_traffic", "b"): 115.5,
        ("ready_to_traffic", ALL_NODES): 115.5,
    }
    got = {(r.hop, r.node): r.latency_ms for r in hops.itertuples()}
    assert got == expected
    assert not hops["censored"].any()
    assert set(hops["flag"]) == {""}
    assert set(hops["direction"]) == {"add"}
    assert one(hops, "slice_to_sync", "a")["resolution_ms"] == 6.0   # 1 ms + 5 ms
    assert one(hops, "sync_to_rule", "a")["resolution_ms"] == 10.0   # 5 ms + 5 ms
    assert one(hops, "ready_to_slice")["resolution_ms"] == 2.0
    row = one(hops, "ready_to_traffic", "b")
    assert (row["start_event"], row["end_event"]) == (Ev.POD_READY, Ev.FIRST_SUCCESS)
    assert (row["run_id"], row["service"], row["scenario"], row["proxy_mode"]) == (
        "r1", "svc-1", "scale-up", "nftables")
    assert math.isnan(row["value"])


def test_output_columns_and_dtypes_are_stable() -> None:
    for hops in (hops_of(*add_trial()), hops_of(), assemble(events_frame([]))):
        assert list(hops.columns) == HOP_COLUMNS
        assert {c: str(t) for c, t in hops.dtypes.items()} == HOP_DTYPES
    assert len(hops_of()) == 0


def test_missing_columns_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"missing columns: .*offset_ns"):
        assemble(events_frame(add_trial()).drop(columns=["offset_ns"]))


def test_input_is_not_modified() -> None:
    events = events_frame(add_trial())
    before = events.copy()
    assemble(events)
    pd.testing.assert_frame_equal(events, before)


def test_clock_offsets_move_node_events_to_the_harness_clock() -> None:
    # node a's clock runs 5 s ahead of the harness (offset -5 s, uncertainty 0.25 ms);
    # node b's runs 2 s behind (offset +2 s, uncertainty 0.5 ms)
    shifted = []
    for e in add_trial():
        if e["node"] == "a":
            e = {**e, "t_ns": e["t_ns"] + 5000 * MS, "offset_ns": -5000 * MS,
                 "uncertainty_ns": MS // 4}
        if e["node"] == "b":
            e = {**e, "t_ns": e["t_ns"] - 2000 * MS, "offset_ns": 2000 * MS,
                 "uncertainty_ns": MS // 2}
        shifted.append(e)
    hops = hops_of(*shifted)
    assert one(hops, "slice_to_sync", "a")["latency_ms"] == 50.0
    assert one(hops, "ready_to_traffic", "b")["latency_ms"] == 115.5
    assert one(hops, "ready_to_traffic", ALL_NODES)["latency_ms"] == 115.5
    # across clocks the offset uncertainty adds up; on one clock it cancels out
    assert one(hops, "slice_to_sync", "a")["resolution_ms"] == 6.25
    assert one(hops, "slice_to_sync", "b")["resolution_ms"] == 6.5
    assert one(hops, "sync_to_rule", "b")["resolution_ms"] == 10.0


def test_missing_slice_event_censors_every_hop_that_needs_it() -> None:
    hops = hops_of(*add_trial(**{"slice_ready@cluster": True}))
    row = one(hops, "ready_to_slice")
    assert row["censored"] and math.isnan(row["latency_ms"])
    assert row["censor_reason"] == "missing slice_ready"
    for node in ("a", "b"):
        assert one(hops, "slice_to_sync", node)["censor_reason"] == "missing slice_ready"
        # without the slice there is no way to tell which sync covered the change
        assert one(hops, "sync_to_rule", node)["censor_reason"] == "missing slice_ready"
        assert not one(hops, "rule_to_traffic", node)["censored"]
    assert one(hops, "slice_to_sync", ALL_NODES)["censor_reason"] == "node a: missing slice_ready"
    assert one(hops, "ready_to_traffic", ALL_NODES)["latency_ms"] == 115.5


def test_missing_node_event_censors_that_node_and_the_all_nodes_row() -> None:
    hops = hops_of(*add_trial(**{"first_success@b": True}))
    row = one(hops, "rule_to_traffic", "b")
    assert row["censored"] and math.isnan(row["latency_ms"])
    assert row["censor_reason"] == "missing first_success"
    assert math.isnan(row["resolution_ms"])
    assert one(hops, "rule_to_traffic", "a")["latency_ms"] == 8.0
    worst = one(hops, "ready_to_traffic", ALL_NODES)
    assert worst["censored"] and math.isnan(worst["latency_ms"])
    assert worst["censor_reason"] == "node b: missing first_success"


def test_node_silent_for_a_whole_trial_is_censored_not_dropped() -> None:
    # node c is known from trial 2 of the same run but said nothing in trial 1
    hops = hops_of(*add_trial(), ev(Ev.PROXY_SYNC, 1000, "c", trial=2))
    row = one(hops, "slice_to_sync", "c")
    assert row["censored"] and row["censor_reason"] == "missing proxy_sync at or after slice_ready"
    assert one(hops, "slice_to_sync", ALL_NODES)["censor_reason"].startswith("node c: ")


def test_censor_event_detail_gives_the_reason() -> None:
    events = [
        *add_trial(**{"first_success@b": True, "first_success@a": True}),
        ev(Ev.CENSOR, 30_000, "b", detail='{"reason": "no answer from new pod within 30 s"}'),
        ev(Ev.CENSOR, 30_001, detail="trial timed out"),
    ]
    hops = hops_of(*events)
    assert one(hops, "rule_to_traffic", "b")["censor_reason"] == (
        "no answer from new pod within 30 s")
    # a node without its own censor event gets the trial's
    assert one(hops, "rule_to_traffic", "a")["censor_reason"] == "trial timed out"
    assert one(hops, "ready_to_traffic", ALL_NODES)["censor_reason"] == "node a: trial timed out"
    # a censor event never censors a hop whose events are present
    assert one(hops, "sync_to_rule", "b")["latency_ms"] == 5.0


def test_negative_interval_is_kept_and_flagged() -> None:
    # node a's rule watcher saw the rule 3 ms before kube-proxy's metric said the sync ended
    events = [e for e in add_trial() if not (e["node"] == "a" and e["event"] == Ev.RULE_PRESENT)]
    hops = hops_of(*events, ev(Ev.RULE_PRESENT, 177, "a", res_ms=5))
    row = one(hops, "sync_to_rule", "a")
    assert row["latency_ms"] == -3.0 and row["flag"] == "negative" and not row["censored"]
    assert one(hops, "sync_to_rule", "b")["flag"] == ""
    assert one(hops, "sync_to_rule", ALL_NODES)["latency_ms"] == 5.0  # max: b


def test_all_nodes_row_of_only_negative_values_is_flagged() -> None:
    events = [e for e in add_trial() if e["event"] != Ev.RULE_PRESENT]
    hops = hops_of(*events, ev(Ev.RULE_PRESENT, 177, "a"), ev(Ev.RULE_PRESENT, 199, "b"))
    row = one(hops, "sync_to_rule", ALL_NODES)
    assert row["latency_ms"] == -1.0 and row["flag"] == "negative"


def test_proxy_sync_is_the_one_after_the_slice_nearest_the_rule() -> None:
    # a periodic sync at 120 ms (before the slice at 130 ms) must be ignored, and so
    # must a later one at 250 ms; for node b a sync ending right when the harness saw the
    # slice (130 ms) did not write the rule: the one nearest the rule (200 ms) did
    events = [
        *add_trial(),
        ev(Ev.PROXY_SYNC, 120, "a"), ev(Ev.PROXY_SYNC, 250, "a"),
        ev(Ev.PROXY_SYNC, 129, "b"), ev(Ev.PROXY_SYNC, 130, "b"),
    ]
    hops = hops_of(*events)
    assert one(hops, "slice_to_sync", "a")["latency_ms"] == 50.0
    assert one(hops, "sync_to_rule", "a")["latency_ms"] == 2.0
    assert one(hops, "slice_to_sync", "b")["latency_ms"] == 70.0
    assert one(hops, "sync_to_rule", "b")["latency_ms"] == 5.0


def test_without_a_rule_event_the_first_sync_after_the_slice_counts() -> None:
    events = [e for e in add_trial() if e["event"] != Ev.RULE_PRESENT]
    hops = hops_of(*events, ev(Ev.PROXY_SYNC, 131, "b"))
    assert one(hops, "slice_to_sync", "b")["latency_ms"] == 1.0


def test_stale_sync_a_period_before_the_rule_is_not_chosen() -> None:
    # kube-proxy (minSyncPeriod 1 s) ended a sync just after the slice without the change;
    # the rule appears with the next sync a second later, which ends 8 ms after the rule
    events = [e for e in add_trial() if e["node"] != "a"] + [
        ev(Ev.PROXY_SYNC, 140, "a"), ev(Ev.RULE_PRESENT, 1132, "a"),
        ev(Ev.PROXY_SYNC, 1140, "a"), ev(Ev.FIRST_SUCCESS, 1135, "a")]
    hops = hops_of(*events)
    assert one(hops, "slice_to_sync", "a")["latency_ms"] == 1010.0
    assert one(hops, "sync_to_rule", "a")["latency_ms"] == -8.0


def test_only_stale_proxy_syncs_censor_the_hop() -> None:
    events = [e for e in add_trial() if not (e["node"] == "a" and e["event"] == Ev.PROXY_SYNC)]
    hops = hops_of(*events, ev(Ev.PROXY_SYNC, 120, "a"))
    assert one(hops, "slice_to_sync", "a")["censor_reason"] == (
        "missing proxy_sync at or after slice_ready")


def test_earliest_event_counts_for_starts_and_first_events() -> None:
    # duplicated watch events (e.g. after a watch restart): the first sighting counts
    hops = hops_of(*add_trial(), ev(Ev.POD_READY, 104), ev(Ev.FIRST_SUCCESS, 300, "a"))
    assert one(hops, "ready_to_slice")["latency_ms"] == 30.0
    assert one(hops, "ready_to_traffic", "a")["latency_ms"] == 90.0


def removal_trial() -> list[dict[str, Any]]:
    r = "remove"
    return [
        ev(Ev.TRIGGER, 0, direction=r), ev(Ev.POD_UNREADY, 40, direction=r),
        ev(Ev.SLICE_UNREADY, 60, direction=r),
        # node a: a stale sync, two answers from the pod, then failures until the rule went
        ev(Ev.PROXY_SYNC, 50, "a", direction=r), ev(Ev.PROXY_SYNC, 90, "a", direction=r),
        ev(Ev.LAST_SUCCESS, 80, "a", direction=r), ev(Ev.LAST_SUCCESS, 92, "a", direction=r),
        ev(Ev.FAIL_FIRST, 93, "a", direction=r),
        ev(Ev.FAIL_LAST, 94, "a", direction=r, value=1),
        ev(Ev.FAIL_LAST, 97, "a", direction=r, value=3),
        ev(Ev.RULE_ABSENT, 95, "a", direction=r),
        # node b: no failure at all
        ev(Ev.PROXY_SYNC, 100, "b", direction=r), ev(Ev.RULE_ABSENT, 101, "b", direction=r),
        ev(Ev.LAST_SUCCESS, 99, "b", direction=r, res_ms=5),
    ]


def test_removal_chain_exact_latencies() -> None:
    hops = hops_of(*removal_trial())
    assert set(hops["direction"]) == {"remove"}
    assert one(hops, "trigger_to_unready")["latency_ms"] == 40.0
    assert one(hops, "unready_to_slice")["latency_ms"] == 20.0
    assert one(hops, "slice_to_sync", "a")["latency_ms"] == 30.0  # 90, not the stale 50
    assert one(hops, "slice_to_sync", "b")["latency_ms"] == 40.0
    assert one(hops, "sync_to_rule", "a")["latency_ms"] == 5.0
    assert one(hops, "unready_to_rule_gone", "a")["latency_ms"] == 55.0
    assert one(hops, "unready_to_rule_gone", ALL_NODES)["latency_ms"] == 61.0
    # the LAST answer counts: 92 ms, not 80 ms
    assert one(hops, "unready_to_last", "a")["latency_ms"] == 52.0
    assert one(hops, "unready_to_last", "b")["latency_ms"] == 59.0
    assert not hops["censored"].any()


def test_blackhole_window_uses_latest_fail_last_and_its_count() -> None:
    hops = hops_of(*removal_trial())
    a = one(hops, "blackhole", "a")
    assert (a["latency_ms"], a["value"], a["censored"]) == (4.0, 3.0, False)  # 93 → 97 ms
    b = one(hops, "blackhole", "b")  # no failure on b: a zero window, not a censored one
    assert (b["latency_ms"], b["value"], b["censored"], b["censor_reason"]) == (
        0.0, 0.0, False, "")
    assert b["resolution_ms"] == 5.0  # the coarsest resolution seen on node b
    worst = one(hops, "blackhole", ALL_NODES)
    assert (worst["latency_ms"], worst["value"]) == (4.0, 3.0)
    assert math.isnan(one(hops, "unready_to_last", "a")["value"])


def test_blackhole_of_a_silent_node_is_censored() -> None:
    hops = hops_of(*removal_trial(), ev(Ev.RULE_ABSENT, 5, "c", trial=9, direction="remove"))
    c = one(hops, "blackhole", "c")
    assert c["censored"] and c["censor_reason"] == "missing fail_first"
    assert one(hops, "blackhole", ALL_NODES)["censor_reason"] == "node c: missing fail_first"


def test_blackhole_with_one_end_missing_is_censored_but_keeps_the_count() -> None:
    events = [e for e in removal_trial() if e["event"] != Ev.FAIL_FIRST]
    a = one(hops_of(*events), "blackhole", "a")
    assert a["censored"] and a["censor_reason"] == "missing fail_first" and a["value"] == 3.0


def test_run_without_nodes_still_has_censored_all_nodes_rows() -> None:
    hops = hops_of(ev(Ev.TRIGGER, 0), ev(Ev.POD_READY, 100), ev(Ev.SLICE_READY, 130))
    assert one(hops, "ready_to_slice")["latency_ms"] == 30.0
    worst = one(hops, "ready_to_traffic", ALL_NODES)
    assert worst["censored"] and worst["censor_reason"] == "no nodes observed in this run"
    assert len(hops) == 2 + 4


def test_trials_and_directions_are_kept_apart() -> None:
    second = [{**e, "trial": 2, "t_ns": e["t_ns"] + 10_000 * MS} for e in add_trial()]
    hops = hops_of(*add_trial(), *second, *removal_trial(),
                   ev("agent_hello", 0, "a", trial=-1, direction=""))
    assert sorted(set(zip(hops["trial"], hops["direction"], strict=True))) == [
        (1, "add"), (1, "remove"), (2, "add")]
    assert one(hops, "ready_to_traffic", ALL_NODES, trial=2)["latency_ms"] == 115.5
    assert one(hops, "slice_to_sync", "a", direction="remove")["latency_ms"] == 30.0
    assert len(hops) == 2 * 14 + (2 + 5 * 3)  # removal: 2 cluster hops, 5 per-node hops


def test_modes_and_services_with_equal_trial_numbers_stay_apart() -> None:
    """One run measures several modes (and Services) under the same trial numbers."""
    ipt = add_trial()
    nft = [{**e, "proxy_mode": "iptables", "t_ns": e["t_ns"] + 20 * MS} for e in add_trial()]
    other = [{**e, "service": "svc-2", "t_ns": e["t_ns"] + 7 * MS} for e in add_trial()]
    hops = hops_of(*ipt, *nft, *other)
    e2e = hops[(hops["hop"] == "ready_to_slice")]
    assert sorted(zip(e2e["proxy_mode"], e2e["service"])) == [
        ("iptables", "svc-1"), ("nftables", "svc-1"), ("nftables", "svc-2")]
    assert (e2e["latency_ms"] == 30.0).all()


def test_a_crash_cycle_keeps_its_add_apart_from_the_scale_up() -> None:
    """Same trial number, same direction, different scenario: two trials."""
    first = add_trial()
    recovery = [{**e, "scenario": "crash", "t_ns": e["t_ns"] + 5000 * MS} for e in add_trial()]
    hops = hops_of(*first, *recovery)
    r = hops[hops["hop"] == "ready_to_slice"]
    assert sorted(r["scenario"]) == ["crash", "scale-up"] and (r["latency_ms"] == 30.0).all()
