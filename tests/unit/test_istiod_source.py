# ruff: noqa: E501  (real log lines, kept whole)
"""istiod's log lines (as pilot-discovery of the pinned version writes them) into the
mesh chain's control-plane stamps M1-M3, and the choice of the trial's own."""

from __future__ import annotations

import json
from pathlib import Path

from bench.mesh.istio import logparse
from bench.results.schema import Ev
from bench.sources.base import TrialRef, row
from bench.sources.istiod import IstiodLog

# real lines (2026-12-06, release-1.31 pseudo-version), one per kind, plus noise
LINES = """\
2026-12-06T13:40:42.239752Z\tdebug\tkube\tPod hbmesh/grpc1-786786bb75-5ll7z has no IP
2026-12-06T13:40:42.779202Z\tdebug\tkube\tHandle EDS endpoint grpc1 update in namespace hbmesh
2026-12-06T13:40:42.779292Z\tdebug\tkube\ttriggering EDS push for [grpc1.hbmesh.svc.cluster.local] in namespace hbmesh
2026-12-06T13:40:42.806570Z\tdebug\tkube\tHandle EDS endpoint grpc1 update in namespace hbmesh
2026-12-06T13:40:42.907195Z\tinfo\tads\tPush debounce stable[14] 2 for config Endpoints/hbmesh/grpc1.hbmesh.svc.cluster.local: 100.358242ms since last change, 127.82658ms since last push, forced=false
2026-12-06T13:40:42.908047Z\tdebug\tads\tCDS: PUSH for node:hbmesh-n1-grpc1.hbmesh resources:1 size:151B
2026-12-06T13:40:42.909012Z\tdebug\tads\tEDS: PUSH INC for node:hbmesh-n1-grpc1.hbmesh resources:1 size:320B empty:0 cached:0/1
2026-12-06T13:40:42.911012Z\tinfo\tads\tEDS: PUSH for node:hbmesh-n2-grpc1.hbmesh resources:1 size:320B empty:0 cached:0/1
2026/12/06 13:48:53 INFO memory is not limited, skipping
"""
T = 1796564442_000_000_000  # 2026-12-06T13:40:42Z


def test_each_kind_of_line_and_nothing_else() -> None:
    stamps = [s for ln in LINES.splitlines() if (s := logparse.parse_line(ln))]
    assert [(s.kind, s.key) for s in stamps] == [
        ("slice", "hbmesh/grpc1"), ("slice", "hbmesh/grpc1"), ("push", ""),
        ("eds", "hbmesh-n1-grpc1.hbmesh"), ("eds", "hbmesh-n2-grpc1.hbmesh")]
    assert stamps[0].t_ns == T + 779_202_000  # microseconds kept
    assert logparse.proxy_id("n1", "grpc1", "hbmesh") == "hbmesh-n1-grpc1.hbmesh"


def _trial(tmp_path: Path, t2_ns: int) -> list[dict[str, object]]:
    log = tmp_path / "istiod.log"
    log.write_text("")
    src = IstiodLog(log, "hbmesh", ["n1", "n2"], "istio")
    log.write_text(LINES)
    ref = TrialRef("r", 3, "grpc1", "scale-up", "iptables", "add")
    t2 = row(ref, Ev.SLICE_READY, t2_ns, source="api-watch", pod="p", pod_ip="10.244.0.7")
    return [dict(r) for r in src.events_for(ref, [t2])]


def test_the_slice_event_nearest_the_harnesss_is_the_trials(tmp_path: Path) -> None:
    """Two slice events 27 ms apart (the pod's IP, then its readiness): the harness saw the
    slice at .805; the nearer one (.8066) is M1, the earlier one only a candidate."""
    rows = _trial(tmp_path, T + 805_000_000)
    by = {(r["event"], r["node"]): r for r in rows}
    assert by[(Ev.MESH_PATH, "")]["detail"] == json.dumps({"mesh": "istio"})
    m1 = by[(Ev.MESH_SLICE_SEEN, "")]
    assert m1["t_ns"] == T + 806_570_000
    assert json.loads(str(m1["detail"]))["candidates_ms"] == [-25.798, 1.57]
    assert by[(Ev.MESH_PUSH, "")]["t_ns"] == T + 907_195_000
    assert by[(Ev.EDS_SENT, "n1")]["t_ns"] == T + 909_012_000
    assert by[(Ev.EDS_SENT, "n2")]["t_ns"] == T + 911_012_000
    assert all(r["resolution_ns"] == (2_000_000 if r["event"] == Ev.EDS_SENT else 1_000)
               for r in rows if r["event"] not in (Ev.MESH_PATH, Ev.MESH_CONTROL))


