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
from bench.providers.kubeconfig import deploy, podstate
from bench.providers.kubeconfig.deploy import AgentOptions
from bench.providers.kubeconfig.provider import KubeconfigProvider
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
        deploy.raise_if_broken(p.api, p.options, "n1",
                               _pod({"reason": "ErrImageNeverPull", "message": "not present"}))
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
        deploy.raise_if_broken(p.api, p.options, "n1",
                               _pod({"reason": "CrashLoopBackOff"}, restarts=3))
    assert seen[0].url.path.endswith("/pods/hopbench-agent-abcde/log")
    assert seen[0].url.params["previous"] == "true"
    deploy.raise_if_broken(p.api, p.options, "n1", _pod())  # running: nothing to say


def test_pods_refused_by_admission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = {"items": [{"reason": "FailedCreate", "message": 'pods "hopbench-agent-x" is '
                         'forbidden: violates PodSecurity "baseline:latest": host namespaces'}]}
    p = _provider(tmp_path, monkeypatch, lambda r: httpx.Response(200, json=events))
    with pytest.raises(UserError, match="the cluster refused the agent pods: .*PodSecurity"):
        deploy.raise_if_not_created(p.api, p.options.namespace)


def test_pod_state_text() -> None:
    assert podstate.pod_state(None) == "no agent pod"
    assert podstate.pod_state(_pod({"reason": "ContainerCreating", "message": ""})).startswith(
        "waiting ContainerCreating")
    pending = {"status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "message": "0/3 nodes are available"}]}}
    assert podstate.pod_state(pending) == "PodScheduled: 0/3 nodes are available"


def test_sigterm_interrupts_and_close_restores(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        pytest.skip("the test runner handles SIGTERM itself")
    p = _provider(tmp_path, monkeypatch, lambda r: httpx.Response(200, json={"items": []}))
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    p._signals.install()
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted by the handler
    p.close()
    p.close()  # idempotent
    assert {s: signal.getsignal(s) for s in before} == before


def test_problem_verdicts() -> None:
    assert podstate.problem(_pod()) is None
    assert podstate.problem(_pod({"reason": "ContainerCreating"})) is None
    assert podstate.problem(_pod({"reason": "CreateContainerConfigError"})) is None  # transient
    assert podstate.problem(_pod({"reason": "ImagePullBackOff", "message": "m"})) == \
        podstate.Problem(True, "ImagePullBackOff", "m")
    assert podstate.problem(_pod({"reason": "RunContainerError"})) == \
        podstate.Problem(False, "RunContainerError", "")
    assert podstate.problem(_pod(restarts=2)) == podstate.Problem(False, "", "")


def test_exit_error_falls_back_to_the_kubelet_message() -> None:
    p = podstate.Problem(False, "CrashLoopBackOff", "back-off 10s restarting")
    assert podstate.exit_error("n2", 10299, "\n \n", p) == \
        "the agent on node n2 keeps exiting: back-off 10s restarting"
    assert podstate.exit_error("n2", 10299, "", podstate.Problem(False, "X", "")) == \
        "the agent on node n2 keeps exiting: X"
    assert podstate.short("a  b\nc") == "a b c"
    assert podstate.short("x" * 200).endswith("…") and len(podstate.short("x" * 200)) == 160
