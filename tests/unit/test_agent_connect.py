"""The agent's connect-time histogram: its fixed log buckets, and the prober timing every
connection it opens (real sockets on loopback, the real prober thread)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from bench.agent import connhist
from bench.agent.prober import Prober, Target
from bench.agent.server import Agent, routes


def test_bounds_are_log_spaced_from_10us_to_10s() -> None:
    b = connhist.BOUNDS_MS
    assert b[0] == 0.01 and b[-1] == 10_000.0 and len(b) == 121
    assert b[20] == 0.1 and b[60] == 10.0
    assert all(abs(y / x - 10 ** (1 / 20)) < 1e-3 for x, y in zip(b, b[1:]))


@pytest.mark.parametrize(("ns", "index"), [
    (1, 0), (10_000, 0), (10_001, 1), (100_000, 20), (100_001, 21), (10_000_000, 60),
    (10_000_000_000, 120), (10_000_000_001, 121), (10**12, 121)])
def test_bucket_holds_its_upper_bound(ns: int, index: int) -> None:
    assert connhist.bucket(ns) == index
    if index < len(connhist.BOUNDS_MS):
        assert ns / 1e6 <= connhist.BOUNDS_MS[index] * (1 + 1e-6)
    if index:
        assert ns / 1e6 > connhist.BOUNDS_MS[index - 1]


def test_snapshot_counts_per_target() -> None:
    h = connhist.ConnectHistogram()
    for ns in (50_000, 50_000, 2_000_000):
        h.observe("svc0", ns)
    h.observe("svc1", 10**13)
    snap = h.snapshot()
    t = snap["targets"]
    assert isinstance(t, dict)
    assert len(t["svc0"]) == connhist.N_BOUNDS + 1 and sum(t["svc0"]) == 3
    assert t["svc0"][connhist.bucket(50_000)] == 2 and t["svc1"][-1] == 1


@pytest.fixture()
def http_port() -> Iterator[int]:
    """A tiny HTTP/1.0 server that answers every connection with a pod name."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(512)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except TimeoutError:
                continue
            with c:
                c.recv(4096)
                c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\npod-a")

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    yield srv.getsockname()[1]
    stop.set()
    th.join(1)
    srv.close()


def test_prober_times_every_connection_it_answers(http_port: int) -> None:
    p = Prober(interval_s=0.002, idle_interval_s=0.002)
    p.arm([Target("svc", "127.0.0.1", http_port)], max_requests=60, max_seconds=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.05)
        seen = p.pods.get("svc", {}).get("pod-a")
        if seen is not None and seen.count == 60:
            break
    p.stop()
    counts = p.connect.snapshot()["targets"]["svc"]  # type: ignore[index]
    assert p.pods["svc"]["pod-a"].count == 60
    assert sum(counts) == 60  # one connect time per connection that got established
    # loopback: established well under a second, above nothing
    assert sum(counts[:connhist.bucket(1_000_000_000) + 1]) == 60


def test_prober_does_not_time_refused_connections() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens: every connect is refused
    p = Prober(interval_s=0.002, idle_interval_s=0.002)
    p.arm([Target("svc", "127.0.0.1", port)], max_requests=20, max_seconds=10)
    deadline = time.monotonic() + 5
    while p.requests < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    p.stop()
    assert p.requests == 20
    assert p.connect.snapshot()["targets"] == {}


def test_agent_serves_the_histograms_on_connect() -> None:
    agent = Agent("n1", 0.005, 0.02, metrics_port=1)
    agent.prober.connect.observe("svc0", 120_000)
    _, get, _ = routes(agent)
    code, payload, ctype = get["/connect"]()
    body = json.loads(json.dumps(payload))
    assert code == 200 and ctype == "application/json"
    assert body["bounds_ms"] == connhist.BOUNDS_MS
    assert sum(body["targets"]["svc0"]) == 1
