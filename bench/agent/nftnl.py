"""A small nf_tables netlink client: kube-proxy's nftables rules read without `nft`.

`nft` (1.0.6) loads the whole table before it lists one chain, and its monitor loads it
too: at 10,000 Services that is seconds of CPU per listing. The kernel answers narrower
questions directly over NETLINK_NETFILTER, so the agent asks those itself (stdlib only):

- which Service chain a ClusterIP:port goes to: one element of map `service-ips`
  (NFT_MSG_GETSETELEM, a get of one key);
- which endpoints a Service chain routes to: the chain's rules (NFT_MSG_GETRULE dump
  filtered to the chain), the anonymous verdict maps (`__map%d`) their lookup expressions
  name, and those maps' elements (NFT_MSG_GETSETELEM dump): the verdicts' chain names
  `endpoint-XXXXXXXX-<ns>/<svc>/tcp/<port>__<ip>/<port>` carry the routed IPs;
- the elements of a named map (`service-ips`), for the rules summary.

Also the change trigger: the ruleset's generation id (NFT_MSG_GETGEN, `Generation`), which
every commit bumps the moment its rules go live, asked every few ms (4 us a question).
The multicast group (NFNLGRP_NFTABLES, what `nft monitor` joins; `event_socket`) is not
the trigger: while anyone listens, the kernel builds a message for every rule a commit
touches and sends them only after the new generation is live, and a kube-proxy iptables
sync at 10,000 Services rewrites ~20,000 rules (KUBE-SERVICES): its first message came
90-320 ms (once 1.4 s) after the change could be listed, and every sync paid for those
messages. Netlink sockets belong to the network namespace they are opened in: the agent
runs in the node's.

Attribute layouts are from include/uapi/linux/netfilter/nf_tables.h; nf_tables nests
without NLA_F_NESTED, so parsing goes by those layouts, not by flags.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NFNLGRP_NFTABLES = 7
NFNL_SUBSYS_NFTABLES = 10
NFPROTO_IPV4 = 2

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x2, 0x4, 0x300

NFT_MSG_GETRULE, NFT_MSG_GETSET, NFT_MSG_GETSETELEM = 7, 10, 13
NFT_MSG_NEWGEN, NFT_MSG_GETGEN = 15, 16
NFTA_GEN_ID = 1
NFTA_SET_TABLE, NFTA_SET_NAME, NFTA_SET_FLAGS = 1, 2, 3
NFT_SET_ANONYMOUS = 0x1
NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_EXPRESSIONS = 1, 2, 4
NFTA_LIST_ELEM = 1
NFTA_EXPR_NAME, NFTA_EXPR_DATA = 1, 2
NFTA_LOOKUP_SET = 1
NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_DATA = 1, 2
NFTA_DATA_VALUE, NFTA_DATA_VERDICT = 1, 2
NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN = 1, 2

NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
NFGEN = struct.Struct("=BBH")  # nfgenmsg: family, version, res_id (big endian, 0 here)
ATTR = struct.Struct("=HH")
PROTOS = {"tcp": 6, "udp": 17, "sctp": 132}
TABLE = "kube-proxy"
RCVBUF = 8 << 20  # event bursts of a full sync at 10k Services are megabytes
# a verdict's chain name, with the same groups as rules.NFT_GOTO reads from `nft` output
ENDPOINT_CHAIN = re.compile(r"^endpoint-[A-Z0-9]+-(.+?)__(\d+\.\d+\.\d+\.\d+)/\d+$")

Attrs = list[tuple[int, bytes]]


class NetlinkError(OSError):
    """The kernel answered a request with an error (errno: e.g. ENOENT, no such object)."""


@dataclass(frozen=True)
class Message:
    type: int
    flags: int
    seq: int
    payload: bytes  # after nlmsghdr (for nfnetlink: nfgenmsg + attributes)


def _pad(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, value: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    body = ATTR.pack(ATTR.size + len(value), kind) + value
    return body + b"\0" * (_pad(len(body)) - len(body))


def strz(text: str) -> bytes:
    return text.encode() + b"\0"


def parse_attrs(data: bytes) -> Attrs:
    """The attributes of one level: (type without flags, payload) in order."""
    out: Attrs = []
    pos = 0
    while pos + ATTR.size <= len(data):
        length, kind = ATTR.unpack_from(data, pos)
        if length < ATTR.size or pos + length > len(data):
            break  # truncated or garbage: stop at what parsed
        out.append((kind & NLA_TYPE_MASK, data[pos + ATTR.size:pos + length]))
        pos += _pad(length)
    return out


def first(attrs: Attrs, kind: int) -> bytes | None:
    return next((v for k, v in attrs if k == kind), None)


def text(value: bytes | None) -> str:
    return value.split(b"\0", 1)[0].decode(errors="replace") if value is not None else ""


def message(msg: int, flags: int, seq: int, attrs: bytes,
            family: int = NFPROTO_IPV4) -> bytes:
    """An nf_tables request: nlmsghdr + nfgenmsg + attributes."""
    body = NFGEN.pack(family, 0, 0) + attrs
    return HDR.pack(HDR.size + len(body), (NFNL_SUBSYS_NFTABLES << 8) | msg, flags,
                    seq, 0) + body


def split_messages(data: bytes) -> Iterator[Message]:
    """The netlink messages in one datagram."""
    pos = 0
    while pos + HDR.size <= len(data):
        length, kind, flags, seq, _pid = HDR.unpack_from(data, pos)
        if length < HDR.size or pos + length > len(data):
            break
        yield Message(kind, flags, seq, data[pos + HDR.size:pos + length])
        pos += _pad(length)


def nft_attrs(msg: Message) -> Attrs:
    """The attributes of an nf_tables message (after its nfgenmsg)."""
    return parse_attrs(msg.payload[NFGEN.size:])


def lookup_sets(rule: Attrs) -> list[str]:
    """Names of the sets and maps a rule's lookup expressions look up."""
    names = []
    for kind, elem in parse_attrs(first(rule, NFTA_RULE_EXPRESSIONS) or b""):
        if kind != NFTA_LIST_ELEM:
            continue
        expr = parse_attrs(elem)
        if text(first(expr, NFTA_EXPR_NAME)) == "lookup":
            name = text(first(parse_attrs(first(expr, NFTA_EXPR_DATA) or b""), NFTA_LOOKUP_SET))
            if name:
                names.append(name)
    return names


