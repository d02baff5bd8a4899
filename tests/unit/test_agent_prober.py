"""The agent's prober and kube-proxy parsers, against a real HTTP server on loopback.

Rates are checked as ratios with wide margins (this is a 2-core machine that may be busy):
the point is which interval is in force when, and what each answer records.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.agent.kpmetrics import min_sync_period, parse_go_duration, parse_sync
from bench.agent.prober import Prober, Target

MS = 1_000_000


class _Pod:
    name = "pod-a"


@pytest.fixture()
def server() -> Iterator[tuple[int, type[_Pod]]]:
    pod = type("Pod", (_Pod,), {})

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            body = pod.name.encode()
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


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@contextmanager
def armed(port: int, name: str = "svc") -> Iterator[Prober]:
    """A prober at 5 ms fine / 100 ms idle on one target, stopped afterwards."""
    p = Prober(interval_s=0.005, idle_interval_s=0.1)
    p.arm([Target(name, "127.0.0.1", port)], max_requests=10_000, max_seconds=10)
    try:
        yield p
    finally:
        p.stop()


def _count(p: Prober, seconds: float) -> int:
    before = p.requests
    time.sleep(seconds)
    return p.requests - before


def test_fine_interval_only_while_focused(server: tuple[int, type[_Pod]]) -> None:
    port, _ = server
    with armed(port) as p:
        time.sleep(0.2)
        idle = _count(p, 1.0)
        p.focus("svc", 1.0)
        assert p.focused()
        fine = _count(p, 1.0)
        p.unfocus("svc")
        assert not p.focused()
        time.sleep(0.15)
        after = _count(p, 1.0)
    assert 4 <= idle <= 16, idle        # ~10 at 100 ms
    assert fine >= 5 * idle, (fine, idle)  # ~200 at 5 ms
    assert after <= 16, after            # back to the idle interval


def test_delayed_focus_waits_then_probes_finely(server: tuple[int, type[_Pod]]) -> None:
    port, _ = server
    with armed(port) as p:
        time.sleep(0.2)
        p.focus("svc", 0.5, delay_s=0.4)
        assert p.waiting() == ["svc"] and not p.focused()
        before = _count(p, 0.3)
        time.sleep(0.15)
        assert p.waiting() == [] and p.focused()
        during = _count(p, 0.3)
    assert before <= 6, before
    assert during >= 4 * max(before, 1), (during, before)


def test_answers_carry_the_gap_to_their_neighbours(server: tuple[int, type[_Pod]]) -> None:
    port, pod = server
    with armed(port) as p:
        p.focus("svc", 5.0)
        time.sleep(0.3)
        pod.name = "pod-b"  # the "new backend" from now on
        time.sleep(0.3)
        first = p.take()["pods"]["svc"]  # type: ignore[index]
        time.sleep(0.1)
        again = p.take()["pods"]["svc"]  # type: ignore[index]
        p.disarm()
        time.sleep(0.2)
        p.take()
        quiet = p.take()["pods"]
    a, b = first["pod-a"], first["pod-b"]
    assert a["last_ns"] < b["first_ns"]
    # at a 5 ms interval the neighbouring requests are a few ms away, never 0 (unknown)
    assert 0 < b["first_gap_ns"] <= 30 * MS, b
    assert 0 < a["last_gap_ns"] <= 30 * MS, a
    assert b["first_ns"] - b["first_gap_ns"] >= a["last_ns"] - 30 * MS
    # a take reports only what changed since the previous one
    assert "pod-a" not in again and again["pod-b"]["count"] > b["count"]
    # once disarmed, only an answer whose next request never came is reported (gap 0)
    assert list(quiet) == ["svc"] and list(quiet["svc"]) == ["pod-b"]
    assert quiet["svc"]["pod-b"]["last_gap_ns"] == 0


def test_failures_form_runs_with_reasons_and_gaps(server: tuple[int, type[_Pod]]) -> None:
    port, pod = server
    with armed(port) as p:
        p.focus("svc", 5.0)
        time.sleep(0.2)
        pod.name = ""  # an empty answer is a failed request
        time.sleep(0.2)
        pod.name = "pod-a"  # answers again: the failure run is closed
        time.sleep(0.2)
        snap = p.take()
    runs = snap["fail_runs"]["svc"]  # type: ignore[index]
    assert len(runs) == 1 and not snap["open_fail"]
    run = runs[0]
    assert run["count"] >= 10 and run["reasons"] == {"bad-response": run["count"]}
    assert run["first_ns"] < run["last_ns"]
    assert 0 < run["first_gap_ns"] <= 30 * MS and 0 < run["last_gap_ns"] <= 30 * MS


def test_a_closed_port_fails_with_its_errno() -> None:
    with armed(_closed_port(), "gone") as p:
        p.focus("gone", 5.0)
        time.sleep(0.2)
        snap = p.take()
    run = snap["open_fail"]["gone"]  # type: ignore[index]
    assert run["count"] >= 10 and set(run["reasons"]) == {"ECONNREFUSED"}
    assert snap["pods"] == {}


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
