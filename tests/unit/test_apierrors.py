"""The cluster going away mid-run is one ClusterError line, whichever client saw it first."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bench import runner
from bench.apierrors import lost_cluster
from bench.errors import ClusterError
from bench.kube import ApiStatusError, ApiUnreachable, Kube
from bench.scenarios import ScenarioConfig


def _closed_port() -> int:
    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unreachable(tmp_path: Path) -> ApiUnreachable:
    """What bench.kube raises when the API server is gone (real, on loopback)."""
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
           "clusters": [{"name": "k", "cluster": {
               "server": f"https://127.0.0.1:{_closed_port()}",
               "insecure-skip-tls-verify": True}}],
           "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
           "users": [{"name": "u", "user": {"token": "t"}}]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    with Kube(path, timeout=5) as api, pytest.raises(ApiUnreachable) as info:
        api.get("/api/v1/namespaces/x/pods")
    return info.value


def test_unreachable_api_server_is_one_short_line(tmp_path: Path) -> None:
    err = lost_cluster(_unreachable(tmp_path), "resume later")
    assert isinstance(err, ClusterError) and err.exit_code == 3
    text = str(err)
    assert text.startswith("the API server stopped answering (ApiUnreachable: ")
    assert "Connection refused" in text and text.endswith("; resume later")
    assert "\n" not in text and len(text) < 250


def test_httpx_and_server_errors_too() -> None:
    with pytest.raises(httpx.ConnectError) as info:
        httpx.get(f"http://127.0.0.1:{_closed_port()}/")
    assert lost_cluster(info.value, "x") is not None
    assert lost_cluster(ApiStatusError("GET /x: HTTP 503", 503), "x") is not None
    agent = lost_cluster(ConnectionRefusedError(111, "Connection refused"), "x")
    assert agent is not None and str(agent).startswith("the cluster (a node agent)")


@pytest.mark.parametrize("exc", [ApiStatusError("GET /x: HTTP 404", 404),
                                 ApiStatusError("POST /x: HTTP 409", 409),
                                 ValueError("a bug"), KeyError("items")])
def test_refusals_and_bugs_are_left_alone(exc: BaseException) -> None:
    assert lost_cluster(exc, "x") is None


class _GoneProvider:
    """A provider whose cluster went away: every call to it fails as bench.kube does."""

    name = "fake"
    kubeconfig = Path("/nonexistent")

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def provenance(self) -> dict[str, Any]:
        return {"provider": "fake"}

    def set_proxy_mode(self, mode: str) -> None:
        raise self.error


def test_runner_turns_it_into_cluster_error_and_keeps_the_run(tmp_path: Path) -> None:
    cfg = runner.RunConfig(modes=("iptables",), out_dir=tmp_path / "run",
                           scenario=ScenarioConfig(trials=1))
    with pytest.raises(ClusterError, match="API server stopped answering") as info:
        runner.run(_GoneProvider(_unreachable(tmp_path)), cfg, say=lambda m: None)  # type: ignore[arg-type]
    assert f"hopbench run --resume {tmp_path / 'run'}" in str(info.value)
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["status"] == "interrupted"