@dataclass(frozen=True)
class Element:
    key: bytes
    chain: str  # the verdict's chain (goto/jump), "" for another verdict or a plain set


def elements(setelem_msg: Attrs) -> list[Element]:
    """The elements of one NFT_MSG_NEWSETELEM reply (a dump or a get)."""
    found = []
    for kind, elem in parse_attrs(first(setelem_msg, NFTA_SET_ELEM_LIST_ELEMENTS) or b""):
        if kind != NFTA_LIST_ELEM:
            continue
        e = parse_attrs(elem)
        key = first(parse_attrs(first(e, NFTA_SET_ELEM_KEY) or b""), NFTA_DATA_VALUE) or b""
        verdict = first(parse_attrs(first(e, NFTA_SET_ELEM_DATA) or b""), NFTA_DATA_VERDICT)
        chain = text(first(parse_attrs(verdict or b""), NFTA_VERDICT_CHAIN))
        found.append(Element(key, chain))
    return found


def service_key(ip: str, protocol: str, port: int) -> bytes:
    """The key of map `service-ips` (ipv4_addr . inet_proto . inet_service): each field
    padded to 4 bytes, the port in network order."""
    return (socket.inet_aton(ip) + bytes([PROTOS[protocol], 0, 0, 0])
            + struct.pack(">H", port) + b"\0\0")


def endpoint_routes(chains: list[str]) -> dict[str, set[str]]:
    """Routes key -> IPs from endpoint chain names (as rules.parse_nft reads them)."""
    routes: dict[str, set[str]] = {}
    for chain in chains:
        if m := ENDPOINT_CHAIN.match(chain):
            routes.setdefault(m.group(1), set()).add(m.group(2))
    return routes


