"""T1/T2 from recorded API watch lines, and the audit matcher on the same cluster's audit log.

The fixtures (tests/fixtures, see its README) are one recording: the pods and EndpointSlices
watches of namespace `fx` while 2 pods started, a 3rd was added, one was deleted (and
replaced), and after a switch to nftables one was scaled away; each watch line carries the
time.time_ns() at which the recorder read it; audit.log is the API server's log over the same
span. Expected stamps are found here by searching the raw lines for the bytes that mark the
change, not by decoding them the way the trackers do.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bench.results.schema import Ev, EventRow
from bench.sources import audit
from bench.sources.base import Registry, TrialRef
from bench.sources.watchevents import PodEvents, SliceEvents, decode, ts_ns

FIX = Path(__file__).parent.parent / "fixtures"
EXPECTED: dict[str, Any] = json.loads((FIX / "expected.json").read_text())
NS = "fx"


def lines(name: str) -> list[tuple[int, bytes]]:
    out = []
    for line in (FIX / name).read_bytes().splitlines():
        stamp, _, raw = line.partition(b" ")
        out.append((int(stamp), raw))
    return out


PODS, SLICES = lines("watch-pods.txt"), lines("watch-endpointslices.txt")
NAMES = sorted({json.loads(raw)["object"]["metadata"]["name"] for _, raw in PODS})
DELETED = EXPECTED["deleted"]
SCALED_AWAY = (set(EXPECTED["after-delete"]) - set(EXPECTED["nft-2.txt"])).pop()
IP = {**EXPECTED["iptables-3.txt"], **EXPECTED["after-delete"]}  # every pod that was Ready


def refs() -> tuple[Registry, dict[tuple[str, str], TrialRef]]:
    """Each pod takes part in an add trial (its index) and then a removal trial (100+)."""
    reg, by = Registry(), {}
    for i, name in enumerate(NAMES):
        add = TrialRef("run", i, "web", "fixture", "iptables", "add")
        rm = TrialRef("run", 100 + i, "web", "fixture", "iptables", "remove")
        reg.set(name, add, rm)
        by[(name, "add")], by[(name, "remove")] = add, rm
    return reg, by


def feed(tracker: PodEvents | SliceEvents, recorded: list[tuple[int, bytes]]
         ) -> list[EventRow]:
    return [r for t, raw in recorded for r in tracker.on_line(raw, t)]


def first_stamp(recorded: list[tuple[int, bytes]], *patterns: bytes) -> int:
    """The stamp of the first line in which every pattern (a regular expression) occurs."""
    return next(t for t, raw in recorded if all(re.search(p, raw) for p in patterns))


READY_TRUE = rb'"type":"Ready",("observedGeneration":\d+,)?"status":"True"'


def named(name: str) -> bytes:
    return b'"name":"%s"' % re.escape(name).encode()


def by_event(rows: list[EventRow], event: str) -> dict[str, EventRow]:
    got = [r for r in rows if r["event"] == event]
    out = {r["pod"]: r for r in got}
    assert len(out) == len(got), f"{event} twice for a pod"
    return out


def test_the_recording_has_what_the_tests_need() -> None:
    assert len(NAMES) == 4 and DELETED in NAMES and SCALED_AWAY in NAMES
    assert set(IP) == set(NAMES)


def test_pod_ready_once_per_pod_at_the_line_that_made_it_ready() -> None:
    reg, by = refs()
    rows = feed(PodEvents(reg), PODS)
    ready = by_event(rows, Ev.POD_READY)
    assert set(ready) == set(NAMES)
    for name, r in ready.items():
        assert r["t_ns"] == first_stamp(PODS, named(name), READY_TRUE)
        assert r["trial"] == by[(name, "add")].trial and r["pod_ip"] == IP[name]
    ltt = by_event(rows, Ev.READY_LTT)
    for name, r in ltt.items():  # whole seconds, at most ~1 s before the watch saw it
        assert r["t_ns"] % 1_000_000_000 == 0
        assert 0 <= ready[name]["t_ns"] - r["t_ns"] < 2_000_000_000


def test_pod_unready_once_for_each_removed_pod_when_its_deletion_began() -> None:
    reg, by = refs()
    rows = feed(PodEvents(reg), PODS)
    gone = by_event(rows, Ev.POD_UNREADY)
    assert set(gone) == {DELETED, SCALED_AWAY}
    for name, r in gone.items():
        assert json.loads(r["detail"])["why"] == "deleting"
        assert r["trial"] == by[(name, "remove")].trial
        assert r["t_ns"] == first_stamp(PODS, named(name), b'"deletionTimestamp"')


def test_unregistered_pods_and_bookmarks_make_no_events() -> None:
    assert feed(PodEvents(Registry()), PODS) == []
    assert feed(SliceEvents(Registry()), SLICES) == []
    reg, _ = refs()
    bookmark = b'{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}'
    assert PodEvents(reg).on_line(bookmark, 1) == []
    assert decode(b"", 1) is None and decode(b"\n", 1) is None
    with pytest.raises(ValueError):
        decode(b"{not json", 1)


def test_slice_ready_per_ip_at_the_line_listing_it_ready() -> None:
    reg, by = refs()
    pod_rows = feed(PodEvents(reg), PODS)
    rows = feed(SliceEvents(reg), SLICES)
    ready = by_event(rows, Ev.SLICE_READY)
    assert set(ready) == set(NAMES)
    pod_ready = by_event(pod_rows, Ev.POD_READY)
    for name, r in ready.items():
        ip = IP[name]
        assert r["pod_ip"] == ip and r["trial"] == by[(name, "add")].trial
        assert r["t_ns"] == first_stamp(
            SLICES, rb'"addresses":\["%s"\],"conditions":\{"ready":true' % re.escape(ip).encode())
        assert 0 < r["t_ns"] - pod_ready[name]["t_ns"] < 1_000_000_000
    triggers = [r for r in rows if r["event"] == Ev.SLICE_TRIGGER]
    assert {r["pod"] for r in triggers} <= set(NAMES) and triggers
    for r in triggers:  # the annotation is the change that triggered the write: earlier
        assert r["t_ns"] <= next(x["t_ns"] for x in rows if x["pod"] == r["pod"]
                                 and x["event"] == (Ev.SLICE_READY if r["direction"] == "add"
                                                    else Ev.SLICE_UNREADY))


def test_slice_unready_for_each_removed_pod() -> None:
    reg, by = refs()
    rows = feed(SliceEvents(reg), SLICES)
    pod_rows = feed(PodEvents(reg), PODS)
    gone = by_event(rows, Ev.SLICE_UNREADY)
    assert set(gone) == {DELETED, SCALED_AWAY}
    unready = by_event(pod_rows, Ev.POD_UNREADY)
    for name, r in gone.items():
        assert r["pod_ip"] == IP[name] and r["trial"] == by[(name, "remove")].trial
        assert 0 < r["t_ns"] - unready[name]["t_ns"] < 1_000_000_000


def audit_lines() -> list[bytes]:
    return (FIX / "audit.log").read_bytes().splitlines()


def test_audit_parse_keeps_successful_status_and_slice_writes_of_the_namespace() -> None:
    writes = [audit.parse_line(ln, NS) for ln in audit_lines()]
    entries = [json.loads(ln) for ln in audit_lines()]
    status = [e for e in entries if e["objectRef"].get("subresource") == "status"
              and e["responseStatus"].get("code", 200) < 300]
    slices = [e for e in entries if e["objectRef"]["resource"] == "endpointslices"
              and e["responseStatus"].get("code", 200) < 300]
    assert status and slices
    assert sum(1 for w in writes if w and w.resource == "pods") == len(status)
    assert sum(1 for w in writes if w and w.resource == "endpointslices") == len(slices)
    assert all(w is None for w in (audit.parse_line(ln, "other") for ln in audit_lines()))
    first = entries[0]
    w = audit.parse_line(json.dumps(first), NS)
    assert w is not None and abs(w.done_ns - ts_ns(first["stageTimestamp"])) < 1000
    assert audit.parse_line(json.dumps({**first, "stage": "ResponseStarted"}), NS) is None
    assert audit.parse_line(json.dumps(
        {**first, "responseStatus": {"code": 409}}), NS) is None


def test_audit_matches_each_watch_event_to_the_write_it_saw() -> None:
    reg, by = refs()
    batch = feed(PodEvents(reg), PODS) + feed(SliceEvents(reg), SLICES)
    tail = audit.AuditTail(FIX / "missing.log", NS)
    for ln in audit_lines():
        tail.add(ln)
    matched: list[EventRow] = []
    for ref in {r for r in by.values()}:
        trial = [e for e in batch if e["trial"] == ref.trial]
        matched += audit.match(ref, trial, tail.pod_writes, tail.slice_writes)
    wanted = [e for e in batch if e["event"] in audit.MATCHES]
    assert len(matched) == len(wanted)
    for ev, m in zip(sorted(wanted, key=lambda e: (e["trial"], e["event"], e["pod"])),
                     sorted(matched, key=lambda e: (e["trial"], json.loads(e["detail"])[
                         "matched"], e["pod"]))):
        assert m["event"] == audit.MATCHES[ev["event"]] and m["pod"] == ev["pod"]
        received = json.loads(m["detail"])["received_ns"]
        assert received <= ev["t_ns"]
        # the write the watch reported, not an earlier one of the same object: the watch
        # hears of a write within milliseconds of its completion
        assert abs(ev["t_ns"] - m["t_ns"]) < 100_000_000, (ev, m)
