"""A TCP forwarder from 127.0.0.1 in the root namespace into a cluster namespace.

The API server lives in the control-plane namespace; the root namespace gets no
private address and no route (docs/design.md §6). This small daemon listens on loopback
and opens each upstream connection from inside the target namespace instead.

Run as: python -m bench.cluster.local.forward LISTEN_PORT NETNS HOST PORT
"""

from __future__ import annotations

import socket
import sys
import threading

from bench.cluster.local.netns import connect_in


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _handle(client: socket.socket, netns: str, host: str, port: int) -> None:
    try:
        upstream = connect_in(netns, host, port, timeout=5.0)
        upstream.settimeout(None)
        # an HTTP client that writes a request's headers and body apart (httpx does) would
        # otherwise wait on the API server's delayed ACK: ~45 ms per request with a body
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        client.close()
        return
    threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
    _pump(client, upstream)


def serve(listen_port: int, netns: str, host: str, port: int) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen_port))
    srv.listen(128)
    while True:
        client, _ = srv.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_handle, args=(client, netns, host, port), daemon=True).start()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]))
