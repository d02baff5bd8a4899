"""Targeted rule dumps: kube-proxy's Service chain names, finding a ClusterIP:port's chain
in a whole dump, and the watcher listing only the armed targets' chains.

Chain names were read off real kube-proxy 1.35 rules (the fixtures, and a local cluster
holding 10,000 background Services); the watcher's listings are replayed from the
fixtures' dumps (a pure unit: `subprocess.run` is replaced)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.agent import rules
from bench.agent.rules import RuleWatcher, chain_command, portals, service_chain

FIX = Path(__file__).parent.parent / "fixtures"
IPT_CHAIN, NFT_CHAIN = "KUBE-SVC-KFRJ5XAXWI6XHHO7", "service-LDQMJJ4S-fx/web/tcp/http"
WEB = ("10.96.114.255", 80)
# what iptables-nft 1.8.9 and nft 1.0.6 print for a chain that does not exist
IPT_MISSING = ("iptables v1.8.9 (nf_tables): chain `KUBE-SVC-DOESNOTEXIST000' in table "
               "`nat' is incompatible, use 'nft' tool.\n")
NFT_MISSING = "Error: No such file or directory\nlist chain ip kube-proxy x\n"


@pytest.mark.parametrize(("mode", "key", "chain"), [
    ("iptables", "hb-bg/bg-00000:http", "KUBE-SVC-E4LYVX3QWPHRCHE4"),  # seen at 10k
    ("iptables", "fx/web:http", IPT_CHAIN),
    ("iptables", "default/kubernetes:https", "KUBE-SVC-NPX46M4PTMTKRN6Y"),
    ("nftables", "fx/web/tcp/http", NFT_CHAIN),
    ("nftables", "default/kubernetes/tcp/https",
     "service-2QRHZV4L-default/kubernetes/tcp/https"),
])
def test_service_chain_is_kube_proxys_name(mode: str, key: str, chain: str) -> None:
    assert service_chain(mode, key) == chain


def test_a_long_nft_name_is_truncated_as_kube_proxy_does() -> None:
    key = "n" * 63 + "/" + "s" * 63 + "/tcp/http"
    name = service_chain("nftables", key)
    assert len(name) == len("service-") + 112 and name.endswith("...")


@pytest.mark.parametrize(("mode", "dump", "key", "chain"), [
    ("iptables", "iptables-3.txt", "fx/web:http", IPT_CHAIN),
    ("nftables", "nft-3.txt", "fx/web/tcp/http", NFT_CHAIN),
])
def test_portals_find_the_chain_of_a_cluster_ip(mode: str, dump: str, key: str,
                                                chain: str) -> None:
    found = portals(mode, (FIX / dump).read_text())
    assert found[WEB] == (key, chain)
    assert found[("10.96.0.1", 443)][1] == service_chain(mode, found[("10.96.0.1", 443)][0])
    assert len(found) == 2


def test_chain_commands() -> None:
    assert chain_command("iptables", IPT_CHAIN) == ["iptables", "-t", "nat", "-S", IPT_CHAIN]
    assert chain_command("nftables", NFT_CHAIN) == [
        "nft", "list", "chain", "ip", "kube-proxy", NFT_CHAIN]


def _ipt_chain(dump: str, chain: str) -> str:
    """What `iptables -t nat -S chain` prints: the chain's own lines of the dump."""
    lines = (FIX / dump).read_text().splitlines()
    return "\n".join([f"-N {chain}"] + [ln for ln in lines if ln.startswith(f"-A {chain} ")])


def _nft_chain(dump: str, chain: str) -> str:
    text = (FIX / dump).read_text()
    start = text.index(f"\tchain {chain} {{")
    return "table ip kube-proxy {\n" + text[start:text.index("\t}", start) + 2] + "\n}\n"


