"""`kubectl logs` and `kubectl exec` work on a fresh local cluster (issue 9, defect 9).

Both go through the API server to the kubelet, which asks the API server whether the
caller (the API server's kubelet-client identity) may; `cluster up` grants it
system:kubelet-api-admin, as kubeadm does. Right after `up`, with no wait: the kubelet
caches a refusal for 30 s, so a grant made late would still fail here.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import workloads
from bench.cluster.local import cluster, teardown
from bench.cluster.local.spec import ClusterSpec
from bench.cluster.toolset import Toolset
from bench.kube import Kube

pytestmark = pytest.mark.cluster
NAME = "guardr3"
NS = "kubectl-check"


@pytest.fixture(scope="module")
def fresh(tools: Toolset) -> Iterator[ClusterSpec]:
    spec = cluster.up(ClusterSpec(name=NAME, nodes=1, proxy_mode="iptables"),
                      say=lambda m: None, tools=tools)
    try:
        yield spec
    finally:
        teardown.teardown(spec)


@pytest.fixture(scope="module")
def pod(fresh: ClusterSpec, tools: Toolset) -> str:
    with Kube(fresh.kubeconfig) as api:
        workloads.deploy_target(api, NS, "web", 1,
                                workloads.target_image(tools.pins.kubernetes))
        return str(workloads.wait_ready_pods(api, NS, "web", 1)[0]["metadata"]["name"])


def _kubectl(tools: Toolset, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tools.path("kubectl")), "--kubeconfig", str(kubeconfig),
                           "-n", NS, *args], capture_output=True, text=True, timeout=60)


def test_kubectl_logs(fresh: ClusterSpec, tools: Toolset, pod: str) -> None:
    res = _kubectl(tools, fresh.kubeconfig, "logs", pod)
    assert res.returncode == 0, res.stderr
    assert "Started HTTP server on port 8080" in res.stdout, res.stdout


def test_kubectl_exec(fresh: ClusterSpec, tools: Toolset, pod: str) -> None:
    res = _kubectl(tools, fresh.kubeconfig, "exec", pod, "--",
                   "/agnhost", "entrypoint-tester", "hello", "from-exec")
    assert res.returncode == 0, res.stderr
    assert "hello" in res.stdout and "from-exec" in res.stdout, res.stdout
