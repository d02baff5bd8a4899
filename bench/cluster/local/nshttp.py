"""Plain HTTP GET over a socket opened inside a network namespace.

Used to read health and metrics endpoints that components bind to the loopback of
their own namespace (kube-proxy's :10256 and :10249, kubelet's :10248).
"""

from __future__ import annotations

from bench.cluster.local.netns import connect_in


def get(netns_name: str, host: str, port: int, path: str,
        timeout: float = 2.0) -> tuple[int, str]:
    """(status, body); raises OSError when nothing listens."""
    sock = connect_in(netns_name, host, port, timeout=timeout)
    try:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    finally:
        sock.close()
    raw = b"".join(chunks).decode(errors="replace")
    head, _, body = raw.partition("\r\n\r\n")
    status = int(head.split()[1]) if head.startswith("HTTP/") else 0
    return status, body
