"""The mesh path (issue 11) on the real local cluster: istiod in the control-plane
namespace, the Go mesh client on every node, the mesh hops beside kube-proxy's on the
same trials; the debounce ground truth; the refusals.

Each run brings up a cluster of its own with `run --mesh istio` (about 20 s) and removes
it, exactly as a user's first mesh run does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from bench.cluster.local import netns
from bench.paths import state_root
from bench.results.schema import HOPS
from tests.integration.conftest import hopbench
from tests.integration.test_bad_input import _nothing_created, _one_line

MESH_HOPS = {(h.direction, h.name) for h in HOPS if h.path == "mesh"}
TRIALS = "8"


def _mesh_run(out: Path, name: str, *extra: str) -> pd.DataFrame:
    res = hopbench("run", "--cluster", name, "--nodes", "2", "--proxy-mode", "iptables",
                   "--mesh", "istio", "--scenario", "scale-up,delete", "--trials", TRIALS,
                   "--out", str(out), *extra, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    _nothing_created(name)  # the run created its cluster, istiod with it, and removed both
    return pd.read_parquet(out / "hops.parquet")


@pytest.fixture(scope="module")
def default_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mesh") / "run"
    _mesh_run(out, "hbmesh")
    return out


@pytest.fixture(scope="module")
def default_run(default_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(default_dir / "hops.parquet")


def test_the_mode_block_keeps_the_mesh_instruments(default_dir: Path) -> None:
    """istiod's convergence histogram over the mode, its RSS, the clients' CPU."""
    block = json.loads((default_dir / "run.json").read_text())["modes"]["iptables"]
    assert block["mesh"] == "istio"
    sli = block["mesh_sli"]["istiod"]
    assert sum(sli["counts"]) >= int(TRIALS)  # at least a push per trial, this mode's only
    assert block["istiod_rss_bytes"] > 50 * 2**20
    cpu = block["mesh_client_cpu_fraction"]
    assert set(cpu) == {"n1", "n2"} and all(0 < v < 1 for v in cpu.values())


def test_every_node_has_every_mesh_hop_or_a_reason(default_run: pd.DataFrame) -> None:
    h = default_run
    mesh = h[h.apply(lambda r: (r.direction, r.hop) in MESH_HOPS, axis=1)]
    assert {(d, n) for d, n in zip(mesh.direction, mesh.hop, strict=True)} == MESH_HOPS
    per_node = mesh[mesh.node.isin(["n1", "n2"])]
    for (direction, hop), rows in per_node.groupby(["direction", "hop"]):
        trials = int(TRIALS)
        assert len(rows) == 2 * trials, (direction, hop)  # every node of every trial
        assert (rows.censored == (rows.censor_reason != "")).all()
        assert rows.censored.sum() <= 1, rows[rows.censored].censor_reason.tolist()


def test_causality_within_the_stated_resolution(default_run: pd.DataFrame) -> None:
    """slice <= push sent <= EDS received <= first RPC answered, per trial and node: each
    step's latency is at least minus its resolution."""
    h = default_run[(default_run.direction == "add") & default_run.node.isin(["n1", "n2"])
                    & ~default_run.censored]
    for hop in ("slice_to_push", "push_to_eds", "eds_to_lb", "lb_to_picker",
                "eds_to_mesh_traffic"):
        rows = h[h.hop == hop]
        assert len(rows) >= 2 * int(TRIALS) - 1, hop
        bad = rows[rows.latency_ms < -rows.resolution_ms]
        assert bad.empty, (hop, bad[["trial", "node", "latency_ms", "resolution_ms"]])


def test_kube_proxy_hops_of_the_same_trials_are_still_there(default_run: pd.DataFrame
                                                            ) -> None:
    h = default_run[default_run.node.isin(["n1", "n2"])]
    kp = h[(h.hop == "ready_to_traffic") & ~h.censored]
    mesh = h[(h.hop == "ready_to_mesh_traffic") & ~h.censored]
    assert len(kp) >= 2 * int(TRIALS) - 1
    pairs = kp.merge(mesh, on=["trial", "node"], suffixes=("_kp", "_mesh"))
    assert len(pairs) >= 2 * int(TRIALS) - 2  # the same trials, both paths


def test_debounce_ground_truth(default_run: pd.DataFrame,
                               tmp_path_factory: pytest.TempPathFactory) -> None:
    """PILOT_DEBOUNCE_AFTER 100 ms (istiod's default) -> 1 s raises the median slice ->
    push sent by 900 ms +- 100 ms."""
    slow = _mesh_run(tmp_path_factory.mktemp("mesh-slow") / "run", "hbmeshslow",
                     "--component-env", "istiod:PILOT_DEBOUNCE_AFTER=1s")

    def median(h: pd.DataFrame) -> float:
        rows = h[(h.hop == "slice_to_push") & (h.direction == "add")
                 & h.node.isin(["n1", "n2"]) & ~h.censored]
        return float(rows.latency_ms.median())

    fast_ms, slow_ms = median(default_run), median(slow)
    print(f"median slice -> push sent: {fast_ms:.1f} ms (100 ms), {slow_ms:.1f} ms (1 s)")
    assert 800 <= slow_ms - fast_ms <= 1000, (fast_ms, slow_ms)


def test_unknown_mesh_refused() -> None:
    res = hopbench("run", "--cluster", "hbbad", "--mesh", "linkerd", "--trials", "1")
    _one_line(res, "--mesh 'linkerd'", "unknown mesh", "istio")
    _nothing_created("hbbad")
    res = hopbench("cluster", "up", "--name", "hbbad", "--mesh", "linkerd")
    _one_line(res, "unknown mesh")
    _nothing_created("hbbad")


def test_mesh_with_a_kubeconfig_refused(tmp_path: Path) -> None:
    kc = tmp_path / "kubeconfig"
    kc.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    res = hopbench("run", "--kubeconfig", str(kc), "--mesh", "istio", "--trials", "1")
    _one_line(res, "--mesh", "--kubeconfig")


def test_istiod_that_cannot_start_names_its_log_and_leaves_nothing() -> None:
    res = hopbench("cluster", "up", "--name", "hbbadmesh", "--nodes", "1", "--mesh", "istio",
                   "--component-arg", "istiod:--monitoringAddr=127.0.0.1:99999", timeout=300)
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr
    err = " ".join(res.stderr.split())  # progress lines first, then the one error line
    tail = err[err.index("hopbench: error:"):]
    assert "istiod did not start" in tail and "istiod.log" in tail, res.stderr
    assert f"logs kept in {state_root() / '.hbbadmesh-failed-logs'}" in err, res.stderr
    log = Path(tail.split("see ")[-1].split()[0].rstrip(")"))
    assert log.exists() and "99999" in log.read_text(), err
    assert not (state_root() / "hbbadmesh").exists()
    left = [n for n in os.listdir(netns.NETNS_DIR) if n.startswith("hb-hbbadmesh-")] \
        if netns.NETNS_DIR.exists() else []
    assert not left