class Client:
    """Requests to nf_tables over one NETLINK_NETFILTER socket of this network namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self.seq = 0
        self.raw: list[bytes] = []  # every datagram received, when `record` is set
        self.record = False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, msg: int, flags: int, attrs: bytes,
                family: int = NFPROTO_IPV4) -> list[Message]:
        """Send one request, read its replies up to NLMSG_DONE (a dump) or the one reply
        (a get); raise NetlinkError for an error reply."""
        replies: list[Message] = []
        self.exchange(msg, flags, attrs, replies.append, family)
        return replies

    def count(self, msg: int, attrs: bytes, family: int = NFPROTO_IPV4) -> int:
        """The number of objects a dump returns, none of them kept."""
        n = [0]

        def one(_m: Message) -> None:
            n[0] += 1
        self.exchange(msg, NLM_F_DUMP, attrs, one, family)
        return n[0]

    def exchange(self, msg: int, flags: int, attrs: bytes,
                 on_reply: Callable[[Message], None], family: int = NFPROTO_IPV4) -> None:
        """Send one request and pass each reply to `on_reply`."""
        self.seq += 1
        seq = self.seq
        self.sock.send(message(msg, NLM_F_REQUEST | flags, seq, attrs, family))
        while True:
            data = self.sock.recv(1 << 20)
            if self.record:
                self.raw.append(data)
            done = False
            for m in split_messages(data):
                if m.seq != seq:
                    continue  # a late reply to an earlier request
                if m.type == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", m.payload)[0]
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    done = True
                elif m.type == NLMSG_DONE:
                    done = True
                else:
                    on_reply(m)
                    if not m.flags & NLM_F_MULTI:
                        done = True
            if done:
                return

    def chain_sets(self, chain: str, table: str = TABLE) -> list[str]:
        """Sets and maps the rules of `chain` look up; [] when the chain does not exist."""
        replies = self._dump(NFT_MSG_GETRULE, attr(NFTA_RULE_TABLE, strz(table))
                             + attr(NFTA_RULE_CHAIN, strz(chain)))
        return [name for m in replies for name in lookup_sets(nft_attrs(m))]

    def set_elements(self, name: str, table: str = TABLE) -> list[Element]:
        """Every element of set or map `name`; [] when it does not exist."""
        replies = self._dump(NFT_MSG_GETSETELEM, attr(NFTA_SET_ELEM_LIST_TABLE, strz(table))
                             + attr(NFTA_SET_ELEM_LIST_SET, strz(name)))
        return [el for m in replies for el in elements(nft_attrs(m))]

    def _dump(self, msg: int, attrs: bytes) -> list[Message]:
        """A dump's replies; none when what it names does not exist (ENOENT)."""
        try:
            return self.request(msg, NLM_F_DUMP, attrs)
        except NetlinkError as e:
            if e.errno == errno.ENOENT:
                return []
            raise

    def map_get(self, name: str, key: bytes, table: str = TABLE) -> Element | None:
        """The element of map `name` with `key`; None when there is none."""
        elem = attr(NFTA_LIST_ELEM, attr(NFTA_SET_ELEM_KEY, attr(NFTA_DATA_VALUE, key)))
        try:
            replies = self.request(NFT_MSG_GETSETELEM, NLM_F_ACK,
                                   attr(NFTA_SET_ELEM_LIST_TABLE, strz(table))
                                   + attr(NFTA_SET_ELEM_LIST_SET, strz(name))
                                   + attr(NFTA_SET_ELEM_LIST_ELEMENTS, elem))
        except NetlinkError as e:
            if e.errno == errno.ENOENT:
                return None
            raise
        found = [el for m in replies for el in elements(nft_attrs(m))]
        return found[0] if found else None

    def rule_count(self, table: str = TABLE) -> int:
        """Rules of `table` (family ip), every chain; 0 when there is no such table."""
        try:
            return self.count(NFT_MSG_GETRULE, attr(NFTA_RULE_TABLE, strz(table)))
        except NetlinkError as e:
            if e.errno == errno.ENOENT:
                return 0
            raise

    def named_sets(self, table: str = TABLE) -> list[str]:
        """The named (not anonymous) sets and maps of `table`."""
        try:
            replies = self.request(NFT_MSG_GETSET, NLM_F_DUMP,
                                   attr(NFTA_SET_TABLE, strz(table)))
        except NetlinkError as e:
            if e.errno == errno.ENOENT:
                return []
            raise
        names = []
        for m in replies:
            a = nft_attrs(m)
            flags = struct.unpack(">I", first(a, NFTA_SET_FLAGS) or b"\0\0\0\0")[0]
            if not flags & NFT_SET_ANONYMOUS:
                names.append(text(first(a, NFTA_SET_NAME)))
        return names

    def service_chain(self, ip: str, port: int, protocol: str = "tcp") -> str:
        """The Service chain map `service-ips` sends ClusterIP:port to, "" if none (the
        Service has no endpoint in the rules, or no such table)."""
        el = self.map_get("service-ips", service_key(ip, protocol, port))
        return el.chain if el else ""

    def chain_routes(self, chain: str) -> dict[str, set[str]]:
        """Routes key -> IPs that Service chain `chain` sends traffic to now: the endpoint
        chains in the verdict maps its rules look up. {} when the chain does not exist."""
        names: list[str] = []
        for name in self.chain_sets(chain):
            names += [el.chain for el in self.set_elements(name)]
        return endpoint_routes(names)


