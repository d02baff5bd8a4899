"""Images into a hopbench cluster, and `run --kubeconfig` on such a cluster, as a user types
them: `hopbench cluster load-image` puts an archive into every node's containerd (checked
with `ctr` on each node's socket), `run --kubeconfig` without `--agent-image` builds and
loads the agent image itself, and without `--proxy-mode` measures the cluster's own mode.

The cluster is this module's own ("hbimage", iptables mode, kube-proxy from flags: no
kube-system/kube-proxy ConfigMap, so the mode comes from the agents).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.build import agentimage
from bench.build.images import ImageSpec, write_archive
from bench.cluster import imageload
from bench.cluster.local import cluster, teardown
from bench.cluster.local.spec import ClusterSpec
from bench.results.store import load_meta
from tests.integration.conftest import hopbench

NAME = "hbimage"
MODE = "iptables"
WIDE = {**os.environ, "COLUMNS": "400"}  # one error line stays one line in a pipe
RUN = ("--trials", "1", "--scenario", "scale-up", "--trial-timeout", "20")


@pytest.fixture(scope="module")
def image_cluster(tools) -> Iterator[ClusterSpec]:  # type: ignore[no-untyped-def]
    spec = cluster.up(ClusterSpec(name=NAME, nodes=2, proxy_mode=MODE), say=lambda m: None,
                      tools=tools)
    try:
        yield spec
    finally:
        teardown.teardown(spec)


def _images(spec: ClusterSpec, node: str) -> set[str]:
    """What the node's containerd holds, asked with ctr directly (not through hopbench)."""
    proc = subprocess.run(["ctr", "-a", str(spec.containerd_sock(node)), "-n", "k8s.io",
                           "images", "ls", "-q"], capture_output=True, text=True, check=True)
    return set(proc.stdout.split())


def _remove(spec: ClusterSpec, ref: str) -> None:
    for node in spec.node_names():
        subprocess.run(["ctr", "-a", str(spec.containerd_sock(node)), "-n", "k8s.io",
                        "images", "rm", ref], capture_output=True, check=False)


def _one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    return lines[0]


def test_load_image_into_every_node(image_cluster: ClusterSpec, tmp_path: Path) -> None:
    ref = f"localhost/hopbench/loadtest:{secrets.token_hex(4)}"
    payload = tmp_path / "payload"
    payload.write_text("hello\n")
    archive = write_archive(ImageSpec(ref, {"/payload": payload}, ["/payload"], []),
                            tmp_path / "loadtest.oci.tar")
    nodes = image_cluster.node_names()
    assert all(ref not in _images(image_cluster, n) for n in nodes)
    res = hopbench("cluster", "load-image", NAME, str(archive), env=WIDE)
    assert res.returncode == 0, res.stderr
    print(res.stderr)
    for node in nodes:
        assert ref in _images(image_cluster, node), node
    assert f"imported {ref} into {', '.join(nodes)}" in res.stderr
    again = hopbench("cluster", "load-image", NAME, str(archive), env=WIDE)
    assert again.returncode == 0 and f"{ref} already on {', '.join(nodes)}" in again.stderr


def test_load_image_user_errors_are_one_line(image_cluster: ClusterSpec,
                                             tmp_path: Path) -> None:
    line = _one_error_line(hopbench("cluster", "load-image", "hbnosuch",
                                    str(tmp_path / "none.tar"), env=WIDE))
    assert line.startswith("hopbench: error: ")
    assert "no local cluster named 'hbnosuch'" in line or "does not exist" in line
    f = tmp_path / "payload"
    f.write_text("x\n")
    archive = write_archive(ImageSpec("localhost/hopbench/loadtest:unused", {"/x": f}, ["/x"],
                                      []), tmp_path / "ok.oci.tar")
    line = _one_error_line(hopbench("cluster", "load-image", "hbnosuch", str(archive),
                                    env=WIDE))
    assert line == ("hopbench: error: no local cluster named 'hbnosuch' "
                    "(see `hopbench cluster status`)")
    line = _one_error_line(hopbench("cluster", "load-image", NAME, str(tmp_path / "none.tar"),
                                    env=WIDE))
    assert line == f"hopbench: error: image archive {tmp_path}/none.tar does not exist"


def test_run_kubeconfig_builds_and_loads_the_agent_image(image_cluster: ClusterSpec,
                                                         tmp_path: Path) -> None:
    ref = agentimage.default_ref()
    _remove(image_cluster, ref)  # whatever an earlier test loaded: this run must load it
    assert all(ref not in _images(image_cluster, n) for n in image_cluster.node_names())
    res = hopbench("run", "--kubeconfig", str(image_cluster.kubeconfig), "--proxy-mode", MODE,
                   *RUN, "--out", str(tmp_path / "run"), env=WIDE, timeout=900)
    print(res.stderr)
    assert res.returncode == 0, res.stderr
    assert (f"agent image: none given (--agent-image), building and loading it into local "
            f"cluster {NAME!r}") in res.stderr
    for node in image_cluster.node_names():
        assert ref in _images(image_cluster, node), node
    meta = load_meta(tmp_path / "run")
    assert meta["status"] == "finished" and meta["agent_image"] == ref


@pytest.fixture(scope="module")
def agent_ref(image_cluster: ClusterSpec) -> str:
    image = agentimage.build(say=print)
    imageload.load_archive(imageload.OwnCluster("local", NAME), image.archive, say=print)
    return image.ref


def test_run_kubeconfig_without_proxy_mode_measures_the_clusters_own(
        image_cluster: ClusterSpec, agent_ref: str, tmp_path: Path) -> None:
    res = hopbench("run", "--kubeconfig", str(image_cluster.kubeconfig), "--agent-image",
                   agent_ref, *RUN, "--out", str(tmp_path / "run"), env=WIDE, timeout=900)
    print(res.stderr)
    assert res.returncode == 0, res.stderr
    assert f"measuring the cluster's kube-proxy mode: {MODE}" in res.stderr
    meta = load_meta(tmp_path / "run")
    assert meta["status"] == "finished" and meta["proxy_modes"] == [MODE]
    assert meta["kube_proxy_mode"] == MODE
    assert meta["kube_proxy_mode_source"].startswith("node agents")
