"""The agent's control surface over real HTTP on loopback: open health and clock, the rest
behind the token, unknown paths 404, a focus on a target never armed 404 with its name."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any, cast

import pytest

from bench.agent.server import Agent, make_handler


class FakeProber:
    def forget_pod(self, target: str, pod: str) -> None:
        self.forgot = (target, pod)


class FakeAgent:
    node = "n7"
    mesh = None

    def __init__(self) -> None:
        self.prober = FakeProber()

    def focus(self, body: dict[str, Any]) -> dict[str, Any]:
        raise KeyError(body["target"])

    def collect(self) -> dict[str, Any]:
        return {"node": self.node}

    def disarm(self) -> dict[str, Any]:
        return {"disarmed": True}


@pytest.fixture
def port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(cast(Agent, FakeAgent()), "tok"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def call(port: int, method: str, path: str, body: dict[str, Any] | None = None,
         token: str | None = "tok") -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    if token:
        req.add_header("X-Hopbench-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_is_open_the_rest_needs_the_token(port: int) -> None:
    assert call(port, "GET", "/healthz", token=None) == (200, {"ok": True, "node": "n7"})
    assert call(port, "GET", "/collect", token=None) == (403, {"error": "bad token"})
    assert call(port, "GET", "/collect", token="wrong")[0] == 403
    assert call(port, "GET", "/collect") == (200, {"node": "n7"})


def test_unknown_paths_and_unarmed_focus_are_404(port: int) -> None:
    assert call(port, "GET", "/nope")[0] == 404
    assert call(port, "POST", "/nope", {})[0] == 404
    code, body = call(port, "POST", "/focus", {"target": "svc9"})
    assert code == 404 and "'svc9' is not armed" in body["error"]


def test_posts_reach_the_agent(port: int) -> None:
    assert call(port, "POST", "/disarm", {}) == (200, {"disarmed": True})
    assert call(port, "POST", "/forget", {"target": "svc0", "pod": "p1"}) == (
        200, {"forgot": "p1"})
