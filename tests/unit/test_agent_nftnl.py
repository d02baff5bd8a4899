"""The agent's nf_tables netlink client: requests built byte for byte, replies captured
from a real node netns (kube-proxy 1.35 nftables mode, Service cap/web with endpoints
10.255.250.1 and .2; tests/unit/data/nl-*.bin, the datagrams as received) decoded into
the same routes `nft list table` gives, the change trigger's overrun rule, and the rule
watcher's netlink path (a scripted client: a pure unit)."""

from __future__ import annotations

import errno
import json
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from bench.agent import nftnl
from bench.agent.rules import RuleWatcher, parse_nft, service_chain

DATA = Path(__file__).parent / "data"
KEY = "cap/web/tcp/http"
CHAIN = service_chain("nftables", KEY)


class Replay:
    """A socket that answers every send with one captured reply stream."""

    def __init__(self, data: bytes) -> None:
        self.data, self.sent = data, b""

    def send(self, b: bytes) -> int:
        self.sent = b
        return len(b)

    def recv(self, _n: int) -> bytes:
        out, self.data = self.data, b""
        return out


def _client(name: str) -> tuple[nftnl.Client, Replay]:
    c = nftnl.Client.__new__(nftnl.Client)
    c.seq, c.raw, c.record = 0, [], False
    c.sock = Replay((DATA / f"{name}.bin").read_bytes())  # type: ignore[assignment]
    return c, c.sock  # type: ignore[return-value]


def test_a_rule_dump_request_byte_for_byte() -> None:
    got = nftnl.message(nftnl.NFT_MSG_GETRULE, nftnl.NLM_F_REQUEST | nftnl.NLM_F_DUMP, 5,
                        nftnl.attr(1, b"kube-proxy\0") + nftnl.attr(2, b"ab\0"))
    # nlmsghdr: length 44, type NFNL_SUBSYS_NFTABLES << 8 | GETRULE, flags, seq 5, pid 0
    assert got[:16] == struct.pack("=IHHII", 44, 0x0A07, 0x301, 5, 0)
    assert got[16:20] == bytes([2, 0, 0, 0])  # nfgenmsg: NFPROTO_IPV4, version 0, res_id 0
    # attribute: length 15 (4 + "kube-proxy\0"), type 1, padded to 16
    assert got[20:36] == struct.pack("=HH", 15, 1) + b"kube-proxy\0\0"
    assert got[36:] == struct.pack("=HH", 7, 2) + b"ab\0\0"
    assert len(got) == 44 and nftnl.parse_attrs(got[20:]) == [(1, b"kube-proxy\0"), (2, b"ab\0")]


def test_service_ips_key_layout() -> None:
    # ipv4_addr . inet_proto . inet_service, each in a 4-byte register, port big endian
    assert nftnl.service_key("10.96.1.2", "tcp", 80) == bytes(
        [10, 96, 1, 2, 6, 0, 0, 0, 0, 80, 0, 0])


def test_parse_attrs_stops_at_garbage_and_drops_flags() -> None:
    nested = nftnl.attr(0x8000 | 3, nftnl.attr(1, b"x\0"))
    assert nftnl.parse_attrs(nested + b"\x40\x00") == [(3, nftnl.attr(1, b"x\0"))]
    assert nftnl.parse_attrs(struct.pack("=HH", 200, 1) + b"short") == []


def test_captured_service_ips_get_names_the_service_chain() -> None:
    c, sock = _client("nl-service-ips-get")
    meta = json.loads((DATA / "nl-capture.json").read_text())
    assert c.service_chain(meta["ip"], 80) == CHAIN
    req = nftnl.parse_attrs(sock.sent[20:])
    assert nftnl.text(nftnl.first(req, nftnl.NFTA_SET_ELEM_LIST_SET)) == "service-ips"


def test_captured_chain_rules_and_vmap_give_the_routes_of_nft_list_table() -> None:
    c, _ = _client("nl-chain-rules")
    sets = c.chain_sets(CHAIN)
    assert len(sets) == 1 and sets[0].startswith("__map")
    c, sock = _client("nl-vmap-elements")
    chains = [el.chain for el in c.set_elements(sets[0])]
    assert nftnl.text(nftnl.first(nftnl.parse_attrs(sock.sent[20:]), 2)) == sets[0]
    want = parse_nft((DATA / "nl-table.nft").read_text())
    assert nftnl.endpoint_routes(chains) == {KEY: want[KEY]} == {
        KEY: {"10.255.250.1", "10.255.250.2"}}


