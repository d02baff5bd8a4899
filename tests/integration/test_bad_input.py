"""Bad input fails with one clear line, a non-zero exit, and creates nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cluster.local import netns, teardown
from bench.cluster.local.spec import ClusterSpec
from bench.paths import state_root
from bench.poll import wait_until
from tests.integration.conftest import hopbench


def _nothing_created(name: str) -> None:
    assert not (state_root() / name).exists()
    assert not [n for n in os.listdir(netns.NETNS_DIR) if n.startswith(f"hb-{name}-")] \
        if netns.NETNS_DIR.exists() else True


def _one_line(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert res.returncode != 0
    err = " ".join(res.stderr.split())  # rich may wrap a long line
    assert "Traceback" not in res.stderr, res.stderr
    assert err.startswith("hopbench: error:"), res.stderr
    for n in needles:
        assert n in err, res.stderr


def test_ipvs_refused_without_ip_vs() -> None:
    res = hopbench("cluster", "up", "--name", "hbbad", "--proxy-mode", "ipvs")
    _one_line(res, "IP_VS", "kind")
    _nothing_created("hbbad")


def test_unknown_mode_refused() -> None:
    res = hopbench("cluster", "up", "--name", "hbbad", "--proxy-mode", "userspace")
    _one_line(res, "unknown proxy mode 'userspace'")
    _nothing_created("hbbad")


def test_unknown_component_refused() -> None:
    res = hopbench("cluster", "up", "--name", "hbbad",
                   "--component-arg", "kube-dns:--foo=bar")
    _one_line(res, "unknown component 'kube-dns'")
    _nothing_created("hbbad")


def test_bad_name_refused() -> None:
    res = hopbench("cluster", "up", "--name", "Bad_Name")
    _one_line(res, "cluster name")


def test_not_root_refused() -> None:
    # a user namespace without a mapping for us: euid 65534, no capabilities on the host
    res = subprocess.run(["unshare", "--user", sys.executable, "-m", "bench.cli", "cluster",
                          "up", "--name", "hbbad"], capture_output=True, text=True, timeout=60)
    _one_line(res, "root")
    _nothing_created("hbbad")


def test_missing_tool_refused(tmp_path: Path) -> None:
    needed = ["containerd", "ctr", "iptables", "nft", "conntrack", "ip", "nsenter", "modprobe",
              "unshare", "umount", "sh"]
    for tool in needed:
        if found := shutil.which(tool):
            (tmp_path / tool).symlink_to(found)
    env = {**os.environ, "PATH": str(tmp_path)}  # everything but runc
    res = hopbench("cluster", "up", "--name", "hbbad", env=env)
    _one_line(res, "runc", "doctor --fix")
    _nothing_created("hbbad")


def test_up_after_kill9_cleans_leftovers(tools) -> None:  # type: ignore[no-untyped-def]
    name = "hbcrash"
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "cluster", "up", "--name", name,
                             "--nodes", "1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    spec = ClusterSpec(name=name, nodes=1)
    wait_until((spec.logs / "kube-apiserver.log").exists, 60, 0.1, "the API server's log")
    time.sleep(1.0)  # mid bring-up: daemons running, state says "starting"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert teardown.cluster_netns(spec), "the killed run should have left namespaces"
    try:
        res = hopbench("cluster", "up", "--name", name, "--nodes", "1")
        assert res.returncode == 0, res.stderr
        assert "cleaned what an earlier run" in res.stderr
    finally:
        res = hopbench("cluster", "down", "--name", name)
    assert res.returncode == 0, res.stderr
    assert not any(teardown.leftovers(spec).values())


# `run` options: each refused up front, in one line naming the option, creating nothing
# (issue 9, defect 7). The cluster name is ours: if a check were missing, the run would
# bring a cluster up under it (and the test would fail on what it created).
RUN_NAME = "guardr1"


@pytest.mark.parametrize(("args", "needle"), [
    (["--trials", "0"], "--trials 0:"),
    (["--parallel", "0"], "--parallel 0:"),
    (["--spacing-ms", "-5"], "--spacing-ms -5:"),
    (["--trial-timeout", "0"], "--trial-timeout 0:"),
    (["--trial-timeout", "nan"], "--trial-timeout nan:"),
    (["--probe-interval-ms", "0"], "--probe-interval-ms 0:"),
    (["--probe-idle-interval-ms", "-1"], "--probe-idle-interval-ms -1:"),
    (["--nodes", "0"], "--nodes 0:"),
    (["--nodes", "99"], "--nodes 99:"),
    (["--max-skew", "1"], "--kubeconfig runs only"),
    (["--proxy-mode", "userspace"], "unknown proxy mode 'userspace'"),
    (["--scenario", "rollout"], "unknown scenario 'rollout'"),
    (["--component-arg", "kube-dns:--x=1"], "unknown component 'kube-dns'"),
    (["--out", "/proc/foo"], "--out /proc/foo: cannot create a directory in /proc"),
    (["--resume", "/nonexistent/run"], "--resume /nonexistent/run:"),
])
def test_run_option_refused_up_front(args: list[str], needle: str, tmp_path: Path) -> None:
    if "--out" not in args and "--resume" not in args:
        args = [*args, "--out", str(tmp_path / "run")]
    res = hopbench("run", "--cluster", RUN_NAME, "--trials", "1", *args, timeout=600)
    _one_line(res, needle)
    assert res.returncode == 2
    assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1, res.stderr
    assert not (tmp_path / "run").exists()
    _nothing_created(RUN_NAME)


def test_run_cluster_name_refused_up_front() -> None:
    res = hopbench("run", "--cluster", "Bad_Name", "--trials", "1")
    _one_line(res, "--cluster 'Bad_Name'")
    assert res.returncode == 2
