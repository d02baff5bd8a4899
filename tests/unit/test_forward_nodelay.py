"""The loopback forwarder (bench.cluster.local.forward) sends each chunk on at once, both
ways: httpx writes a request's headers and its body apart, and with Nagle's algorithm on
the forwarder's upstream socket the body waited for the API server's delayed ACK (a
ConfigMap create took ~50 ms through the forwarder instead of ~5 ms)."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

from bench.cluster.local import forward


def test_the_upstream_socket_has_nodelay(monkeypatch: pytest.MonkeyPatch) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    made: list[socket.socket] = []

    def fake_connect_in(netns: str, host: str, port: int, timeout: float = 2.0
                        ) -> socket.socket:
        s = socket.create_connection(server.getsockname(), timeout=timeout)
        made.append(s)
        return s

    monkeypatch.setattr(forward, "connect_in", fake_connect_in)
    client, harness_end = socket.socketpair()
    t = threading.Thread(target=forward._handle, args=(client, "ns", "h", 1), daemon=True)
    t.start()
    peer, _ = server.accept()
    try:
        harness_end.sendall(b"ping")
        assert peer.recv(4) == b"ping"  # it forwards: its upstream socket is set up
        nodelay: Any = made[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert nodelay, "upstream socket keeps Nagle's algorithm on"
    finally:
        harness_end.close()
        peer.close()
        server.close()
        t.join(2)
