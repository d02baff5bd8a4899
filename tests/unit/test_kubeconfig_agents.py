"""How the kubeconfig provider reports agent pods that cannot run, and that it turns
SIGTERM into a clean shutdown and puts the signal handlers back. The API server is an
httpx MockTransport with hand-written answers."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.errors import UserError
from bench.kube import Kube
from bench.providers.kubeconfig import AgentOptions, KubeconfigProvider, _pod_state
from tests.unit.test_kubeconfig_preflight import write_kubeconfig


def _provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              handler: Callable[[httpx.Request], httpx.Response],
              image: str = "localhost/hopbench/agent:x") -> KubeconfigProvider:
    api = Kube(write_kubeconfig(tmp_path / "kc", "https://api.test"),
               transport=lambda verify: httpx.MockTransport(handler))
    return KubeconfigProvider(api, AgentOptions(image=image), say=lambda m: None)


def _pod(waiting: dict[str, str] | None = None, restarts: int = 0) -> dict[str, Any]:
    state = {"waiting": waiting} if waiting else {"running": {}}
    return {"metadata": {"name": "hopbench-agent-abcde"}, "spec": {"nodeName": "n1"},
            "status": {"phase": "Pending",
                       "containerStatuses": [{"state": state, "restartCount": restarts}]}}


def test_image_that_cannot_be_pulled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _provider(tmp_path, monkeypatch, lambda r: httpx.Response(404))
    assert p.options.pull_policy == "Never"
    with pytest.raises(UserError, match=r"agent image localhost/hopbench/agent:x cannot be "
                                        r"used on node n1: ErrImageNeverPull \(not present\).*"
                                        r"--agent-image REF"):
        p._raise_if_broken("n1", _pod({"reason": "ErrImageNeverPull", "message": "not present"}))
    assert AgentOptions(image="ghcr.io/me/agent:1").pull_policy == "IfNotPresent"


def test_port_taken_on_the_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, text="Traceback (most recent call last):\n  ...\n"
                                        "OSError: [Errno 98] Address already in use\n")

    p = _provider(tmp_path, monkeypatch, handler)
    with pytest.raises(UserError, match=r"the agent on node n1 keeps exiting \(port 10299 is "
                                        r"taken on that node\): OSError: \[Errno 98\]"):
        p._raise_if_broken("n1", _pod({"reason": "CrashLoopBackOff"}, restarts=3))
    assert seen[0].url.path.endswith("/pods/hopbench-agent-abcde/log")
    assert seen[0].url.params["previous"] == "true"
    p._raise_if_broken("n1", _pod())  # running: nothing to say


def test_pods_refused_by_admission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = {"items": [{"reason": "FailedCreate", "message": 'pods "hopbench-agent-x" is '
                         'forbidden: violates PodSecurity "baseline:latest": host namespaces'}]}
    p = _provider(tmp_path, monkeypatch, lambda r: httpx.Response(200, json=events))
    with pytest.raises(UserError, match="the cluster refused the agent pods: .*PodSecurity"):
        p._raise_if_not_created()


def test_pod_state_text() -> None:
    assert _pod_state(None) == "no agent pod"
    assert _pod_state(_pod({"reason": "ContainerCreating", "message": ""})).startswith(
        "waiting ContainerCreating")
    pending = {"status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "message": "0/3 nodes are available"}]}}
    assert _pod_state(pending) == "PodScheduled: 0/3 nodes are available"


def test_sigterm_interrupts_and_close_restores(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        pytest.skip("the test runner handles SIGTERM itself")
    p = _provider(tmp_path, monkeypatch, lambda r: httpx.Response(200, json={"items": []}))
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    p._install_signals()
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted by the handler
    p.close()
    p.close()  # idempotent
    assert {s: signal.getsignal(s) for s in before} == before
