"""Send requests to Service ClusterIPs on a schedule, each over a NEW TCP connection.

A kept-alive connection would stay on its first backend and never see new rules, so
every request is a fresh connect (conntrack NEW, DNAT decided now). Connections are
non-blocking and overlap: a black-holed SYN does not stall the schedule. The prober
records state, not requests: per (target, pod) the first and last answer and a count,
and runs of consecutive failures — enough for T5/R5 and the black-hole window without
an event per request.

A new connection every few milliseconds is most of a node agent's CPU, so a target is
probed at the fine interval only while it is *focused*, and at `idle_interval_s`
otherwise. A focus may start later than it is asked for (`delay_s`: the agent knows
when kube-proxy can next change the rules). Each first and last answer, and each
failure run's ends, carry the gap to the request before (after) them on the same
target: that is their real resolution, whatever the interval was at that moment.

Time comes from a `Clock` (schedule, request stamps, the wait for socket events), so the
state machine can be driven step by step on a fake clock in tests; the agent uses the
real one.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.agent.connhist import ConnectHistogram

_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
_ERR, _HUP, _RDHUP = select.EPOLLERR, select.EPOLLHUP, select.EPOLLRDHUP
_MASK = _IN | _OUT | _RDHUP | select.EPOLLET  # one registration per connection
_READ = 4096


@dataclass(frozen=True)
class Clock:
    """Where the prober reads time and waits. `monotonic` (seconds) schedules requests,
    `time_ns` stamps them, `wait(epoll, timeout_s)` blocks for socket events (or the
    timeout) and returns them."""

    monotonic: Callable[[], float] = time.monotonic
    time_ns: Callable[[], int] = time.time_ns
    wait: Callable[[select.epoll, float], list[tuple[int, int]]] = select.epoll.poll


REAL_CLOCK = Clock()


@dataclass
class Target:
    name: str
    ip: str
    port: int
    path: str = "/hostname"


#: a connect this slow had its first SYN lost and retransmitted (Linux's initial RTO is
#: 1 s): the answer reached the pod through rules that changed after the send time, so
#: taking it as an answer at the send time would date the change too early (a restart's
#: first answer before its rules were back); it counts as a failed request
SYN_RETRANSMIT_NS = 900_000_000


class _Conn:
    """One request in flight. `prev_ns`/`next_ns`: send times of its neighbours on the
    same target (0 while unknown)."""

    __slots__ = ("sock", "sched", "t_ns", "deadline", "buf", "sent", "prev_ns", "next_ns",
                 "pc_ns")

    def __init__(self, sock: socket.socket, sched: _Sched, t_ns: int, deadline: float,
                 prev_ns: int) -> None:
        self.sock, self.sched, self.t_ns, self.deadline = sock, sched, t_ns, deadline
        self.buf = b""
        self.sent = False
        self.prev_ns = prev_ns
        self.next_ns = 0
        self.pc_ns = 0  # perf_counter_ns() just before connect(): the connect time's start


class _Sched:
    """A target's schedule: when its next request is due and until when it is focused."""

    __slots__ = ("target", "addr", "request", "next_at", "focus_from", "focus_until",
                 "last")

    def __init__(self, target: Target) -> None:
        self.target = target
        self.addr = (target.ip, target.port)
        self.request = f"GET {target.path} HTTP/1.0\r\nHost: {target.ip}\r\n\r\n".encode()
        self.next_at = 0.0
        self.focus_from = 0.0
        self.focus_until = 0.0
        self.last: _Conn | None = None


@dataclass
class PodSeen:
    first_ns: int
    last_ns: int
    count: int = 1
    first_gap_ns: int = 0          # first answer minus the request before it (0: none)
    last_conn: _Conn | None = None  # the last answer's request, for the gap after it


@dataclass
class FailRun:
    first_ns: int
    last_ns: int
    count: int
    reasons: dict[str, int] = field(default_factory=dict)
    first_gap_ns: int = 0
    last_conn: _Conn | None = None

    def report(self) -> dict[str, object]:
        return {"first_ns": self.first_ns, "last_ns": self.last_ns, "count": self.count,
                "reasons": dict(self.reasons), "first_gap_ns": self.first_gap_ns,
                "last_gap_ns": _gap_after(self.last_conn)}


def _gap_after(c: _Conn | None) -> int:
    return c.next_ns - c.t_ns if c is not None and c.next_ns else 0


