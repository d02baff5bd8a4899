"""The agent's prober and kube-proxy parsers.

The prober's state machine (schedule, first and last answers, failure runs) runs on a fake
clock, step by step, against a real HTTP server on loopback: every request is a real
connection, but time moves only when the prober waits with nothing in flight, so the send
times and counts are exact. One short test runs the real thread on the real clock.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.agent import prober
from bench.agent.kpmetrics import min_sync_period, parse_go_duration, parse_sync
from bench.agent.prober import Clock, Loop, Prober, Target

MS = 1_000_000
EPOCH_NS = 1_700_000_000 * 1_000_000_000  # the fake wall clock's time_ns at monotonic 0
T0 = 100.0  # the fake monotonic clock's start


class _Pod:
    name = "pod-a"


@pytest.fixture()
def server() -> Iterator[tuple[int, type[_Pod]]]:
    pod = type("Pod", (_Pod,), {})

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = pod.name.encode()  # type: ignore[attr-defined]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    yield srv.server_address[1], pod
    srv.shutdown()
    srv.server_close()


class FakeTime:
    """A clock that moves only when the prober waits with no request in flight (then by
    the whole timeout it asked for). With requests in flight it waits for their real
    socket events, up to `real_wait_s` of real time, before moving on."""

    def __init__(self, real_wait_s: float = 5.0) -> None:
        self.now = T0
        self.real_wait_s = real_wait_s
        self.sends: list[int] = []  # every time_ns() the prober took: one per request
        self.loop: Loop | None = None

    def monotonic(self) -> float:
        return self.now

    def time_ns(self) -> int:
        t = EPOCH_NS + round(self.now * 1e9)
        self.sends.append(t)
        return t

    def wait(self, ep: select.epoll, timeout: float) -> list[tuple[int, int]]:
        events = ep.poll(0)
        if not events and self.loop is not None and self.loop.conns:
            events = ep.poll(self.real_wait_s)
        if not events:
            self.now += timeout
        return events

    def clock(self) -> Clock:
        return Clock(monotonic=self.monotonic, time_ns=self.time_ns, wait=self.wait)


def ns(t: float) -> int:
    """The fake stamp of monotonic time `t`."""
    return EPOCH_NS + round(t * 1e9)


def near(a: int, b: int) -> bool:
    return abs(a - b) < 1000  # float schedule arithmetic: exact to well under 1 µs


class Driven:
    """A prober on a fake clock, armed on one target, its loop stepped by the test."""

    def __init__(self, port: int, name: str = "svc", max_requests: int = 100_000,
                 real_wait_s: float = 5.0, timeout_s: float = 1.0) -> None:
        self.t = FakeTime(real_wait_s)
        self.p = Prober(interval_s=0.005, idle_interval_s=0.1, timeout_s=timeout_s,
                        clock=self.t.clock())
        self.p.arm([Target(name, "127.0.0.1", port)], max_requests=max_requests,
                   max_seconds=60, start=False)
        self.loop = self.t.loop = self.p.loop()

    def until(self, t: float, drain: bool = True) -> None:
        """Step the loop until the fake clock reaches `t` (and, with `drain`, nothing is
        left in flight)."""
        while self.t.now < t or (drain and self.loop.conns):
            self.loop.step()

    def sends_between(self, a: float, b: float) -> list[int]:
        return [x for x in self.t.sends if ns(a) <= x < ns(b)]

    def close(self) -> None:
        self.loop.close()


@contextmanager
def driven(port: int, **kw: object) -> Iterator[Driven]:
    d = Driven(port, **kw)  # type: ignore[arg-type]
    try:
        yield d
    finally:
        d.close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port  # type: ignore[no-any-return]


def test_idle_interval_until_focused_then_fine_then_idle(
        server: tuple[int, type[_Pod]]) -> None:
    port, _ = server
    with driven(port) as d:
        d.until(T0 + 1.05)
        idle = d.t.sends
        assert len(idle) == 11  # T0, T0+0.1, ... T0+1.0
        assert all(near(b - a, 100 * MS) for a, b in zip(idle, idle[1:]))
        focus_at = d.t.now
        d.p.focus("svc", 1.0025)  # 201 requests at 5 ms fit, the 202nd does not
        assert d.p.focused() and d.p.waiting() == []
        d.until(focus_at + 2.0)
        assert not d.p.focused()
        fine = d.sends_between(focus_at, focus_at + 1.0025)
        assert len(fine) == 201 and near(fine[0], ns(focus_at))
        assert all(near(b - a, 5 * MS) for a, b in zip(fine, fine[1:]))
        after = d.sends_between(focus_at + 1.0025, focus_at + 2.0)
        # the request due 5 ms after the last fine one is sent, then idle again
        assert near(after[0], fine[-1] + 5 * MS)
        assert all(near(b - a, 100 * MS) for a, b in zip(after, after[1:]))
        assert len(after) == 10
        assert abs(d.p.focused_s - 1.0) < 0.006, d.p.focused_s
        assert d.p.requests == len(d.t.sends)


def test_delayed_focus_waits_then_starts_on_time(server: tuple[int, type[_Pod]]) -> None:
    port, _ = server
    with driven(port) as d:
        d.until(T0 + 0.001)  # the first (idle) request went out at T0; now T0+0.1
        f = d.t.now
        d.p.focus("svc", 0.5025, delay_s=0.45)
        assert d.p.waiting() == ["svc"] and not d.p.focused()
        d.until(f + 0.3)
        assert d.p.waiting() == ["svc"] and not d.p.focused()
        d.until(f + 1.5)
        idle = d.sends_between(T0, f + 0.449)
        assert len(idle) == 6 and idle[0] == ns(T0)
        assert all(near(x, ns(f + k / 10)) for k, x in enumerate(idle[1:]))
        # not the idle grid's f+0.5: the focus starts when it was asked to
        fine = d.sends_between(f + 0.449, f + 0.9525)
        assert len(fine) == 101 and near(fine[0], ns(f + 0.45))
        assert all(near(b - a, 5 * MS) for a, b in zip(fine, fine[1:]))
        assert d.p.waiting() == [] and not d.p.focused()


def test_the_tick_runs_every_tick_s_while_a_focus_waits_or_is_on_and_never_idle(
        server: tuple[int, type[_Pod]]) -> None:
    """The rule watcher's generation question rides on the prober's passes: asked every
    5 ms from the moment a focus is asked for (its start may wait for kube-proxy's next
    sync) to its end, and not at all between trials (the agent's CPU)."""
    port, _ = server
    with driven(port) as d:
        ticks: list[float] = []
        d.p.tick, d.p.tick_s = (lambda: ticks.append(d.t.now)), 0.005
        d.until(T0 + 0.5)
        assert ticks == []  # idle: only the watcher's own 100 ms questions
        f = d.t.now
        d.p.focus("svc", 0.3, delay_s=0.2)
        d.until(f + 1.0)
        assert ticks and ticks[0] == pytest.approx(f, abs=1e-6)
        assert ticks[-1] < f + 0.5 and ticks[-1] > f + 0.5 - 0.0051
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        assert max(gaps) < 0.0051 and min(gaps) > 0.0049  # every 5 ms, no burst
        assert len(ticks) in (100, 101)  # 0.5 s at 5 ms; float sums land either side


def test_first_and_last_answers_carry_the_gap_to_their_neighbours(
        server: tuple[int, type[_Pod]]) -> None:
    port, pod = server
    with driven(port) as d:
        d.p.focus("svc", 5.0)
        d.until(T0 + 0.3025)  # 61 requests (T0 .. T0+0.300) answered by pod-a
        pod.name = "pod-b"  # the "new backend" from now on
        d.until(T0 + 0.6025)
        first = d.p.take()["pods"]["svc"]  # type: ignore[index]
        d.until(T0 + 0.7025)
        again = d.p.take()["pods"]["svc"]  # type: ignore[index]
        d.p.disarm()
        d.until(T0 + 1.0)
        d.p.take()
        quiet = d.p.take()["pods"]
    a, b = first["pod-a"], first["pod-b"]
    assert a["count"] == 61 and b["count"] == 60
    assert a["first_ns"] == ns(T0) and a["first_gap_ns"] == 0  # no request before it
    assert near(a["last_ns"], ns(T0 + 0.3)) and near(a["last_gap_ns"], 5 * MS)
    assert near(b["first_ns"], ns(T0 + 0.305)) and near(b["first_gap_ns"], 5 * MS)
    assert b["first_ns"] - b["first_gap_ns"] == a["last_ns"]
    # a take reports only what changed since the previous one
    assert "pod-a" not in again and again["pod-b"]["count"] == 80
    assert near(again["pod-b"]["last_ns"], ns(T0 + 0.7))
    # once disarmed, only an answer whose next request never came is reported (gap 0)
    assert list(quiet) == ["svc"] and list(quiet["svc"]) == ["pod-b"]  # type: ignore[call-overload,index]
    assert quiet["svc"]["pod-b"]["last_gap_ns"] == 0  # type: ignore[index]


def test_failures_form_runs_with_reasons_counts_and_gaps(
        server: tuple[int, type[_Pod]]) -> None:
    port, pod = server
    with driven(port) as d:
        d.p.focus("svc", 5.0)
        d.until(T0 + 0.1025)  # T0 .. T0+0.100 answered: 21
        pod.name = ""  # an empty answer is a failed request
        d.until(T0 + 0.2025)  # T0+0.105 .. T0+0.200 fail: 20
        open_snap = d.p.take()
        pod.name = "pod-a"  # answers again: the failure run is closed
        d.until(T0 + 0.3025)
        snap = d.p.take()
    run = open_snap["open_fail"]["svc"]  # type: ignore[index]
    assert run["count"] == 20 and run["reasons"] == {"bad-response": 20}
    assert run["last_gap_ns"] == 0  # the request after it was not sent yet
    assert open_snap["fail_runs"] == {}
    runs = snap["fail_runs"]["svc"]  # type: ignore[index]
    assert len(runs) == 1 and not snap["open_fail"]
    run = runs[0]
    assert run["count"] == 20 and run["reasons"] == {"bad-response": 20}
    assert near(run["first_ns"], ns(T0 + 0.105)) and near(run["last_ns"], ns(T0 + 0.2))
    assert near(run["first_gap_ns"], 5 * MS) and near(run["last_gap_ns"], 5 * MS)
    assert snap["pods"]["svc"]["pod-a"]["count"] == 21 + 20  # type: ignore[index]


def test_an_answer_after_a_retransmitted_syn_is_a_failure(
        server: tuple[int, type[_Pod]], monkeypatch: pytest.MonkeyPatch) -> None:
    """A connect that took the SYN retransmission time (its first SYN dropped while the
    rules were gone) is not an answer at its send time. Here every connect counts as that
    slow; the other tests show fast ones answered."""
    port, _ = server
    monkeypatch.setattr(prober, "SYN_RETRANSMIT_NS", 0)
    with driven(port) as d:
        d.p.focus("svc", 0.0025)  # one fine request at T0
        d.until(T0 + 0.01)
        snap = d.p.take()
    run = snap["open_fail"]["svc"]  # type: ignore[index]
    assert run["reasons"] == {"syn-retransmit": run["count"]} and run["first_ns"] == ns(T0)
    assert snap["pods"] == {}


def test_a_closed_port_fails_with_its_errno() -> None:
    with driven(_closed_port(), name="gone") as d:
        d.p.focus("gone", 0.1025)
        d.until(T0 + 0.2)
        snap = d.p.take()
    run = snap["open_fail"]["gone"]  # type: ignore[index]
    # 21 fine requests, then the idle one due at T0+0.105
    assert run["count"] == 22 and run["reasons"] == {"ECONNREFUSED": 22}
    assert snap["pods"] == {}


def test_unanswered_requests_time_out_after_timeout_s() -> None:
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(64)  # accepts nothing: connections hang until the prober gives up
    try:
        with driven(mute.getsockname()[1], real_wait_s=0.0) as d:
            d.p.focus("svc", 0.1025)
            d.until(T0 + 0.1025, drain=False)
            d.p.disarm()
            d.until(T0 + 0.9, drain=False)
            assert d.p.take()["open_fail"] == {}  # 1 s not over for any of them
            d.until(T0 + 1.2)
            snap = d.p.take()
    finally:
        mute.close()
    run = snap["open_fail"]["svc"]  # type: ignore[index]
    assert run["count"] == 21 and run["reasons"] == {"timeout": 21}
    assert run["first_ns"] == ns(T0) and near(run["last_ns"], ns(T0 + 0.1))


def test_the_request_budget_bounds_an_arming(server: tuple[int, type[_Pod]]) -> None:
    port, _ = server
    with driven(port, max_requests=7) as d:
        d.p.focus("svc", 5.0)
        d.until(T0 + 1.0)
    assert d.p.requests == 7 and len(d.t.sends) == 7


def test_real_clock_thread_records_answers(server: tuple[int, type[_Pod]]) -> None:
    """The agent's configuration: its own thread on the real clock."""
    port, _ = server
    p = Prober(interval_s=0.005, idle_interval_s=0.1)
    p.arm([Target("svc", "127.0.0.1", port)], max_requests=10_000, max_seconds=10)
    try:
        p.focus("svc", 5.0)
        deadline = time.monotonic() + 10
        while p.requests < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        snap = p.take()
    finally:
        p.stop()
    seen = snap["pods"]["svc"]["pod-a"]  # type: ignore[index]
    assert seen["count"] >= 10 and seen["first_ns"] < seen["last_ns"] <= time.time_ns()


def test_focus_on_an_unknown_target_is_refused() -> None:
    p = Prober()
    with pytest.raises(KeyError):
        p.focus("nope", 1.0)


METRICS = """# HELP kubeproxy_sync_proxy_rules_last_timestamp_seconds [ALPHA] The last time
# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge
kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family="IPv4"} 254
kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family="IPv6"} 1
kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv6"} 1.7e+09
kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"} 1.7957061396144714e+09
"""


def test_parse_sync_reads_the_ipv4_or_unlabeled_series() -> None:
    assert parse_sync(METRICS) == (1.7957061396144714e9, 254.0)
    plain = ("kubeproxy_sync_proxy_rules_last_timestamp_seconds 12.5\n"
             "kubeproxy_sync_proxy_rules_duration_seconds_count 3\n")
    assert parse_sync(plain) == (12.5, 3.0)
    assert parse_sync("# nothing synced yet\n") == (0.0, 0.0)
    # a longer metric name sharing the prefix is not the series
    assert parse_sync("kubeproxy_sync_proxy_rules_last_timestamp_seconds_other 9\n") == (0, 0)


def test_go_durations_and_min_sync_period() -> None:
    assert parse_go_duration("1s") == 1.0
    assert parse_go_duration("1m30s") == 90.0
    assert parse_go_duration("500ms") == 0.5
    assert parse_go_duration("0s") == 0.0
    with pytest.raises(ValueError):
        parse_go_duration("1 second")
    assert min_sync_period({"kubeproxy.config.k8s.io": {"MinSyncPeriod": "1s"}}) == 1.0
    assert min_sync_period({"kubeproxy.config.k8s.io": {
        "IPTables": {"MinSyncPeriod": "250ms"}}}) == 0.25
    assert min_sync_period({}) is None
    assert min_sync_period({"kubeproxy.config.k8s.io": {"MinSyncPeriod": "soon"}}) is None