def gen_id(data: bytes) -> int:
    """The generation id in the reply to NFT_MSG_GETGEN; NetlinkError for an error reply."""
    for m in split_messages(data):
        if m.type == NLMSG_ERROR:
            code = -struct.unpack_from("=i", m.payload)[0]
            raise NetlinkError(code, os.strerror(code))
        if m.type == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN:
            value = first(nft_attrs(m), NFTA_GEN_ID)
            if value is not None and len(value) == 4:
                return int(struct.unpack(">I", value)[0])
    raise NetlinkError(errno.EBADMSG, "no generation id in the reply")


class Generation:
    """The nf_tables ruleset generation of this network namespace: every commit bumps it
    right after making its rules live (before any notification), so a change of it is
    the commit. One GETGEN question and its 48-byte answer on a socket of its own."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self.sock.settimeout(1.0)
        self._request = message(NFT_MSG_GETGEN, NLM_F_REQUEST, 1, b"", family=0)
        self._buf = bytearray(4096)

    def read(self) -> int:
        self.sock.send(self._request)
        n = self.sock.recv_into(self._buf)
        return gen_id(bytes(self._buf[:n]))

    def close(self) -> None:
        self.sock.close()


def event_socket(rcvbuf: int = RCVBUF) -> socket.socket:
    """A socket receiving every nf_tables change notification of this network namespace
    (what `nft monitor` listens to). Needs CAP_NET_ADMIN."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    for opt in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
        try:  # FORCE passes net.core.rmem_max (root); plain RCVBUF is capped by it
            sock.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
            break
        except OSError:
            continue
    sock.bind((0, 1 << (NFNLGRP_NFTABLES - 1)))
    return sock


def read_event(sock: socket.socket, buf: bytearray) -> bool:
    """Block until the next notification; True for a message (or an overrun: ENOBUFS,
    notifications were lost, which still means the rules changed), False when the
    socket is closed."""
    try:
        return sock.recv_into(buf) > 0
    except OSError as e:
        if e.errno == errno.ENOBUFS:
            return True
        if e.errno in (errno.EBADF, errno.ENOTSOCK):
            return False
        raise


def available() -> bool:
    """Whether this process may ask nf_tables over netlink (Linux, CAP_NET_ADMIN in this
    netns): the generation id is read."""
    try:
        gen = Generation()
    except (OSError, AttributeError):
        return False
    try:
        gen.read()
    except OSError:
        return False
    finally:
        gen.close()
    return True