class Prober:
    """One thread, one epoll, bounded by `max_requests` and `max_seconds` per arming."""

    def __init__(self, interval_s: float = 0.005, idle_interval_s: float = 0.1,
                 timeout_s: float = 1.0, max_inflight: int = 256,
                 clock: Clock = REAL_CLOCK, tick: Callable[[], None] | None = None,
                 tick_s: float = 0.005) -> None:
        self.clock = clock
        # called once per `tick_s` while a target is focused or its focus waits to begin
        # (the rule watcher's generation question: one wakeup for both)
        self.tick, self.tick_s = tick, tick_s
        self.interval_s = interval_s
        self.idle_interval_s = idle_interval_s
        self.timeout_s = timeout_s
        self.max_inflight = max_inflight
        self.lock = threading.Lock()
        self._scheds: dict[str, _Sched] = {}
        self._active: list[_Sched] = []
        self.pods: dict[str, dict[str, PodSeen]] = {}
        self._dirty: set[tuple[str, str]] = set()     # changed since the last take()
        self._gap_open: set[tuple[str, str]] = set()  # last answer's next request unknown
        self.fail_runs: dict[str, list[FailRun]] = {}
        self._open_fail: dict[str, FailRun | None] = {}
        self.requests = 0
        self.connect = ConnectHistogram()  # connect() to established, per target
        self.focused_s = 0.0  # wall seconds from each pass with a target focused to the next
        self._budget_requests = 0
        self._budget_until = 0.0
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- control -----------------------------------------------------------------
    def arm(self, targets: list[Target], max_requests: int, max_seconds: float,
            start: bool = True) -> None:
        """Probe `targets` (idle until focused) within the budget. `start=False` leaves
        the loop to the caller (`Loop.step`, tests on a fake clock)."""
        with self.lock:
            active = []
            for t in targets:
                s = self._scheds.get(t.name)
                if s is None or s.target != t:
                    s = self._scheds[t.name] = _Sched(t)
                active.append(s)
                self.pods.setdefault(t.name, {})
                self.fail_runs.setdefault(t.name, [])
                self._open_fail.setdefault(t.name, None)
            self._active = active
            self._budget_requests = max_requests
            self._budget_until = self.clock.monotonic() + max_seconds
        if self._thread is None and start:
            self._thread = threading.Thread(target=self._run, daemon=True, name="prober")
            self._thread.start()
        self._wake()

    def focus(self, target: str, seconds: float, delay_s: float = 0.0) -> None:
        """Probe `target` at the fine interval for up to `seconds`, from `delay_s` on."""
        s = self._scheds.get(target)
        if s is None:
            raise KeyError(target)
        start = self.clock.monotonic() + max(0.0, delay_s)
        s.focus_from, s.focus_until = start, start + max(0.0, seconds)
        s.next_at = min(s.next_at, start)
        self._wake()

    def unfocus(self, target: str) -> None:
        if (s := self._scheds.get(target)) is not None:
            s.focus_from = s.focus_until = 0.0

    def focused(self) -> bool:
        """Some target is probed at the fine interval right now."""
        now = self.clock.monotonic()
        return any(s.focus_from <= now < s.focus_until for s in self._active)

    def watched(self, now: float) -> bool:
        """Some target is focused at `now`, or its focus waits to begin."""
        return any(now < s.focus_until and s.focus_from < s.focus_until
                   for s in self._active)

    def waiting(self) -> list[str]:
        """Targets whose focus was asked for but has not started yet."""
        now = self.clock.monotonic()
        return [s.target.name for s in self._active if now < s.focus_from < s.focus_until]

    def disarm(self) -> None:
        with self.lock:
            self._active = []
            self._budget_requests = 0

    def stop(self) -> None:
        self.disarm()
        self._stop.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def _wake(self) -> None:
        try:
            os.eventfd_write(self._wake_fd, 1)
        except BlockingIOError:
            pass  # already pending

    def take(self) -> dict[str, object]:
        """Per-pod answers changed since the last take (first and last answer, count, and
        the gaps to the neighbouring requests), failure runs (drained), the open run."""
        with self.lock:
            pods: dict[str, dict[str, dict[str, int]]] = {}
            still_open = set()
            for key in self._dirty | self._gap_open:
                target, pod = key
                s = self.pods.get(target, {}).get(pod)
                if s is None:
                    continue
                gap = _gap_after(s.last_conn)
                if not gap:
                    still_open.add(key)
                pods.setdefault(target, {})[pod] = {
                    "first_ns": s.first_ns, "last_ns": s.last_ns, "count": s.count,
                    "first_gap_ns": s.first_gap_ns, "last_gap_ns": gap}
            self._dirty.clear()
            self._gap_open = still_open
            runs = {t: [r.report() for r in rs] for t, rs in self.fail_runs.items() if rs}
            for t in self.fail_runs:
                self.fail_runs[t] = []
            open_runs = {t: r.report() for t, r in self._open_fail.items() if r}
        return {"pods": pods, "fail_runs": runs, "open_fail": open_runs,
                "requests": self.requests, "focused_s": round(self.focused_s, 3)}

    def forget_pod(self, target: str, pod: str) -> None:
        """Start a pod's record afresh: its next answer is a new first answer (restarts)."""
        with self.lock:
            self.pods.get(target, {}).pop(pod, None)
            self._dirty.discard((target, pod))
            self._gap_open.discard((target, pod))

    # --- recording -----------------------------------------------------------------
    def _answer(self, c: _Conn, pod: str) -> None:
        name = c.sched.target.name
        with self.lock:
            seen = self.pods.setdefault(name, {})
            s = seen.get(pod)
            if s is None:
                seen[pod] = PodSeen(c.t_ns, c.t_ns, 1,
                                    c.t_ns - c.prev_ns if c.prev_ns else 0, c)
            else:
                if c.t_ns < s.first_ns:  # overlapping requests can answer out of order
                    s.first_ns = c.t_ns
                    s.first_gap_ns = c.t_ns - c.prev_ns if c.prev_ns else 0
                if c.t_ns >= s.last_ns:
                    s.last_ns, s.last_conn = c.t_ns, c
                s.count += 1
            self._dirty.add((name, pod))
            run = self._open_fail.get(name)
            if run is not None:
                self.fail_runs.setdefault(name, []).append(run)
                self._open_fail[name] = None

    def _failure(self, c: _Conn, reason: str) -> None:
        name = c.sched.target.name
        with self.lock:
            run = self._open_fail.get(name)
            if run is None:
                run = FailRun(c.t_ns, c.t_ns, 0, last_conn=c)
                run.first_gap_ns = c.t_ns - c.prev_ns if c.prev_ns else 0
                self._open_fail[name] = run
            if c.t_ns < run.first_ns:
                run.first_ns = c.t_ns
                run.first_gap_ns = c.t_ns - c.prev_ns if c.prev_ns else 0
            if c.t_ns >= run.last_ns:
                run.last_ns, run.last_conn = c.t_ns, c
            run.count += 1
            run.reasons[reason] = run.reasons.get(reason, 0) + 1

    # --- the loop ------------------------------------------------------------------
    def _start(self, ep: select.epoll, conns: dict[int, _Conn], s: _Sched, now: float
               ) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        t_ns = self.clock.time_ns()
        prev = s.last
        c = _Conn(sock, s, t_ns, now + self.timeout_s, prev.t_ns if prev else 0)
        if prev is not None:
            prev.next_ns = t_ns
        s.last = c
        self.requests += 1
        c.pc_ns = time.perf_counter_ns()
        err = sock.connect_ex(s.addr)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self._failure(c, errno.errorcode.get(err, str(err)))
            return
        if err == 0:  # established at once: no wait for the handshake
            self.connect.observe(s.target.name, time.perf_counter_ns() - c.pc_ns)
        fd = sock.fileno()
        conns[fd] = c
        ep.register(fd, _MASK)

    def _event(self, conns: dict[int, _Conn], fd: int, ev: int, pc_ns: int = 0) -> None:
        """One socket event; `pc_ns`: perf_counter_ns() when the wait returned it (the
        connection was established by then), 0 for now."""
        c = conns.get(fd)
        if c is None:
            return
        sock = c.sock
        if ev & _ERR or (ev & _HUP and not c.sent):
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            self._finish(conns, fd, c)
            self._failure(c, errno.errorcode.get(err, str(err)) if err else "hangup")
            return
        if not c.sent:
            if not ev & _OUT:
                return
            took = (pc_ns or time.perf_counter_ns()) - c.pc_ns
            if took >= SYN_RETRANSMIT_NS:  # its first SYN was lost: a late answer
                self._finish(conns, fd, c)
                self._failure(c, "syn-retransmit")
                return
            self.connect.observe(c.sched.target.name, took)
            try:
                sock.send(c.sched.request)
            except OSError as exc:
                self._finish(conns, fd, c)
                self._failure(c, errno.errorcode.get(exc.errno or 0, "send"))
                return
            c.sent = True
        eof = bool(ev & (_RDHUP | _HUP))
        if ev & _IN or eof:
            try:
                while True:  # edge-triggered: take everything that is there
                    data = sock.recv(_READ)
                    c.buf += data
                    if len(data) < _READ:
                        eof = eof or not data
                        break
            except BlockingIOError:
                pass
            except OSError as exc:
                self._finish(conns, fd, c)
                self._failure(c, errno.errorcode.get(exc.errno or 0, "recv"))
                return
        if not eof:
            return
        self._finish(conns, fd, c)
        head, _, body = c.buf.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.") and head[9:12] == b"200" and body.strip():
            self._answer(c, body.strip().decode(errors="replace"))
        else:
            self._failure(c, "bad-response")

    @staticmethod
    def _finish(conns: dict[int, _Conn], fd: int, c: _Conn) -> None:
        del conns[fd]
        c.sock.close()  # closing the last reference also leaves the epoll set

    def _run(self) -> None:
        loop = Loop(self)
        while not self._stop.is_set():
            loop.step()
        loop.close()

    def loop(self) -> Loop:
        """The probing loop, for a caller that drives it itself (after `arm(start=False)`)."""
        return Loop(self)


