"""The agent's rule parsers and kube-proxy metric parsing on dumps from a real cluster.

The fixtures (tests/fixtures, see its README) were taken in a node's namespace of a local
cluster; expected.json holds the Ready pods' IPs the API listed at each dump, a source
independent of the rules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.agent.kpmetrics import min_sync_period, parse_sync
from bench.agent.rules import RuleWatcher, parse_iptables, parse_nft
from bench.cluster.local.spec import ClusterSpec

FIX = Path(__file__).parent.parent / "fixtures"
EXPECTED: dict[str, Any] = json.loads((FIX / "expected.json").read_text())
API_IP = ClusterSpec(name="fixtu1").cp_ip  # the `kubernetes` Service's one endpoint
IPT_KEY, NFT_KEY = "fx/web:http", "fx/web/tcp/http"


def dump(name: str) -> str:
    return (FIX / name).read_text()


def ips(name: str) -> set[str]:
    return set(EXPECTED[name].values())


@pytest.mark.parametrize("name", ["iptables-2.txt", "iptables-3.txt"])
def test_iptables_dump_routes_the_ready_pods(name: str) -> None:
    assert parse_iptables(dump(name)) == {
        IPT_KEY: ips(name), "default/kubernetes:https": {API_IP}}


@pytest.mark.parametrize("name", ["nft-3.txt", "nft-2.txt"])
def test_nft_dump_routes_the_ready_pods(name: str) -> None:
    assert parse_nft(dump(name)) == {
        NFT_KEY: ips(name), "default/kubernetes/tcp/https": {API_IP}}


def test_each_parser_finds_nothing_in_the_other_modes_dump() -> None:
    assert parse_nft(dump("iptables-3.txt")) == {}
    assert parse_iptables(dump("nft-3.txt")) == {}
    # after the switch to nftables, no iptables-mode route survives in the nat table
    assert parse_iptables(dump("iptables-after-switch.txt")) == {}


def test_rule_watcher_reports_the_removed_backend_once() -> None:
    calls: list[tuple[int, str, str, bool]] = []
    w = RuleWatcher(lambda *a: calls.append(a))
    w._routes = parse_nft(dump("nft-3.txt"))
    w._diff(7, parse_nft(dump("nft-2.txt")))
    gone = ips("nft-3.txt") - ips("nft-2.txt")
    assert len(gone) == 1
    assert calls == [(7, NFT_KEY, gone.pop(), False)]
    w._diff(8, parse_nft(dump("nft-2.txt")))
    assert len(calls) == 1  # nothing changed, nothing reported


def test_rule_watcher_reports_the_added_backend_once() -> None:
    calls: list[tuple[int, str, str, bool]] = []
    w = RuleWatcher(lambda *a: calls.append(a))
    w._routes = parse_iptables(dump("iptables-2.txt"))
    w._diff(5, parse_iptables(dump("iptables-3.txt")))
    new = ips("iptables-3.txt") - ips("iptables-2.txt")
    assert calls == [(5, IPT_KEY, new.pop(), True)]


def test_kube_proxy_metrics_of_a_real_kube_proxy() -> None:
    text = dump("kube-proxy-metrics.txt")
    ts, count = parse_sync(text)
    # read back independently: the IPv4 series (kube-proxy labels both families even
    # in a single-stack cluster; the IPv6 one is stamped at its own, earlier, sync)
    lines = dict(ln.rsplit(" ", 1) for ln in text.splitlines() if not ln.startswith("#"))
    v4 = '{ip_family="IPv4"}'
    assert ts == float(lines["kubeproxy_sync_proxy_rules_last_timestamp_seconds" + v4])
    assert count == float(lines["kubeproxy_sync_proxy_rules_duration_seconds_count" + v4])
    assert ts != float(lines['kubeproxy_sync_proxy_rules_last_timestamp_seconds'
                             '{ip_family="IPv6"}'])
    assert ts > 1.7e9 and count >= 2


def test_min_sync_period_of_a_real_kube_proxy() -> None:
    configz = json.loads(dump("kube-proxy-configz.json"))
    assert min_sync_period(configz) == 1.0  # kube-proxy's default, no flag set