class FakeRules:
    """Answers the watcher's commands from a fixture state; records the commands."""

    def __init__(self, mode: str, state: str) -> None:
        self.mode, self.state = mode, state
        self.cmds: list[list[str]] = []
        self.missing = False
        self.broken = False

    def run(self, cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        self.cmds.append(cmd)
        out, err, rc = "", "", 0
        if cmd[0] == "iptables-save" or cmd[:3] == ["nft", "list", "table"]:
            out = (FIX / self.state).read_text()
        elif self.broken:
            err, rc = "some other failure\n", 4
        elif self.missing:
            err, rc = (IPT_MISSING if self.mode == "iptables" else NFT_MISSING), 1
        else:
            out = (_ipt_chain if self.mode == "iptables" else _nft_chain)(self.state, cmd[-1])
        return subprocess.CompletedProcess(cmd, rc, out, err)


@pytest.mark.parametrize(("mode", "before", "after"), [
    ("iptables", "iptables-2.txt", "iptables-3.txt"),
    ("nftables", "nft-3.txt", "nft-2.txt"),
])
def test_watcher_lists_only_the_targets_chains(monkeypatch: pytest.MonkeyPatch, mode: str,
                                               before: str, after: str) -> None:
    fake = FakeRules(mode, before)
    monkeypatch.setattr(subprocess, "run", fake.run)
    calls: list[tuple[int, str, str, bool]] = []
    w = RuleWatcher(lambda *a: calls.append(a))
    w.mode = mode
    w._routes = rules.DUMPERS[mode][1]((FIX / before).read_text())
    assert w.scope() == "full"
    chain = IPT_CHAIN if mode == "iptables" else NFT_CHAIN
    key = "fx/web:http" if mode == "iptables" else "fx/web/tcp/http"
    assert w.watch([WEB]) == {key: chain} and w.scope() == "targeted"
    fake.cmds.clear()
    fake.state = after
    w._take(7)
    assert fake.cmds == [chain_command(mode, chain)]  # one listing, no whole dump
    old = rules.DUMPERS[mode][1]((FIX / before).read_text())[key]
    new = rules.DUMPERS[mode][1]((FIX / after).read_text())[key]
    assert sorted(calls) == sorted(
        [(7, key, ip, True) for ip in new - old] + [(7, key, ip, False) for ip in old - new])
    assert calls and set(w.routes()) == {key}  # the other Services are no longer watched
    calls.clear()
    w._take(8)
    assert calls == []  # nothing changed, nothing reported
    fake.missing = True  # the chain is gone: the Service routes nowhere
    w._take(9)
    assert sorted(calls) == sorted((9, key, ip, False) for ip in new)
    fake.missing, fake.broken = False, True  # a failure: back to the whole table
    fake.cmds.clear()
    calls.clear()
    w._take(10)
    assert fake.cmds[-1] == rules.DUMPERS[mode][0]
    assert sorted(calls) == sorted((10, key, ip, True) for ip in new)  # the others adopted


def test_a_target_not_in_the_rules_yet_means_whole_dumps(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    fake = FakeRules("iptables", "iptables-after-switch.txt")  # no Service routed
    monkeypatch.setattr(subprocess, "run", fake.run)
    w = RuleWatcher(lambda *a: None)
    w.mode = "iptables"
    assert w.watch([WEB]) == {} and w.scope() == "full"
    fake.state = "iptables-3.txt"
    w._take(5)  # a whole dump, which finds the target
    assert w.scope() == "targeted" and w._chains == {"fx/web:http": IPT_CHAIN}
    w.watch([])
    assert w.scope() == "full"


def test_targeted_iptables_listing_without_jump_comments(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    """Above 1000 endpoints kube-proxy writes KUBE-SVC -> KUBE-SEP jumps without comments:
    the targeted listing then takes each endpoint's IP from its KUBE-SEP chain's DNAT
    (listed once, then remembered), and still finds every endpoint."""
    import re

    text = (FIX / "iptables-3.txt").read_text()
    large = tmp_path / "large.txt"
    large.write_text("\n".join(
        re.sub(r'-m comment --comment "?[^"]* -> [^" ]*"? ', "", ln)
        if ln.startswith("-A KUBE-SVC") else ln for ln in text.splitlines()) + "\n")
    fake = FakeRules("iptables", str(large))
    monkeypatch.setattr(subprocess, "run", fake.run)
    w = RuleWatcher(lambda *a: None)
    w.mode = "iptables"
    assert w.watch([WEB]) == {"fx/web:http": IPT_CHAIN}
    w._sep_ip.clear()  # as if the endpoints came after the last whole dump
    fake.cmds.clear()
    w._take(3)
    want = rules.parse_iptables(text)["fx/web:http"]
    assert w.routes() == {"fx/web:http": want}
    seps = [c[-1] for c in fake.cmds[1:]]
    assert fake.cmds[0] == chain_command("iptables", IPT_CHAIN)
    assert len(seps) == len(want) and all(s.startswith("KUBE-SEP-") for s in seps)
    fake.cmds.clear()
    w._take(4)
    assert fake.cmds == [chain_command("iptables", IPT_CHAIN)]  # the IPs are remembered
