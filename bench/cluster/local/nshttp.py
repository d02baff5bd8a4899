"""HTTP inside a network namespace: the harness's one way to speak it.

The harness stays in the root namespace; what it talks to on the local cluster listens
inside node and control-plane namespaces (kube-proxy's :10249/:10256, the node agent on
its loopback, the API server on the fabric). Every TCP connection for such a request is
opened by bench.cluster.local.netns.connect_in, and httpx speaks HTTP over it: this module is
the httpcore network backend (sync and async) that does that, the httpx transports
built on it, and a plain `get` for health and metrics pages.

Anything that takes an httpx transport (an httpx.Client, kr8s's httpx.AsyncClient) can
plug `transport(...)` / `async_transport(...)` in. With `keepalive=False` every request
opens a new TCP connection, which is what a probe of a Service needs (a kept-alive
connection sticks to its first backend and never sees new rules).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable
from typing import Any

import anyio
import anyio.abc
import httpcore
import httpx
from httpcore._backends.anyio import AnyIOStream
from httpcore._backends.sync import SyncStream

from bench.cluster.local.netns import connect_in, socket_in

CONNECT_TIMEOUT_S = 10.0


class NetnsBackend(httpcore.SyncBackend):
    """Open every TCP connection from inside one network namespace."""

    def __init__(self, netns_name: str) -> None:
        self.netns_name = netns_name

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        try:
            sock = connect_in(self.netns_name, host, port, timeout=timeout or CONNECT_TIMEOUT_S)
        except OSError as exc:
            raise httpcore.ConnectError(f"{exc} (from namespace {self.netns_name})") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return SyncStream(sock)


class AsyncNetnsBackend(httpcore.AnyIOBackend):
    """The async twin: the socket is made inside the namespace, connected by the loop."""

    def __init__(self, netns_name: str) -> None:
        self.netns_name = netns_name

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None
                          ) -> httpcore.AsyncNetworkStream:
        sock = await anyio.to_thread.run_sync(socket_in, self.netns_name)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with anyio.fail_after(timeout or CONNECT_TIMEOUT_S):
                await _connect(sock, host, port)
            stream = await anyio.abc.SocketStream.from_socket(sock)
        except (OSError, TimeoutError) as exc:
            sock.close()
            raise httpcore.ConnectError(f"{exc} (from namespace {self.netns_name})") from exc
        return AnyIOStream(stream)


async def _connect(sock: socket.socket, host: str, port: int) -> None:
    import asyncio  # anyio offers no connect() of an existing socket

    await asyncio.get_running_loop().sock_connect(sock, (host, port))


def _limits(keepalive: bool) -> dict[str, Any]:
    return {"max_keepalive_connections": None if keepalive else 0,
            "keepalive_expiry": 5.0}


def transport(netns_name: str, ssl_context: ssl.SSLContext | None = None,
              keepalive: bool = True) -> httpx.HTTPTransport:
    """An httpx transport whose connections start inside `netns_name`."""
    t = httpx.HTTPTransport(verify=False)  # its pool is replaced: no CA bundle to load
    t._pool = httpcore.ConnectionPool(  # private: httpx has no public backend hook
        ssl_context=ssl_context, network_backend=NetnsBackend(netns_name),
        **_limits(keepalive))
    return t


def async_transport(netns_name: str, ssl_context: ssl.SSLContext | None = None,
                    keepalive: bool = True) -> httpx.AsyncHTTPTransport:
    t = httpx.AsyncHTTPTransport(verify=False)
    t._pool = httpcore.AsyncConnectionPool(  # private, as in transport()
        ssl_context=ssl_context, network_backend=AsyncNetnsBackend(netns_name),
        **_limits(keepalive))
    return t


def client(netns_name: str, timeout: float | None = 2.0, keepalive: bool = True,
           **kwargs: Any) -> httpx.Client:
    """An httpx.Client whose every connection starts inside `netns_name` (never through a
    proxy named in the environment: the namespace is the route)."""
    return httpx.Client(transport=transport(netns_name, keepalive=keepalive),
                        timeout=timeout, trust_env=False, **kwargs)


def get(netns_name: str, host: str, port: int, path: str,
        timeout: float = 2.0) -> tuple[int, str]:
    """(status, body) of one GET over a new connection; raises OSError when nothing listens."""
    with client(netns_name, timeout=timeout, keepalive=False) as c:
        try:
            resp = c.get(f"http://{host}:{port}{path}")
        except httpx.TransportError as exc:
            raise OSError(f"GET http://{host}:{port}{path} in {netns_name}: {exc}") from exc
        return resp.status_code, resp.text
