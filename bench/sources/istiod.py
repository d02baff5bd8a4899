"""The mesh's control plane, istiod, from its log: when it handled the trial's slice
(M1), when its debounce let the push go (M2), when it sent each node's client the
endpoints (M3[n]).

The log is read after each trial (like the audit log), from the size it had when the
mode began. For a trial, against the harness's slice stamp T2 (R2 for a removal):
- M1 is the `Handle EDS endpoint` line of the Service nearest T2, within SLACK either side:
  istiod watches the API server too and hears of the slice a few ms before or after the
  harness does (a negative hop then shows it). Not the first one from T2 - SLACK on: a new
  pod's slice changes twice close together (its IP in, not ready; then ready, 50-130 ms
  later when both readiness probes pass at once), and the first of the two is not the
  trial's. The other candidates are kept in the row's detail;
- M2 is the first debounce end at or after M1;
- M3[n]: every EDS push to node n's client of the Service from SLACK before M1 (or T2) to
  SEND_WINDOW after M2 (or T2); the timeline takes the one nearest the client's receipt
  (M4), else the first at or after M2. Mostly that is the first after M2, but a push that
  began just before istiod logged the slice event can carry the change (one trial in
  400 of the first 100-cycle run: the first after M2 came 96 ms after the client had it).
  It is logged after the stream's Send returned: up to ~2 ms after the client's receipt,
  its stated resolution.
Every trial also carries the MESH_PATH marker, and MESH_CONTROL when the log is read: the
timeline derives mesh hops (censored where a stamp is missing) only for trials with the
first, and the control-plane ones (to or from M1-M3) only with the second too. A cluster's
own istiod (`run --kubeconfig --mesh istio`) gives the first only. Local istiod shares
the harness's kernel clock; its stamps are microseconds.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

from bench.mesh.istio import logparse
from bench.results.schema import ADDING, Ev, EventRow
from bench.sources import logtail
from bench.sources.base import TrialRef, row
from bench.sources.registry import SourceContext, register

SLACK_NS = 200_000_000
SEND_WINDOW_NS = 1_000_000_000  # sends kept after the push (and T2), for the timeline
#: an EDS send is logged after the stream's Send returned: the client had it up to 1.6 ms
#: before the log line in 800 sends (the 100-cycle run of 2026-12-06)
SEND_RESOLUTION_NS = 2_000_000
LOG_RESOLUTION_NS = 1_000
SOURCE = "istiod-log"


class IstiodLog:
    """Follows istiod's log file; keeps the stamps of one namespace's Services."""

    def __init__(self, path: Path | None, namespace: str, nodes: list[str], mesh: str
                 ) -> None:
        self.path, self.namespace, self.nodes, self.mesh = path, namespace, nodes, mesh
        self.offset = path.stat().st_size if path is not None and path.exists() else 0
        self.slices: dict[str, list[int]] = {}  # "<ns>/<svc>" -> sorted stamps
        self.pushes: list[int] = []
        self.sends: dict[str, list[int]] = {}   # proxy id -> sorted stamps

    def start(self) -> None:
        pass  # read on demand

    def stop(self) -> None:
        pass

    def read_new(self) -> None:
        lines, self.offset = logtail.new_lines(self.path, self.offset)
        for line in lines:
            self.add(line.decode(errors="replace"))

    def add(self, line: str) -> None:
        s = logparse.parse_line(line)
        if s is None:
            return
        if s.kind == "slice":
            if s.key.startswith(f"{self.namespace}/"):
                bisect.insort(self.slices.setdefault(s.key, []), s.t_ns)
        elif s.kind == "push":
            bisect.insort(self.pushes, s.t_ns)
        else:
            bisect.insort(self.sends.setdefault(s.key, []), s.t_ns)

    def events_for(self, ref: TrialRef, batch: list[EventRow]) -> list[EventRow]:
        if ref.direction not in ("add", "remove"):
            return []
        self.read_new()
        slice_ev = Ev.SLICE_READY if ref.direction in ADDING else Ev.SLICE_UNREADY
        t2 = next((r for r in batch if r["event"] == slice_ev and r["service"] == ref.service
                   and r["trial"] == ref.trial), None)
        t_mark = t2["t_ns"] if t2 else min((r["t_ns"] for r in batch), default=0)
        out = [row(ref, Ev.MESH_PATH, t_mark, source=SOURCE, detail={"mesh": self.mesh})]
        if self.path is None:  # the cluster's own istiod: its log is not read, no M1-M3
            return out
        out.append(row(ref, Ev.MESH_CONTROL, t_mark, source=SOURCE,
                       detail={"log": str(self.path)}))
        if t2 is None:
            return out
        pod, ip = t2["pod"], t2["pod_ip"]

        def stamp(event: str, t: int, node: str = "", **detail: Any) -> EventRow:
            kw: dict[str, Any] = {"node": node} if node else {}
            res = SEND_RESOLUTION_NS if event == Ev.EDS_SENT else LOG_RESOLUTION_NS
            return row(ref, event, t, source=SOURCE, resolution_ns=res,
                       pod=pod, pod_ip=ip, detail=detail or None, **kw)

        t = t2["t_ns"]
        near = [s for s in self.slices.get(f"{self.namespace}/{ref.service}", [])
                if abs(s - t) <= SLACK_NS]
        if not near:
            return out
        m1 = min(near, key=lambda s: abs(s - t))
        out.append(stamp(Ev.MESH_SLICE_SEEN, m1, candidates_ms=[
            round((s - t) / 1e6, 3) for s in near]))
        m2 = _first_at(self.pushes, m1)
        if m2 is None:
            return out
        out.append(stamp(Ev.MESH_PUSH, m2))
        for node in self.nodes:  # every send around the trial: the timeline takes the one
            pid = logparse.proxy_id(node, ref.service, self.namespace)  # the client got
            lo, hi = min(m1, t) - SLACK_NS, max(m2, t) + SEND_WINDOW_NS
            for m3 in self.sends.get(pid, []):
                if lo <= m3 <= hi:
                    out.append(stamp(Ev.EDS_SENT, m3, node, proxy=pid,
                                     after_push=m3 >= m2))
        return out


def _first_at(stamps: list[int], t: int) -> int | None:
    i = bisect.bisect_left(stamps, t)
    return stamps[i] if i < len(stamps) else None


def _open(ctx: SourceContext) -> IstiodLog | None:
    """With the local cluster's istiod: its log. With a cluster's own istiod (kubeconfig):
    no log, the markers only, so the client-side mesh hops are derived."""
    mesh = getattr(ctx.provider, "mesh", lambda: None)()
    if not mesh or mesh.get("name") != "istio":
        return None
    log = Path(mesh["log"]) if mesh.get("log") else None
    return IstiodLog(log, ctx.namespace, ctx.provider.nodes(), mesh["name"])


register("istiod", _open)
