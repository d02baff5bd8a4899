"""Before a kubeconfig run creates anything: a wrong path, an unreachable API server,
rejected credentials and missing RBAC each end in one clear UserError line.

The unreachable server is a closed port on 127.0.0.1 (nothing leaves the machine); the
other answers come from an httpx MockTransport standing in for the API server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from bench import kube
from bench.errors import UserError
from bench.providers.kubeconfig import preflight


def hopbench(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, check=False)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server,
                                               "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "abc"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return path


def _fake_api(monkeypatch: pytest.MonkeyPatch,
              handler: Callable[[httpx.Request], httpx.Response]) -> None:
    real = kube.Kube

    def client(kubeconfig: Path, **kw: object) -> kube.Kube:
        return real(kubeconfig, transport=lambda verify: httpx.MockTransport(handler))

    monkeypatch.setattr(preflight, "Kube", client)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"kubeconfig {tmp_path}/nope does not exist"):
        preflight.connect(tmp_path / "nope")


def test_directory_and_garbage(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is not a file"):
        preflight.connect(tmp_path)
    (tmp_path / "bad").write_text("clusters: [unclosed")
    with pytest.raises(UserError, match="not readable YAML"):
        preflight.connect(tmp_path / "bad")
    (tmp_path / "empty").write_text("apiVersion: v1\nkind: Config\n")
    with pytest.raises(UserError, match="names no cluster"):
        preflight.connect(tmp_path / "empty")


def test_unreachable_api_server(tmp_path: Path) -> None:
    port = _closed_port()
    cfg = write_kubeconfig(tmp_path / "kc", f"https://127.0.0.1:{port}")
    with pytest.raises(UserError) as err:
        preflight.connect(cfg)
    msg = str(err.value)
    assert msg.startswith(f"cannot reach the API server at https://127.0.0.1:{port}")
    assert "\n" not in msg


def test_rejected_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_api(monkeypatch, lambda req: httpx.Response(401, json={"message": "Unauthorized"}))
    with pytest.raises(UserError, match="rejected the credentials .*401"):
        preflight.connect(write_kubeconfig(tmp_path / "kc", "https://api.test:6443"))


def test_not_an_api_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_api(monkeypatch, lambda req: httpx.Response(200, text="<html>hello</html>"))
    with pytest.raises(UserError, match="does not look like a Kubernetes API server"):
        preflight.connect(write_kubeconfig(tmp_path / "kc", "https://api.test:6443"))


def test_missing_rbac_is_listed_on_one_line(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    denied: set[tuple[str, str]] = set()  # (verb, resource) the fake user may not do

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/version":
            return httpx.Response(200, json={"gitVersion": "v1.35.0"})
        a = json.loads(req.content)["spec"]["resourceAttributes"]
        return httpx.Response(201, json={"status": {
            "allowed": (a["verb"], a["resource"]) not in denied}})

    _fake_api(monkeypatch, handler)
    api = preflight.connect(write_kubeconfig(tmp_path / "kc", "https://api.test:6443"))
    preflight.require_permissions(api)
    denied.update({("create", "daemonsets"), ("watch", "endpointslices")})
    with pytest.raises(UserError) as err:
        preflight.require_permissions(api)
    msg = str(err.value)
    assert msg.endswith("missing RBAC permissions for a hopbench run: create daemonsets.apps, "
                        "watch endpointslices.discovery.k8s.io") and "\n" not in msg
    denied.update((p.verb, p.resource) for p in preflight.REQUIRED if p.resource != "pods")
    with pytest.raises(UserError, match=r": create namespaces, delete namespaces, list nodes, "
                                        r"create serviceaccounts, create secrets and 4 more$"):
        preflight.require_permissions(api)


WIDE = {**os.environ, "COLUMNS": "400"}  # rich wraps at the terminal width, 80 in a pipe


def test_cli_bad_kubeconfig_path_is_one_line(tmp_path: Path) -> None:
    res = hopbench("run", "--kubeconfig", str(tmp_path / "missing.yaml"),
                   "--proxy-mode", "iptables", "--out", str(tmp_path / "out"), env=WIDE,
                   timeout=60)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("hopbench: error: kubeconfig "), res.stderr
    assert "does not exist" in lines[0]
    assert not (tmp_path / "out").exists()


def test_cli_unreachable_api_is_one_line(tmp_path: Path) -> None:
    cfg = write_kubeconfig(tmp_path / "kc", f"https://127.0.0.1:{_closed_port()}")
    res = hopbench("run", "--kubeconfig", str(cfg), "--proxy-mode", "iptables",
                   "--out", str(tmp_path / "out"), env=WIDE, timeout=60)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("hopbench: error: cannot reach the API server"), res.stderr
    assert not (tmp_path / "out").exists()
