"""The raw-watch client's bearer token follows the kubeconfig's exec plugin, expiry included.

A real exec plugin (a small script counting its calls) and the official loader; no server
is contacted: the test runs the client's auth flow on requests it builds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import yaml

from bench.kubehttp import http_client

PLUGIN = """
import datetime as dt, json, pathlib, sys
calls = pathlib.Path(sys.argv[1])
n = int(calls.read_text() or 0) + 1 if calls.exists() else 1
calls.write_text(str(n))
expiry = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=float(sys.argv[2]))
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": f"token-{n}",
                             "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}}))
"""


def _kubeconfig(tmp_path: Path, lifetime_s: float) -> tuple[Path, Path]:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    calls = tmp_path / "calls"
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443",
                                               "insecure-skip-tls-verify": True}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "users": [{"name": "u", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
            "args": [str(plugin), str(calls), str(lifetime_s)],
            "interactiveMode": "Never"}}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return path, calls


def _token(c: httpx.Client) -> str:
    request = c.build_request("GET", "/api")
    return next(c.auth.auth_flow(request)).headers["Authorization"]


def test_a_valid_token_is_reused(tmp_path: Path) -> None:
    path, calls = _kubeconfig(tmp_path, lifetime_s=3600)
    with http_client(path) as c:
        assert _token(c) == "Bearer token-1"
        assert _token(c) == "Bearer token-1"
    assert calls.read_text() == "1"


def test_an_expired_token_is_fetched_again(tmp_path: Path) -> None:
    # the loader treats a token as expired some minutes early: 60 s is already "expired"
    path, calls = _kubeconfig(tmp_path, lifetime_s=60)
    with http_client(path) as c:
        first = _token(c)
        second = _token(c)
    assert first != second and second.startswith("Bearer token-")
    assert int(calls.read_text()) >= 2
