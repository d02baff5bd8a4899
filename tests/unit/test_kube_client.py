"""bench.kube, the one API client: credentials as the kubeconfig says (bearer token, exec
plugin with a fresh token after a 401), errors as one line of the right kind, and the raw
watch's stamps taken per arriving chunk, before decoding.

The API server is an httpx MockTransport handed to kr8s's session; the exec plugin is a
real program (a small script counting its calls). Nothing is contacted.
"""

from __future__ import annotations

import contextlib
import http.server
import itertools
import json
import ssl
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from bench.errors import ClusterError, UserError
from bench.kube import ApiStatusError, ApiUnreachable, Kube

PLUGIN = """
import json, pathlib, sys
calls = pathlib.Path(sys.argv[1])
n = int(calls.read_text() or 0) + 1 if calls.exists() else 1
calls.write_text(str(n))
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": f"token-{n}"}}))
"""
Handler = Callable[[httpx.Request], httpx.Response]


def _kubeconfig(tmp_path: Path, user: dict[str, object]) -> Path:
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://api.test:6443",
                                               "insecure-skip-tls-verify": True}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "users": [{"name": "u", "user": user}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _exec_user(tmp_path: Path) -> tuple[dict[str, object], Path]:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    calls = tmp_path / "calls"
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                     "command": sys.executable, "args": [str(plugin), str(calls)],
                     "interactiveMode": "Never"}}, calls


def _kube(path: Path, handler: Handler) -> Kube:
    return Kube(path, transport=lambda verify: httpx.MockTransport(handler))


@contextlib.contextmanager
def _tls_server(tmp_path: Path, handler: type[http.server.BaseHTTPRequestHandler],
                client_cert: bool = False) -> Iterator[Path]:
    """A real TLS server on 127.0.0.1 answering with `handler` (a client certificate
    required with `client_cert`), and a kubeconfig for it as the local cluster writes one:
    CA and client certificate files, no token."""
    from bench.cluster.local import pki

    ca = pki.make_ca(tmp_path, "ca", "test-ca")
    srv = pki.issue(ca, tmp_path, "server", "server", server=True, client=False,
                    ips=("127.0.0.1",))
    admin = pki.issue(ca, tmp_path, "admin", "admin", org="system:masters")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.cert))
    ctx.load_cert_chain(str(srv.cert), str(srv.key))
    if client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        path = tmp_path / "kubeconfig"
        pki.kubeconfig(path, f"https://127.0.0.1:{server.server_address[1]}", ca.cert, admin,
                       "admin")
        yield path
    finally:
        server.shutdown()
        server.server_close()


def _json_reply(h: http.server.BaseHTTPRequestHandler, obj: object) -> None:
    body = json.dumps(obj).encode()
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def test_bearer_token_from_the_kubeconfig(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json={"gitVersion": "v1.35.0"})

    with _kube(_kubeconfig(tmp_path, {"token": "abc"}), handler) as kube:
        assert kube.server == "https://api.test:6443"
        assert kube.get("/version") == {"gitVersion": "v1.35.0"}
    assert seen[0].headers["Authorization"] == "Bearer abc"
    assert str(seen[0].url) == "https://api.test:6443/version"  # the path as given


def test_exec_plugin_token_reused_then_renewed_after_401(tmp_path: Path) -> None:
    user, calls = _exec_user(tmp_path)
    seen: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        token = req.headers["Authorization"]
        seen.append(token)
        if token == "Bearer token-1" and len(seen) > 2:  # token-1 "expired" after 2 calls
            return httpx.Response(401, json={"message": "Unauthorized"})
        return httpx.Response(200, json={"ok": token})

    with _kube(_kubeconfig(tmp_path, user), handler) as kube:
        assert kube.get("/a") == {"ok": "Bearer token-1"}
        assert kube.get("/b") == {"ok": "Bearer token-1"}
        assert calls.read_text() == "1"  # loaded once, reused
        assert kube.get("/c") == {"ok": "Bearer token-2"}  # 401: the plugin ran again
    assert calls.read_text() == "2"
    assert seen == ["Bearer token-1"] * 3 + ["Bearer token-2"]


def test_client_certificate_against_a_mutual_tls_server(tmp_path: Path) -> None:
    """As the local cluster's kubeconfig: CA and client certificate files, no token. A real
    TLS server on 127.0.0.1 that requires a client certificate answers with its CN."""

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            peer = self.connection.getpeercert()
            cn = dict(x[0] for x in peer["subject"])["commonName"]
            _json_reply(self, {"cn": cn, "auth": self.headers.get("Authorization")})

        def log_message(self, *args: object) -> None:
            pass

    with _tls_server(tmp_path, Echo, client_cert=True) as path:
        with Kube(path) as kube:
            assert kube.get("/api/v1/nodes") == {"cn": "admin", "auth": None}
        server_cert = str(tmp_path / "server.crt")
        path.write_text(path.read_text().replace(str(tmp_path / "admin.crt"), server_cert))
        # a key that does not match its certificate: refused at once, in one line
        with pytest.raises(UserError, match="is not usable: .*KEY_VALUES_MISMATCH"):
            Kube(path)