def test_no_slice_event_near_the_trial_leaves_only_the_markers(tmp_path: Path) -> None:
    rows = _trial(tmp_path, T + 5_000_000_000)
    assert [r["event"] for r in rows] == [Ev.MESH_PATH, Ev.MESH_CONTROL]


def test_a_clusters_own_istiod_gives_the_path_marker_only() -> None:
    """run --kubeconfig --mesh istio: istiod's log is not read; the client's hops are
    derived (MESH_PATH), the control plane's are not (no MESH_CONTROL)."""
    src = IstiodLog(None, "hbmesh", ["n1"], "istio")
    ref = TrialRef("r", 3, "grpc1", "scale-up", "iptables", "add")
    t2 = row(ref, Ev.SLICE_READY, T, source="api-watch", pod="p", pod_ip="10.244.0.7")
    assert [r["event"] for r in src.events_for(ref, [t2])] == [Ev.MESH_PATH]


def test_control_plane_hops_need_their_marker() -> None:
    """The same client-side events with and without MESH_CONTROL: with it, the control
    plane's hops are there (censored: no M1-M3 given); without it, absent, not censored;
    the client's hops are there either way."""
    from bench.timeline import assemble, events_frame

    def trial(marker: bool) -> set[tuple[str, bool]]:
        ref = TrialRef("r", 1, "grpc1", "scale-up", "iptables", "add")
        rows = [row(ref, Ev.POD_READY, T, source="api-watch"),
                row(ref, Ev.SLICE_READY, T + 10**7, source="api-watch"),
                row(ref, Ev.MESH_PATH, T + 10**7, source="istiod-log"),
                row(ref, Ev.EDS_RECEIVED, T + 12 * 10**7, source="m", node="n1"),
                row(ref, Ev.MESH_FIRST, T + 13 * 10**7, source="m", node="n1")]
        if marker:
            rows.append(row(ref, Ev.MESH_CONTROL, T + 10**7, source="istiod-log"))
        hops = assemble(events_frame(rows))
        hops = hops[hops["node"] == "n1"]
        return set(zip(hops["hop"], hops["censored"], strict=True))

    without, with_ = trial(False), trial(True)
    assert ("ready_to_mesh_traffic", False) in without
    assert ("eds_to_mesh_traffic", False) in without
    assert not {h for h, _ in without} & {"slice_to_push", "push_to_eds", "push_to_sent"}
    assert {("slice_to_push", True), ("push_to_eds", True)} <= with_


def test_the_send_the_client_received_is_the_trials() -> None:
    """Two sends around the trial: the first push after M2 came 96 ms after the client had
    the endpoints (an earlier push carried them); M3 is the send nearest the receipt, and
    without a receipt the first at or after M2."""
    from bench.timeline import assemble, events_frame

    def push_to_sent(receipt: bool) -> float:
        ref = TrialRef("r", 1, "grpc1", "scale-up", "iptables", "add")
        ms = 10**6
        rows = [row(ref, Ev.SLICE_READY, T, source="api-watch"),
                row(ref, Ev.MESH_PATH, T, source="istiod-log"),
                row(ref, Ev.MESH_CONTROL, T, source="istiod-log"),
                row(ref, Ev.MESH_SLICE_SEEN, T + 1 * ms, source="istiod-log"),
                row(ref, Ev.MESH_PUSH, T + 101 * ms, source="istiod-log"),
                row(ref, Ev.EDS_SENT, T + 60 * ms, source="istiod-log", node="n1"),
                row(ref, Ev.EDS_SENT, T + 102 * ms, source="istiod-log", node="n1")]
        if receipt:
            rows.append(row(ref, Ev.EDS_RECEIVED, T + 62 * ms, source="m", node="n1"))
        h = assemble(events_frame(rows))
        return float(h[(h.hop == "slice_to_push") & (h.node == "n1")].latency_ms.iloc[0])

    assert push_to_sent(receipt=True) == 60.0
    assert push_to_sent(receipt=False) == 102.0