def test_captured_service_ips_dump_holds_every_routed_service() -> None:
    c, _ = _client("nl-service-ips-dump")
    got = {el.chain for el in c.set_elements("service-ips")}
    text = (DATA / "nl-table.nft").read_text()
    assert CHAIN in got and "service-2QRHZV4L-default/kubernetes/tcp/https" in got
    assert all(chain in text for chain in got)


def test_captured_missing_chain_is_no_rule() -> None:
    c, _ = _client("nl-missing-chain")
    assert c.chain_sets("service-XXXXXXXX-no/such/tcp/x") == []


def test_an_error_reply_raises_with_its_errno() -> None:
    err = nftnl.HDR.pack(36, nftnl.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -errno.EPERM)
    c = nftnl.Client.__new__(nftnl.Client)
    c.seq, c.raw, c.record = 0, [], False
    c.sock = Replay(err + bytes(16))  # type: ignore[assignment]
    with pytest.raises(nftnl.NetlinkError) as exc:
        c.chain_sets("x")
    assert exc.value.errno == errno.EPERM


class _Sock:
    def __init__(self, *results: int | OSError) -> None:
        self.results = list(results)

    def recv_into(self, _buf: Any) -> int:
        r = self.results.pop(0)
        if isinstance(r, OSError):
            raise r
        return r


def test_an_overrun_is_a_change_and_a_closed_socket_ends_the_reader() -> None:
    buf = bytearray(16)
    sock: Any = _Sock(40, OSError(errno.ENOBUFS, "overrun"), OSError(errno.EBADF, "closed"))
    assert nftnl.read_event(sock, buf) is True
    assert nftnl.read_event(sock, buf) is True  # notifications lost: still "changed"
    assert nftnl.read_event(sock, buf) is False
    with pytest.raises(OSError):
        nftnl.read_event(_Sock(OSError(errno.EIO, "io")), buf)  # type: ignore[arg-type]


class ScriptedNl:
    """The two questions the watcher asks, answered from a dict ClusterIP:port -> chain,
    chain -> routes."""

    def __init__(self) -> None:
        self.portals: dict[tuple[str, int], str] = {}
        self.routes: dict[str, dict[str, set[str]]] = {}
        self.asked = 0

    def service_chain(self, ip: str, port: int) -> str:
        self.asked += 1
        return self.portals.get((ip, port), "")

    def chain_routes(self, chain: str) -> dict[str, set[str]]:
        return self.routes.get(chain, {})


def test_watcher_nftables_targets_over_netlink_without_a_whole_dump(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("subprocess.run", lambda *a, **k: pytest.fail(f"ran {a}"))
    calls: list[tuple[int, str, str, bool]] = []
    w = RuleWatcher(lambda *a: calls.append(a))
    w.mode, nl = "nftables", ScriptedNl()
    w._nl = nl  # type: ignore[assignment]
    target = ("10.96.0.9", 80)
    assert w.watch([target]) == {} and w.scope() == "targeted"  # not routed yet
    nl.portals[target] = CHAIN
    nl.routes[CHAIN] = {KEY: {"10.255.250.1"}}
    w._take(5)
    assert calls == [(5, KEY, "10.255.250.1", True)]  # first routed: an add, from nothing
    nl.routes[CHAIN] = {KEY: {"10.255.250.1", "10.255.250.2"}}
    w._take(6)
    assert calls[1:] == [(6, KEY, "10.255.250.2", True)]
    del nl.portals[target]  # out of service-ips: routes nowhere, though the chain remains
    w._take(7)
    assert sorted(calls[2:]) == [(7, KEY, "10.255.250.1", False),
                                 (7, KEY, "10.255.250.2", False)]
    assert w.dumps == {"full": 0, "targeted": 4, "targeted_retried": 0,
                       "targeted_failed": 0} and nl.asked == 4


def test_generation_needs_cap_net_admin_or_reports_unavailable() -> None:
    # either this process may ask nf_tables (root) or `available` says it may not
    try:
        gen = nftnl.Generation()
        try:
            gen.read()
        finally:
            gen.close()
        opened = True
    except OSError:
        opened = False
    assert nftnl.available() is opened
    assert socket.AF_NETLINK  # Linux