def test_bad_kubeconfigs_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        Kube(tmp_path / "nope")
    (tmp_path / "bad").write_text("clusters: [\n")
    with pytest.raises(UserError, match="not readable YAML"):
        Kube(tmp_path / "bad")
    broken = _kubeconfig(tmp_path, {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                             "command": str(tmp_path / "no-such-plugin")}})
    with pytest.raises(UserError, match=f"kubeconfig {broken} is not usable"):
        Kube(broken)


def test_error_mapping(tmp_path: Path) -> None:
    answers = {"/gone": httpx.Response(404), "/boom": httpx.Response(500, json={"message": "etcd"}),
               "/no": httpx.Response(403, json={"message": "forbidden: user x"})}

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/down":
            raise httpx.ConnectError("connection refused",
                                     request=req) from ConnectionRefusedError(111, "refused")
        if req.url.path == "/eof":  # the forwarder took the connection, nothing behind it
            raise httpx.ConnectError("EOF occurred in violation of protocol",
                                     request=req) from ssl.SSLEOFError(8, "EOF")
        if req.url.path == "/slow":
            raise httpx.ReadTimeout("", request=req)
        return answers[req.url.path]

    with _kube(_kubeconfig(tmp_path, {"token": "t"}), handler) as kube:
        assert kube.get("/gone") is None
        assert kube.delete("/gone") is False
        with pytest.raises(ApiStatusError, match=r"GET /boom: HTTP 500: etcd") as err:
            kube.get("/boom")
        assert err.value.status == 500 and isinstance(err.value, ClusterError)
        with pytest.raises(UserError, match=r"refused \(403\): forbidden: user x"):
            kube.get("/no")
        with pytest.raises(ApiUnreachable, match="GET /down: connection refused") as down:
            kube.get("/down")
        assert not down.value.timed_out
        assert down.value.reason.endswith("(Connection refused)")
        with pytest.raises(ApiUnreachable) as eof:
            kube.get("/eof")
        assert eof.value.reason == "EOF occurred in violation of protocol"  # not errno 8's text
        with pytest.raises(ApiUnreachable) as slow:
            kube.get("/slow")
        assert slow.value.timed_out


def test_patch_sends_the_content_type(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json={"kind": "Pod"})

    with _kube(_kubeconfig(tmp_path, {"token": "t"}), handler) as kube:
        kube.patch("/api/v1/namespaces/n/pods/p/status", {"status": {}})
    assert seen[0].method == "PATCH"
    assert seen[0].headers["content-type"] == "application/merge-patch+json"


def test_watch_stamps_each_line_with_its_completing_chunk(tmp_path: Path) -> None:
    chunks = [b'{"type":"ADDED","n":1}\n{"type":"MOD', b'IFIED","n":2}\n', b"\n",
              b'{"type":"DELETED","n":3}\n']

    async def body() -> AsyncIterator[bytes]:
        for c in chunks:
            yield c

    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, content=body())

    ticks = itertools.count(100)
    with _kube(_kubeconfig(tmp_path, {"token": "t"}), handler) as kube:
        with kube.watch("/api/v1/pods", {"watch": "1"}, clock=lambda: next(ticks)) as lines:
            got = list(lines)
    assert got == [(100, b'{"type":"ADDED","n":1}'), (101, b'{"type":"MODIFIED","n":2}'),
                   (103, b'{"type":"DELETED","n":3}')]
    assert seen[0].url.params["watch"] == "1"


def test_watch_errors(tmp_path: Path) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/gone":
            return httpx.Response(410, json={"message": "too old resource version"})
        raise httpx.ConnectError("reset", request=req)

    with _kube(_kubeconfig(tmp_path, {"token": "t"}), handler) as kube:
        with pytest.raises(ApiStatusError) as gone:
            with kube.watch("/gone", {}) as lines:
                list(lines)
        assert gone.value.status == 410
        with pytest.raises(ApiUnreachable, match="watch /down: reset"):
            with kube.watch("/down", {}) as lines:
                list(lines)


def test_requests_in_flight_reuse_their_connections(tmp_path: Path) -> None:
    """The background fill keeps KEEPALIVE requests in flight. Each connection the client
    does not keep is a new TLS handshake at the next request (httpx keeps 20 by default:
    a 5,000-Service fill spent 9.6 % of the API server's CPU on handshakes). Two rounds of
    KEEPALIVE concurrent requests open KEEPALIVE connections, not the 108 of httpx's
    default pool: the server holds each round's requests until all of them are in, so each
    round needs that many at once however slowly a loaded machine starts them. (A response
    goes back to the pool on the client's event loop a moment after its caller has it: on
    a loaded machine a few of round two's requests can open a connection of their own.)"""
    from concurrent.futures import ThreadPoolExecutor

    from bench.kube import KEEPALIVE

    connections: list[object] = []
    together = threading.Barrier(KEEPALIVE)

    class Slow(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def setup(self) -> None:
            connections.append(self.client_address)
            super().setup()

        def do_GET(self) -> None:
            together.wait(timeout=30)  # every request of a round is in flight at once
            _json_reply(self, {})

        def log_message(self, *args: object) -> None:
            pass

    with _tls_server(tmp_path, Slow) as path:
        with Kube(path) as kube, ThreadPoolExecutor(KEEPALIVE) as pool:
            for _ in range(2):
                list(pool.map(lambda _: kube.get("/api/v1/nodes"), range(KEEPALIVE)))
                time.sleep(0.5)  # the pool takes the connections back
    assert KEEPALIVE <= len(connections) <= KEEPALIVE * 5 // 4