class Loop:
    """The prober's one thread: start the requests that are due, wait for socket events
    (at most until the next request is due), time out the stale ones. One `step` is one
    pass."""

    def __init__(self, prober: Prober) -> None:
        self.p = prober
        self.ep = select.epoll()
        self.ep.register(prober._wake_fd, _IN)
        self.conns: dict[int, _Conn] = {}
        self.next_sweep = self.last = prober.clock.monotonic()
        self.next_tick = 0.0
        self.was_focused = False  # the previous pass found a target focused

    def step(self) -> None:
        p, ep, conns, clock = self.p, self.ep, self.conns, self.p.clock
        now = clock.monotonic()
        scheds = p._active
        active = bool(scheds) and p._budget_requests > 0 and now < p._budget_until
        timeout = 0.5
        focused = False
        if self.was_focused:  # from a focused pass to this one: wall time focused
            p.focused_s += now - self.last
        if active:
            for s in scheds:
                fine = s.focus_from <= now < s.focus_until
                focused = focused or fine
                if now >= s.next_at and len(conns) < p.max_inflight:
                    p._start(ep, conns, s, now)
                    p._budget_requests -= 1
                    step = p.interval_s if fine else p.idle_interval_s
                    nxt = s.next_at + step
                    if nxt < now:  # fell behind: do not burst to catch up
                        nxt = now + step
                    if now < s.focus_from < nxt:  # a focus starts before that
                        nxt = s.focus_from
                    s.next_at = nxt
                timeout = min(timeout, s.next_at - now)
            timeout = self._tick(now, timeout)
        elif conns:
            timeout = 0.05
        self.last, self.was_focused = now, focused
        events = clock.wait(ep, max(0.0, min(timeout, 0.05 if conns else timeout)))
        pc_ns = time.perf_counter_ns()  # when these events were known: connect times end
        for fd, ev in events:
            if fd == p._wake_fd:
                try:
                    os.eventfd_read(p._wake_fd)
                except BlockingIOError:
                    pass
                continue
            p._event(conns, fd, ev, pc_ns)
        now = clock.monotonic()
        if conns and now >= self.next_sweep:  # timeouts are coarse (1 s): sweep every 20 ms
            self.next_sweep = now + 0.02
            for fd, c in list(conns.items()):
                if now > c.deadline:
                    p._finish(conns, fd, c)
                    p._failure(c, "timeout")

    def _tick(self, now: float, timeout: float) -> float:
        """Run the prober's tick when due while a focus waits or is on; the wait's
        timeout, shortened to the next one."""
        p = self.p
        if p.tick is None or not p.watched(now):
            return timeout
        if now >= self.next_tick:
            p.tick()
            nxt = self.next_tick + p.tick_s
            self.next_tick = nxt if nxt > now else now + p.tick_s
        return min(timeout, self.next_tick - now)

    def close(self) -> None:
        for c in self.conns.values():  # stopped with requests in flight: not recorded
            c.sock.close()
        self.ep.close()
