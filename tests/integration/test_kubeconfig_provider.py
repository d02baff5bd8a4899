"""The kubeconfig provider end to end, against a real local cluster reached only through
its kubeconfig: the agent runs as a DaemonSet from the image built here without Docker
(bench.build.agentimage, cached), and the same runner measures the same hops as the local
provider. Afterwards nothing of hopbench is left in the cluster, also after Ctrl-C.

The cluster is this module's own ("hbkcfg", nftables mode, so the mode the agents read
off the nodes' rules is not kube-proxy's default).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import runner
from bench.build import agentimage
from bench.cluster.local import cluster, live, pki, teardown
from bench.cluster.local.spec import ClusterSpec
from bench.errors import ClusterError, UserError
from bench.poll import wait_until
from bench.providers.kubeconfig.provider import KubeconfigProvider
from bench.providers.local import LocalProvider
from bench.results.schema import ALL_NODES
from bench.results.store import load_hops, load_meta
from bench.scenarios import ScenarioConfig

NAME = "hbkcfg"
MODE = "nftables"
TRIALS = 3
WIDE = {**os.environ, "COLUMNS": "400"}  # one error line stays one line in a pipe


@pytest.fixture(scope="module")
def kcfg_cluster(tools) -> Iterator[ClusterSpec]:  # type: ignore[no-untyped-def]
    spec = cluster.up(ClusterSpec(name=NAME, nodes=2, proxy_mode=MODE), say=lambda m: None,
                      tools=tools)
    try:
        yield spec
    finally:
        teardown.teardown(spec)


@pytest.fixture(scope="module")
def agent_image(kcfg_cluster: ClusterSpec) -> str:
    image = agentimage.build(say=print)
    print(f"agent image {image.ref}: {image.seconds:.1f}s "
          f"({'cached' if image.rootfs_cached else 'cold'} Debian layer)")
    started = time.monotonic()
    for node in kcfg_cluster.node_names():
        cluster.import_images(kcfg_cluster, node, {image.ref: image.archive})
    print(f"imported into {kcfg_cluster.nodes} nodes in {time.monotonic() - started:.1f}s")
    return image.ref


def _scenario() -> ScenarioConfig:
    return ScenarioConfig(trials=TRIALS, probe_interval_ms=5.0, trial_timeout_s=20)


@pytest.fixture(scope="module")
def runs(kcfg_cluster: ClusterSpec, agent_image: str, tools,  # type: ignore[no-untyped-def]
         tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("kcfg")
    local = LocalProvider(kcfg_cluster, tools)
    try:
        local_dir = runner.run(local, runner.RunConfig(
            modes=(MODE,), out_dir=base / "local", scenario=_scenario()), say=lambda m: None)
    finally:
        local.close()
    said: list[str] = []
    provider = KubeconfigProvider.open(kcfg_cluster.kubeconfig, agent_image=agent_image,
                                       modes=(MODE,), say=said.append)
    try:
        kcfg_dir = runner.run(provider, runner.RunConfig(
            modes=(MODE,), out_dir=base / "kubeconfig", scenario=_scenario()), say=said.append)
    finally:
        provider.close()
    print("\n".join(said))
    return {"local": local_dir, "kubeconfig": kcfg_dir}


def leftovers(spec: ClusterSpec) -> dict[str, list[str]]:
    """Everything of hopbench the API server still holds (admin credentials)."""
    with live.api_client(spec, timeout=10) as api:
        def names(path: str) -> list[str]:
            items = api.list(path)
            return sorted(f"{i['metadata'].get('namespace', '')}/{i['metadata']['name']}"
                          .lstrip("/") for i in items
                          if "hopbench" in i["metadata"]["name"]
                          or "hopbench" in i["metadata"].get("namespace", "")
                          or "hopbench" in str(i["metadata"].get("labels", {})))

        return {kind: found for kind, path in (
            ("namespaces", "/api/v1/namespaces"),
            ("clusterroles", "/apis/rbac.authorization.k8s.io/v1/clusterroles"),
            ("clusterrolebindings", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"),
            ("daemonsets", "/apis/apps/v1/daemonsets"),
            ("pods", "/api/v1/pods"), ("serviceaccounts", "/api/v1/serviceaccounts"),
            ("secrets", "/api/v1/secrets")) if (found := names(path))}


def _hop_set(run_dir: Path) -> dict[tuple[str, str], set[str]]:
    hops = load_hops(run_dir)
    return {(str(d), str(h)): set(g.node) for (d, h), g in hops.groupby(["direction", "hop"])}


def test_same_hop_set_as_the_local_provider(runs: dict[str, Path]) -> None:
    local, kcfg = _hop_set(runs["local"]), _hop_set(runs["kubeconfig"])
    assert set(kcfg) == set(local)
    for key, nodes in local.items():
        assert kcfg[key] == nodes, key
    every = {"n1", "n2", ALL_NODES}
    per_node = [k for k, nodes in kcfg.items() if len(nodes) > 1]
    assert per_node and all(kcfg[k] == every for k in per_node)
    hops = load_hops(runs["kubeconfig"])
    assert hops.trial.nunique() == TRIALS
    assert hops.censored.mean() < 0.1, hops[hops.censored]


def test_run_json_records_cluster_and_clocks(runs: dict[str, Path], agent_image: str) -> None:
    meta = load_meta(runs["kubeconfig"])
    assert meta["status"] == "finished" and meta["provider"] == "kubeconfig"
    assert meta["kube_proxy_mode"] == MODE and meta["nodes"] == ["n1", "n2"]
    assert meta["agent_image"] == agent_image
    assert set(meta["kube_proxy_observed"]) == {"n1", "n2"}
    m = meta["modes"][MODE]
    assert m["kube_proxy_config"]["mode"] == MODE
    offsets = m["clock_offsets"]
    assert set(offsets) == {"n1", "n2"}
    print(f"clock offsets via the pod proxy: {offsets}")
    # one kernel: the agents report the harness's boot id, nothing is estimated
    assert offsets == {n: {"offset_ns": 0, "uncertainty_ns": 0, "clock": "harness"}
                       for n in ("n1", "n2")}
    assert all(c["shared"] for c in meta["clock_check"].values())
    agents = m["resolution"]["agents"]
    assert all(a["rule_method"] == "netlink" for a in agents.values())


def test_nothing_left_after_the_run(runs: dict[str, Path], kcfg_cluster: ClusterSpec) -> None:
    assert leftovers(kcfg_cluster) == {}


def test_other_mode_refused_before_anything_is_created(kcfg_cluster: ClusterSpec,
                                                       agent_image: str) -> None:
    with pytest.raises(UserError, match=f"runs in {MODE} mode .*--proxy-mode {MODE}"):
        KubeconfigProvider.open(kcfg_cluster.kubeconfig, agent_image=agent_image,
                                modes=("iptables",), say=lambda m: None)
    assert leftovers(kcfg_cluster) == {}


def test_shared_clock_meets_any_max_skew(kcfg_cluster: ClusterSpec, agent_image: str) -> None:
    """The agents share the harness's kernel clock here: offset exactly 0 ± 0, so even the
    tightest --max-skew is met (the refusal itself is a unit test on clusterfacts)."""
    provider = KubeconfigProvider.open(kcfg_cluster.kubeconfig, agent_image=agent_image,
                                       modes=(MODE,), max_skew_ms=0.001, say=lambda m: None)
    provider.close()
    assert leftovers(kcfg_cluster) == {}


def test_missing_image_is_one_clear_line(kcfg_cluster: ClusterSpec) -> None:
    with pytest.raises(UserError, match="agent image localhost/hopbench/agent:absent cannot "
                                        "be used on node n[12]: ErrImageNeverPull"):
        KubeconfigProvider.open(kcfg_cluster.kubeconfig,
                                agent_image="localhost/hopbench/agent:absent",
                                modes=(MODE,), say=lambda m: None)
    assert leftovers(kcfg_cluster) == {}


def test_taken_namespace_is_refused_and_kept(kcfg_cluster: ClusterSpec,
                                             agent_image: str) -> None:
    """Someone else's hopbench-system (another run) is refused and left as it was."""
    with live.api_client(kcfg_cluster, timeout=10) as api:
        api.create("/api/v1/namespaces", {"kind": "Namespace",
                                          "metadata": {"name": "hopbench-system"}})
        try:
            with pytest.raises(UserError, match="namespace hopbench-system already exists"):
                KubeconfigProvider.open(kcfg_cluster.kubeconfig, agent_image=agent_image,
                                        modes=(MODE,), say=lambda m: None)
            assert api.get("/api/v1/namespaces/hopbench-system") is not None
        finally:
            api.delete("/api/v1/namespaces/hopbench-system")
        deadline = time.monotonic() + 60
        while api.get("/api/v1/namespaces/hopbench-system") is not None:
            assert time.monotonic() < deadline
            time.sleep(0.5)
    assert leftovers(kcfg_cluster) == {}


