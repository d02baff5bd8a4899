"""The local cluster end to end: real pods, real kube-proxy rules, real requests, clean teardown."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench import workloads
from bench.cluster.local import live, netns, teardown
from bench.cluster.local.nsprobe import who_answers
from bench.cluster.local.spec import ClusterSpec

NS = "hbtest-web"


def _root_rules() -> tuple[str, str]:
    ipt = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    nft = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    return "\n".join(ln for ln in ipt.splitlines() if not ln.startswith("#")), nft


ROOT_RULES_BEFORE = _root_rules()


@pytest.fixture(scope="module")
def web(local_cluster: ClusterSpec, tools) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    with live.api_client(local_cluster) as api:
        workloads.deploy_target(api, NS, "web", 2, workloads.target_image(tools.pins.kubernetes))
        pods = workloads.wait_ready_pods(api, NS, "web", 2)
        svc = api.get(f"/api/v1/namespaces/{NS}/services/web") or {}
    return svc["spec"]["clusterIP"], sorted(p["metadata"]["name"] for p in pods)


def test_pods_spread_over_both_nodes(local_cluster: ClusterSpec, web) -> None:  # type: ignore[no-untyped-def]
    with live.api_client(local_cluster) as api:
        pods = api.list(f"/api/v1/namespaces/{NS}/pods")
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["n1", "n2"]


def _both_pods_answer_from_every_node(spec: ClusterSpec, ip: str, pods: list[str]) -> None:
    for node in spec.node_names():
        seen = who_answers(spec.node_ns(node), ip, 80, requests=3000, timeout_s=30, stop_after=2)
        assert sorted(k for k in seen if k) == pods, f"{node}: answers {seen}"


def test_iptables_mode_reaches_both_pods(local_cluster: ClusterSpec, web) -> None:  # type: ignore[no-untyped-def]
    ip, pods = web
    _both_pods_answer_from_every_node(local_cluster, ip, pods)
    rules = netns.run_in(local_cluster.node_ns("n1"), ["iptables-save", "-t", "nat"])
    assert "KUBE-SERVICES" in rules.stdout and ip in rules.stdout


def test_switch_to_nftables_reaches_both_pods(local_cluster: ClusterSpec, web, tools) -> None:  # type: ignore[no-untyped-def]
    ip, pods = web
    live.set_proxy_mode(local_cluster.name, "nftables", say=lambda m: None, tools=tools)
    for node in local_cluster.node_names():
        ns = local_cluster.node_ns(node)
        nft = netns.run_in(ns, ["nft", "list", "table", "ip", "kube-proxy"]).stdout
        assert ip in nft
        nat = netns.run_in(ns, ["iptables-save", "-t", "nat"]).stdout
        assert ip not in nat, "iptables-mode rules for the Service survived the switch"
    _both_pods_answer_from_every_node(local_cluster, ip, pods)


def test_unknown_clusterip_fails_fast_inside_fabric(local_cluster: ClusterSpec) -> None:
    seen = who_answers(local_cluster.node_ns("n1"), "10.96.255.254", 80, requests=2,
                       timeout_s=5)
    assert set(seen) == {""}


def test_root_namespace_untouched(local_cluster: ClusterSpec) -> None:
    assert _root_rules() == ROOT_RULES_BEFORE
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    assert "10.244." not in routes and "10.96." not in routes and "10.88." not in routes
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "veth" not in links


def test_status_reports_memory(local_cluster: ClusterSpec) -> None:
    (row,) = live.status(local_cluster.name)
    assert row["status"] == "up" and row["proxy_mode"] == "nftables"
    assert all(v > 10 for v in row["node_rss_mib"].values())  # type: ignore[attr-defined]


def test_name_in_use_refused(local_cluster: ClusterSpec) -> None:
    from tests.integration.conftest import hopbench

    res = hopbench("cluster", "up", "--name", local_cluster.name, "--nodes", "1")
    assert res.returncode == 2
    assert "already in use" in res.stderr and len(res.stderr.strip().splitlines()) <= 2
    (row,) = live.status(local_cluster.name)
    assert row["status"] == "up"  # the running cluster was not touched


def test_teardown_leaves_nothing(local_cluster: ClusterSpec) -> None:
    counts = live.down(local_cluster.name, say=lambda m: None)
    assert counts["processes"] > 0
    left = teardown.leftovers(local_cluster)
    assert not any(left.values()), left
    assert _root_rules() == ROOT_RULES_BEFORE
    mounts = Path("/proc/self/mountinfo").read_text()
    assert "/hopbench/" not in mounts and "cni-" not in mounts
    # idempotent
    assert live.down(local_cluster.name, say=lambda m: None)["processes"] == 0
