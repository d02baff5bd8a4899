"""bench.cluster.local.nshttp against a real network namespace (root; no cluster needed).

A server listens on the loopback of a namespace of its own; the root namespace cannot
reach it, every client of nshttp can, and keepalive=False opens one connection a request.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from bench.cluster.local import netns, nshttp
from bench.poll import wait_until

NS, PORT = "hbtest-nshttp", 18089
SERVER = f"""
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps connections alive unless the client closes
    def do_GET(self):
        body = str(self.client_address[1]).encode()  # the client's port: one per connection
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
ThreadingHTTPServer(("127.0.0.1", {PORT}), H).serve_forever()
"""


@pytest.fixture(scope="module")
def server_ns() -> Iterator[str]:
    netns.delete(NS)
    netns.add(NS)
    srv = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, "-c", SERVER])
    try:
        wait_until(lambda: nshttp.get(NS, "127.0.0.1", PORT, "/")[0] == 200, 10, 0.1,
                   "the test server", retry_on=(OSError,))
        yield NS
    finally:
        srv.kill()
        srv.wait()
        netns.delete(NS)


def test_get_speaks_inside_the_namespace_only(server_ns: str) -> None:
    status, body = nshttp.get(server_ns, "127.0.0.1", PORT, "/x")
    assert status == 200 and body.isdigit()
    with pytest.raises(httpx.ConnectError):  # the same address from the root namespace
        httpx.get(f"http://127.0.0.1:{PORT}/", timeout=1, trust_env=False)
    with pytest.raises(OSError, match=f"in {server_ns}"):  # nothing listens there
        nshttp.get(server_ns, "127.0.0.1", PORT + 1, "/")


def test_keepalive_or_a_new_connection_per_request(server_ns: str) -> None:
    url = f"http://127.0.0.1:{PORT}/"
    with nshttp.client(server_ns, keepalive=True) as c:
        assert len({c.get(url).text for _ in range(4)}) == 1
    with nshttp.client(server_ns, keepalive=False) as c:
        assert len({c.get(url).text for _ in range(4)}) == 4


def test_async_transport(server_ns: str) -> None:
    async def go() -> tuple[set[str], str]:
        async with httpx.AsyncClient(transport=nshttp.async_transport(server_ns),
                                     trust_env=False) as c:
            ports = {(await c.get(f"http://127.0.0.1:{PORT}/")).text for _ in range(3)}
            try:
                await c.get(f"http://127.0.0.1:{PORT + 1}/")
                refused = ""
            except httpx.ConnectError as exc:
                refused = str(exc)
        return ports, refused

    ports, refused = asyncio.run(go())
    assert len(ports) == 1 and next(iter(ports)).isdigit()
    assert f"from namespace {server_ns}" in refused