def test_missing_rbac_is_one_line(kcfg_cluster: ClusterSpec, tmp_path: Path) -> None:
    """A real user of this cluster (client certificate from its CA) without any role."""
    ca = pki.Pair(kcfg_cluster.pki / "ca.crt", kcfg_cluster.pki / "ca.key")
    nobody = pki.issue(ca, tmp_path, "nobody", "hopbench-test-nobody")
    cfg = pki.kubeconfig(tmp_path / "kubeconfig", f"https://127.0.0.1:{kcfg_cluster.api_port}",
                         ca.cert, nobody, "nobody")
    res = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--kubeconfig", str(cfg),
                          "--proxy-mode", MODE, "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, env=WIDE, timeout=120, check=False)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("hopbench: error: kubeconfig ") and \
        "missing RBAC permissions for a hopbench run: create namespaces" in lines[0]
    assert not (tmp_path / "out").exists()
    assert leftovers(kcfg_cluster) == {}


def _trial_pods_exist(spec: ClusterSpec) -> bool:
    with live.api_client(spec, timeout=5) as api:
        try:
            pods = api.list("/api/v1/pods", labelSelector="hopbench.io/role=trial")
        except ClusterError:
            return False
    return bool(pods)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_cli_run_leaves_nothing(kcfg_cluster: ClusterSpec, agent_image: str,
                                            tmp_path: Path, sig: int) -> None:
    cmd = [sys.executable, "-m", "bench.cli", "run", "--kubeconfig",
           str(kcfg_cluster.kubeconfig), "--proxy-mode", MODE, "--trials", "5",
           "--agent-image", agent_image, "--out", str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=WIDE)
    try:
        def at_trials() -> bool:  # mid-run: agents, trial namespace, pods
            assert proc.poll() is None, proc.communicate()
            return _trial_pods_exist(kcfg_cluster)

        wait_until(at_trials, 120, 0.5, "the run to get to its trials")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert leftovers(kcfg_cluster) == {}
    meta: dict[str, Any] = load_meta(tmp_path / "run")
    assert meta["status"] == "interrupted"
