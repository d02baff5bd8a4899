"""Talk to the node agents and keep what they observed, per node, on the harness side.

The agents report state changes (rule IPs appearing/leaving, kube-proxy syncs, the first
and last answer from each pod, runs of failed requests). A collector thread drains them
every `poll_s`; the scenario asks this store whether a trial is done and turns the
observations inside a trial's window into EventRows. Clocks: each record carries its
node's clock and the estimated offset to the harness clock.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.results.schema import Ev, EventRow
from bench.sources.base import TrialRef, row
from bench.sources.registry import SourceContext, register


class Transport(Protocol):
    node: str

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                timeout: float = 5.0) -> Any: ...


@dataclass(frozen=True)
class ClockOffset:
    offset_ns: int       # add to a node timestamp to get harness time
    uncertainty_ns: int  # half the best round trip
    samples: int


def estimate_offset(t: Transport, samples: int = 15) -> ClockOffset:
    """NTP-style round trips: the best (shortest) exchange bounds the offset tightest."""
    best: tuple[int, int] | None = None
    for _ in range(samples):
        t0 = time.time_ns()
        remote = int(t.request("GET", "/clock")["t_ns"])
        t1 = time.time_ns()
        rtt = t1 - t0
        offset = (t0 + t1) // 2 - remote
        if best is None or rtt < best[0]:
            best = (rtt, offset)
    assert best is not None
    return ClockOffset(offset_ns=best[1], uncertainty_ns=best[0] // 2, samples=samples)


@dataclass
class NodeLog:
    """Everything one node's agent reported during the run."""

    node: str
    offset: ClockOffset
    rule_changes: list[dict[str, Any]] = field(default_factory=list)
    syncs: list[dict[str, Any]] = field(default_factory=list)
    pods: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    fail_runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    open_fail: dict[str, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    cpu: list[tuple[float, float]] = field(default_factory=list)  # (wall_s, cpu_s)


class AgentStore:
    def __init__(self, transports: list[Transport], poll_s: float = 0.1,
                 idle_poll_s: float = 0.5) -> None:
        self.transports = transports
        self.poll_s = poll_s  # while some target is focused; idle_poll_s otherwise
        self.idle_poll_s = idle_poll_s
        self._focused: set[str] = set()
        self._fast_until = 0.0  # the fast rate also runs on briefly after a focus ends
        self._poke = threading.Event()
        # focus must reach every node at once: one request per node in parallel
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(16, len(transports))),
                                        thread_name_prefix="agent-focus")
        self.lock = threading.Lock()
        self._collect_lock = threading.Lock()
        self.nodes: dict[str, NodeLog] = {}
        self.errors: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        for t in self.transports:
            self.nodes[t.node] = NodeLog(t.node, estimate_offset(t))
            self.errors[t.node] = 0
        self.collect_once()
        self._thread = threading.Thread(target=self._run, daemon=True, name="agent-collect")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._poke.set()
        if self._thread:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def events_for(self, ref: TrialRef, batch: list[EventRow]) -> list[EventRow]:
        return []  # a trial's rows come from trial_events, when the lane ends the trial

    def arm(self, targets: list[dict[str, Any]], interval_ms: float, max_seconds: float,
            max_requests: int, idle_interval_ms: float = 100.0) -> None:
        for t in self.transports:
            t.request("POST", "/arm", {"targets": targets, "interval_ms": interval_ms,
                                       "idle_interval_ms": idle_interval_ms,
                                       "max_seconds": max_seconds,
                                       "max_requests": max_requests})

    def focus(self, target: str, seconds: float, after_sync: bool = False) -> None:
        """Every agent probes `target` at the fine interval for up to `seconds` (0: back
        to the idle interval); with `after_sync`, from when its kube-proxy may next change
        the rules. Best effort: a node that misses it probes at the idle interval, and
        its answers then carry that coarser resolution."""
        def one(t: Transport) -> None:
            try:
                t.request("POST", "/focus", {"target": target, "seconds": seconds,
                                             "after_sync": after_sync}, timeout=2.0)
            except Exception:  # noqa: BLE001 - counted, not fatal
                with self.lock:
                    self.errors[t.node] = self.errors.get(t.node, 0) + 1

        for f in [self._pool.submit(one, t) for t in self.transports]:
            f.result()
        with self.lock:
            if seconds > 0:
                self._focused.add(target)
            else:
                self._focused.discard(target)
                self._fast_until = time.monotonic() + 1.0  # the trial's end still waits
        self._poke.set()

    def forget(self, target: str, pod: str) -> None:
        """Drop what every agent (and this store) knows of a pod's answers."""
        for t in self.transports:
            t.request("POST", "/forget", {"target": target, "pod": pod})
        with self.lock:
            for log in self.nodes.values():
                log.pods.get(target, {}).pop(pod, None)

    def disarm(self) -> None:
        for t in self.transports:
            try:
                t.request("POST", "/disarm", {})
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass

    def kube_proxy_metrics(self) -> dict[str, str]:
        out = {}
        for t in self.transports:
            try:
                out[t.node] = t.request("GET", "/kube-proxy-metrics")
            except Exception as exc:  # noqa: BLE001 - recorded, not fatal
                out[t.node] = f"# error: {exc}"
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            fast = self._focused or time.monotonic() < self._fast_until
            self._poke.wait(self.poll_s if fast else self.idle_poll_s)
            self._poke.clear()
            if not self._stop.is_set():
                self.collect_once()

    def collect_once(self) -> None:
        """Drain every agent once. Lanes and the collector thread both call this; one at a
        time, so an older snapshot of an agent's answers never lands after a newer one."""
        with self._collect_lock:
            self._collect()

    def _collect(self) -> None:
        for t in self.transports:
            try:
                data = t.request("GET", "/collect")
            except Exception:  # noqa: BLE001 - counted; the trial times out if it persists
                self.errors[t.node] += 1
                continue
            with self.lock:
                log = self.nodes[t.node]
                log.rule_changes.extend(data["rule_changes"])
                log.syncs.extend(data["syncs"])
                for target, changed in data["probe"]["pods"].items():  # changes only
                    log.pods.setdefault(target, {}).update(changed)
                for target, runs in data["probe"]["fail_runs"].items():
                    log.fail_runs.setdefault(target, []).extend(runs)
                log.open_fail = data["probe"]["open_fail"]
                log.info = {k: data.get(k) for k in (
                    "rule_mode", "rule_method", "rule_resolution_ns", "probe_interval_ns",
                    "probe_idle_interval_ns", "sync_poll_interval_ns",
                    "kube_proxy_min_sync_s", "early_rule_changes")}
                log.info["probe_focused_s"] = data["probe"].get("focused_s")
                log.cpu.append((data["wall_s"], data["cpu_s"]))

    # --- queries used by the scenario ---------------------------------------------------
    def first_answer(self, node: str, target: str, pod: str) -> int | None:
        with self.lock:
            seen = self.nodes[node].pods.get(target, {}).get(pod)
            return seen["first_ns"] if seen else None

    def last_answer(self, node: str, target: str, pod: str) -> int | None:
        with self.lock:
            seen = self.nodes[node].pods.get(target, {}).get(pod)
            return seen["last_ns"] if seen else None

    def rule_change(self, node: str, ip: str, present: bool, since_ns: int) -> int | None:
        with self.lock:
            off = self.nodes[node].offset.offset_ns
            for c in self.nodes[node].rule_changes:
                if c["ip"] == ip and c["present"] == present and c["t_ns"] + off >= since_ns:
                    return int(c["t_ns"])
        return None

    def synced_after(self, node: str, ip: str, present: bool, since_ns: int) -> bool:
        """A kube-proxy sync has been seen ending after this node's rule change for `ip`
        (or the rule change has not been seen at all, when there is nothing to wait for)."""
        t = self.rule_change(node, ip, present, since_ns)
        if t is None:
            return True
        with self.lock:
            return any(s["t_ns"] >= t for s in self.nodes[node].syncs)

    def cpu_fraction(self, node: str) -> float:
        with self.lock:
            cpu = self.nodes[node].cpu
            if len(cpu) < 2 or cpu[-1][0] <= cpu[0][0]:
                return float("nan")
            return (cpu[-1][1] - cpu[0][1]) / (cpu[-1][0] - cpu[0][0])

    # --- events of one trial ------------------------------------------------------------
    def trial_events(self, ref: TrialRef, target: str, pod: str, ip: str, start_ns: int,
                     end_ns: int) -> list[EventRow]:
        """What every node saw of this pod between start and end (harness clock)."""
        rows: list[EventRow] = []
        with self.lock:
            for node, log in self.nodes.items():
                off, unc = log.offset.offset_ns, log.offset.uncertainty_ns
                common: dict[str, Any] = dict(node=node, clock=f"node:{node}", offset_ns=off,
                                              uncertainty_ns=unc, pod=pod, pod_ip=ip)
                res_rule = int(log.info.get("rule_resolution_ns", 0))
                res_probe = int(log.info.get("probe_interval_ns", 0))

                def inside(t: int, off: int = off) -> bool:
                    return start_ns <= t + off <= end_ns

                for s in log.syncs:
                    if inside(s["t_ns"]):
                        rows.append(row(ref, Ev.PROXY_SYNC, s["t_ns"], source="agent-metrics",
                                        resolution_ns=1_000_000, value=s["syncs"],
                                        detail={"seen_ns": s["seen_ns"]}, **common))
                want = ref.direction == "add"
                for c in log.rule_changes:
                    if c["ip"] == ip and c["present"] == want and inside(c["t_ns"]):
                        rows.append(row(ref, Ev.RULE_PRESENT if want else Ev.RULE_ABSENT,
                                        c["t_ns"], source="agent-rules", resolution_ns=res_rule,
                                        detail={"service": c["service"],
                                                "method": log.info.get("rule_method")},
                                        **common))
                        break
                seen = log.pods.get(target, {}).get(pod)
                # an answer's resolution: the gap to the request before (first answer) or
                # after it (last answer) on this target, fine or idle; the interval if unknown
                if seen and want and inside(seen["first_ns"]):
                    rows.append(row(ref, Ev.FIRST_SUCCESS, seen["first_ns"],
                                    source="agent-prober",
                                    resolution_ns=seen.get("first_gap_ns") or res_probe,
                                    value=seen["count"], **common))
                if seen and not want:
                    rows.append(row(ref, Ev.LAST_SUCCESS, seen["last_ns"],
                                    source="agent-prober",
                                    resolution_ns=seen.get("last_gap_ns") or res_probe,
                                    value=seen["count"], **common))
                runs = [r for r in log.fail_runs.get(target, []) if inside(r["first_ns"])]
                if (o := log.open_fail.get(target)) and inside(o["first_ns"]):
                    runs.append(o)
                if runs:
                    reasons: dict[str, int] = {}
                    for r in runs:
                        for k, v in r["reasons"].items():
                            reasons[k] = reasons.get(k, 0) + v
                    total = sum(r["count"] for r in runs)
                    first = min(runs, key=lambda r: r["first_ns"])
                    last = max(runs, key=lambda r: r["last_ns"])
                    rows.append(row(ref, Ev.FAIL_FIRST, first["first_ns"],
                                    source="agent-prober",
                                    resolution_ns=first.get("first_gap_ns") or res_probe,
                                    value=total, detail={"reasons": reasons}, **common))
                    rows.append(row(ref, Ev.FAIL_LAST, last["last_ns"],
                                    source="agent-prober",
                                    resolution_ns=last.get("last_gap_ns") or res_probe,
                                    value=total, detail={"runs": len(runs)}, **common))
        return rows

    def resolutions(self) -> dict[str, Any]:
        with self.lock:
            return {n: {**log.info, "clock_offset_ns": log.offset.offset_ns,
                        "clock_uncertainty_ns": log.offset.uncertainty_ns}
                    for n, log in self.nodes.items()}

    def offsets(self) -> dict[str, dict[str, int]]:
        with self.lock:
            return {n: {"offset_ns": log.offset.offset_ns,
                        "uncertainty_ns": log.offset.uncertainty_ns}
                    for n, log in self.nodes.items()}


def _open(ctx: SourceContext) -> AgentStore:
    return AgentStore(ctx.provider.start_agents(ctx.token, ctx.probe_interval_ms))


register("agents", _open)
