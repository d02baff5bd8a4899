"""Send requests to Service ClusterIPs at a fixed interval, each over a NEW TCP connection.

A kept-alive connection would stay on its first backend and never see new rules, so
every request is a fresh connect (conntrack NEW, DNAT decided now). Connections are
non-blocking and overlap: a black-holed SYN does not stall the schedule. The prober
records state, not requests: per (target, pod) the first and last answer and a count,
and runs of consecutive failures — enough for T5/R5 and the black-hole window without
an event per request.
"""

from __future__ import annotations

import errno
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Target:
    name: str
    ip: str
    port: int
    path: str = "/hostname"


@dataclass
class PodSeen:
    first_ns: int
    last_ns: int
    count: int = 1


@dataclass
class FailRun:
    first_ns: int
    last_ns: int
    count: int
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class _Conn:
    target: Target
    t_ns: int
    deadline: float
    buf: bytearray = field(default_factory=bytearray)
    sent: bool = False


class Prober:
    """One thread, one selector, bounded by `max_requests` and `max_seconds` per arming."""

    def __init__(self, interval_s: float = 0.005, timeout_s: float = 1.0,
                 max_inflight: int = 256) -> None:
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.max_inflight = max_inflight
        self.lock = threading.Lock()
        self.targets: list[Target] = []
        self.pods: dict[str, dict[str, PodSeen]] = {}
        self.fail_runs: dict[str, list[FailRun]] = {}
        self._open_fail: dict[str, FailRun | None] = {}
        self.requests = 0
        self._budget_requests = 0
        self._budget_until = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- control -----------------------------------------------------------------
    def arm(self, targets: list[Target], max_requests: int, max_seconds: float) -> None:
        with self.lock:
            self.targets = list(targets)
            for t in targets:
                self.pods.setdefault(t.name, {})
                self.fail_runs.setdefault(t.name, [])
                self._open_fail.setdefault(t.name, None)
            self._budget_requests = max_requests
            self._budget_until = time.monotonic() + max_seconds
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="prober")
            self._thread.start()
        self._wake.set()

    def disarm(self) -> None:
        with self.lock:
            self.targets = []
            self._budget_requests = 0

    def stop(self) -> None:
        self.disarm()
        self._stop.set()
        self._wake.set()

    def take(self) -> dict[str, object]:
        """Snapshot of per-pod answers (cumulative) and failure runs (drained)."""
        with self.lock:
            pods = {t: {p: vars(s).copy() for p, s in m.items()} for t, m in self.pods.items()}
            runs = {t: [vars(r).copy() for r in rs] for t, rs in self.fail_runs.items() if rs}
            for t in self.fail_runs:
                self.fail_runs[t] = []
            open_runs = {t: vars(r).copy() for t, r in self._open_fail.items() if r}
        return {"pods": pods, "fail_runs": runs, "open_fail": open_runs,
                "requests": self.requests}

    def forget_pod(self, target: str, pod: str) -> None:
        """Start a pod's record afresh: its next answer is a new first answer (restarts)."""
        with self.lock:
            self.pods.get(target, {}).pop(pod, None)

    def forget(self, target: str) -> None:
        with self.lock:
            for d in (self.pods, self.fail_runs, self._open_fail):
                d.pop(target, None)  # type: ignore[attr-defined]

    # --- recording -----------------------------------------------------------------
    def _answer(self, c: _Conn, pod: str) -> None:
        with self.lock:
            seen = self.pods.setdefault(c.target.name, {})
            if pod in seen:
                s = seen[pod]
                s.first_ns, s.last_ns = min(s.first_ns, c.t_ns), max(s.last_ns, c.t_ns)
                s.count += 1
            else:
                seen[pod] = PodSeen(c.t_ns, c.t_ns)
            run = self._open_fail.get(c.target.name)
            if run is not None:
                self.fail_runs.setdefault(c.target.name, []).append(run)
                self._open_fail[c.target.name] = None

    def _failure(self, c: _Conn, reason: str) -> None:
        with self.lock:
            run = self._open_fail.get(c.target.name)
            if run is None:
                run = FailRun(c.t_ns, c.t_ns, 0)
                self._open_fail[c.target.name] = run
            run.first_ns, run.last_ns = min(run.first_ns, c.t_ns), max(run.last_ns, c.t_ns)
            run.count += 1
            run.reasons[reason] = run.reasons.get(reason, 0) + 1

    # --- the loop ------------------------------------------------------------------
    def _start(self, sel: selectors.BaseSelector, target: Target) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        c = _Conn(target, time.time_ns(), time.monotonic() + self.timeout_s)
        self.requests += 1
        err = sock.connect_ex((target.ip, target.port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self._failure(c, errno.errorcode.get(err, str(err)))
            return
        sel.register(sock, selectors.EVENT_WRITE, c)

    def _event(self, sel: selectors.BaseSelector, sock: socket.socket, c: _Conn) -> None:
        if not c.sent:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._close(sel, sock)
                self._failure(c, errno.errorcode.get(err, str(err)))
                return
            req = f"GET {c.target.path} HTTP/1.0\r\nHost: {c.target.ip}\r\n\r\n".encode()
            try:
                sock.send(req)
            except OSError as exc:
                self._close(sel, sock)
                self._failure(c, errno.errorcode.get(exc.errno or 0, "send"))
                return
            c.sent = True
            sel.modify(sock, selectors.EVENT_READ, c)
            return
        try:
            data = sock.recv(4096)
        except OSError as exc:
            self._close(sel, sock)
            self._failure(c, errno.errorcode.get(exc.errno or 0, "recv"))
            return
        if data:
            c.buf += data
            return
        self._close(sel, sock)
        head, _, body = bytes(c.buf).partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.") and head[9:12] == b"200" and body.strip():
            self._answer(c, body.strip().decode(errors="replace"))
        else:
            self._failure(c, "bad-response")

    @staticmethod
    def _close(sel: selectors.BaseSelector, sock: socket.socket) -> None:
        sel.unregister(sock)
        sock.close()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        next_at = next_sweep = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            with self.lock:
                targets = list(self.targets)
                active = bool(targets) and self._budget_requests > 0 and now < self._budget_until
            if not active and not sel.get_map():
                self._wake.wait(0.5)
                self._wake.clear()
                next_at = time.monotonic()
                continue
            if active and now >= next_at and len(sel.get_map()) < self.max_inflight:
                for t in targets:  # one request per target per interval
                    self._start(sel, t)
                with self.lock:
                    self._budget_requests -= len(targets)
                next_at += self.interval_s
                if next_at < now:  # fell behind: do not burst to catch up
                    next_at = now + self.interval_s
            timeout = max(0.0, min(next_at - time.monotonic(), 0.05)) if active else 0.05
            for key, _ in sel.select(timeout):
                self._event(sel, key.fileobj, key.data)  # type: ignore[arg-type]
            now = time.monotonic()
            if now >= next_sweep:  # timeouts are coarse (1 s): sweep every 20 ms only
                next_sweep = now + 0.02
                for key in list(sel.get_map().values()):
                    c = key.data
                    if now > c.deadline:
                        self._close(sel, key.fileobj)  # type: ignore[arg-type]
                        self._failure(c, "timeout")
