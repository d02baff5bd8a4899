"""Which backend IPs a node's kube-proxy rules currently route each Service to.

Pure parsers over rule dumps, one per dataplane, plus the watcher that decides when to
take a dump: on every nf_tables commit where the backend is nf_tables (nftables mode and
iptables-nft: the ruleset generation id, asked over netlink every 5 ms, bench.agent.nftnl),
by polling otherwise (iptables-legacy, IPVS, no CAP_NET_ADMIN). The stamp is the question
that saw the generation change: the commit's notifications are no stamp, at 10,000
Services they came 90-320 ms after kube-proxy's rules were live (nftnl's docstring).
Only rules that route a Service count: a kube-proxy nftables endpoint chain that still
exists but is no longer referenced from the Service's vmap does not carry traffic.

With thousands of Services a whole-table dump costs far more than the 5 ms the stamps
resolve, so once targets are watched (`watch`: the armed ClusterIP:ports) each dump lists
only their Services' chains, named as kube-proxy names them (`service_chain`); a target
whose Service is not in the rules yet, or a listing that still fails after a few short
retries (for another reason than a missing chain; counted in `dumps`), falls back to the
whole table. In nftables mode the targeted listing does not run `nft` (which loads
the whole table first): the netlink client asks the kernel for map `service-ips`'s element
of each ClusterIP:port, the Service chain's rules and its verdict map's elements; a target
absent from `service-ips` routes nowhere. Whole dumps are spaced out by their own cost
(at most ~10 % of the time spent dumping) so an unarmed agent stays cheap at scale; the
spacing ends when `watch` makes the next dump a targeted one, and a change seen before
an arming's whole dump is that dump's (no stamp carried over from before the arming).
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable

from bench.agent import nftnl

IPTABLES_SVC = re.compile(
    r'^-A KUBE-SV[CL]-\S+ .*--comment "?([^ "]+) -> (\d+\.\d+\.\d+\.\d+):\d+"? .*-j KUBE-SEP-')
NFT_GOTO = re.compile(r"goto endpoint-[A-Z0-9]+-([^ ,]+?)__(\d+\.\d+\.\d+\.\d+)/\d+")
IPVS_SERVICE = re.compile(r"^(TCP|UDP|SCTP)\s+(\S+)")
IPVS_REAL = re.compile(r"^\s+->\s+(\d+\.\d+\.\d+\.\d+):\d+")

Routes = dict[str, set[str]]  # service key -> backend IPs
# the Service chain a ClusterIP:port jumps to, in each mode's whole-table dump
IPTABLES_PORTAL = re.compile(
    r'^-A KUBE-SERVICES -d (\d+\.\d+\.\d+\.\d+)/32 -p (tcp|udp|sctp) -m comment --comment '
    r'"?([^ "]+) cluster IP"? .*--dport (\d+) -j (KUBE-SV[CL]-[A-Z2-7]{16})$', re.M)
NFT_PORTAL = re.compile(
    r"(\d+\.\d+\.\d+\.\d+) \. (tcp|udp|sctp) \. (\d+) : goto (service-[A-Z2-7]{8}-([^ ,}]+))")
# a listing of a chain that does not exist (the Service has no endpoint in the rules):
# iptables-nft 1.8.9 says "incompatible" for a missing chain, legacy "No chain"
MISSING_CHAIN = ("No chain/target/match", "incompatible, use 'nft'", "does not exist",
                 "No such file or directory")
NFT_BASE_MAX = 128 - 16  # kube-proxy nftables: chain name limit minus the longest prefix
FULL_SPACING = 9.0  # after a whole dump of d seconds, the next one waits 9 d
GEN_POLL_S = 0.005  # the generation id is asked this often while a trial is watched closely
GEN_IDLE_S = 0.1  # ... and this often otherwise, by the watcher's own thread
LIST_RETRIES = (0.01, 0.03)  # a failed targeted listing is retried after these sleeps


IPTABLES_ENTRY = re.compile(
    r'^-A KUBE-SERVICES .*--comment "?([^ "]+) cluster IP"? .*-j (KUBE-SV[CL]-\S+)')
IPTABLES_DNAT = re.compile(
    r"^-A (KUBE-SEP-\S+) .*-j DNAT --to-destination (\d+\.\d+\.\d+\.\d+):\d+")
IPTABLES_JUMP = re.compile(r"^-A (KUBE-SV[CL]-\S+) .*-j (KUBE-SEP-\S+)")


def sep_ips(dump: str) -> dict[str, str]:
    """KUBE-SEP chain -> the endpoint IP its DNAT rule sends to."""
    return {m.group(1): m.group(2) for line in dump.splitlines()
            if (m := IPTABLES_DNAT.match(line))}


def parse_iptables(dump: str) -> Routes:
    """Each Service's endpoints from the jumps KUBE-SVC -> KUBE-SEP. Above 1000 endpoints
    kube-proxy writes those jumps without comments ("large cluster mode"), so a jump's
    Service comes from the KUBE-SERVICES rule that enters its chain and its IP from the
    KUBE-SEP chain's DNAT, and the comment is only a fallback."""
    lines = dump.splitlines()
    service: dict[str, str] = {}
    ip_of: dict[str, str] = {}
    for line in lines:
        if m := IPTABLES_ENTRY.match(line):
            service[m.group(2)] = m.group(1)
        elif m := IPTABLES_DNAT.match(line):
            ip_of[m.group(1)] = m.group(2)
    routes: Routes = {}
    for line in lines:
        if not (m := IPTABLES_JUMP.match(line)):
            continue
        key, ip = service.get(m.group(1)), ip_of.get(m.group(2))
        if (key is None or ip is None) and (c := IPTABLES_SVC.match(line)):
            key, ip = key or c.group(1), ip or c.group(2)
        if key is not None and ip is not None:
            routes.setdefault(key, set()).add(ip)
    return routes


def parse_nft(dump: str) -> Routes:
    routes: Routes = {}
    for line in dump.splitlines():
        if "numgen" in line or "vmap" in line:
            for key, ip in NFT_GOTO.findall(line):
                routes.setdefault(key, set()).add(ip)
    return routes


def parse_ipvs(dump: str) -> Routes:
    routes: Routes = {}
    current = ""
    for line in dump.splitlines():
        if m := IPVS_SERVICE.match(line):
            current = m.group(2)
        elif (m := IPVS_REAL.match(line)) and current:
            routes.setdefault(current, set()).add(m.group(1))
    return routes


DUMPERS: dict[str, tuple[list[str], Callable[[str], Routes]]] = {
    "nftables": (["nft", "list", "table", "ip", "kube-proxy"], parse_nft),
    "iptables": (["iptables-save", "-t", "nat"], parse_iptables),
    "ipvs": (["ipvsadm", "-Ln"], parse_ipvs),
}


def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()


def service_chain(mode: str, key: str, protocol: str = "tcp") -> str:
    """The chain kube-proxy routes the Service port `key` (a Routes key) through.

    iptables (pkg/proxy/iptables/proxier.go portProtoHash): "KUBE-SVC-" + the first 16
    characters of base32(sha256(servicePortName + protocol)), key "ns/name:port".
    nftables (pkg/proxy/nftables/proxier.go hashAndTruncate): "service-" + the first 8
    of base32(sha256(name)) + "-" + name, key = name = "ns/name/protocol/port"."""
    if mode == "iptables":
        return "KUBE-SVC-" + _hash(key + protocol)[:16]
    base = _hash(key)[:8] + "-" + key
    if len(base) > NFT_BASE_MAX:
        base = base[:NFT_BASE_MAX - 3] + "..."
    return "service-" + base


def portals(mode: str, dump: str) -> dict[tuple[str, int], tuple[str, str]]:
    """(ClusterIP, port) -> (Routes key, Service chain) read from a whole-table dump."""
    found: dict[tuple[str, int], tuple[str, str]] = {}
    if mode == "iptables":
        for ip, _proto, key, port, chain in IPTABLES_PORTAL.findall(dump):
            found[(ip, int(port))] = (key, chain)
    elif mode == "nftables":
        for ip, _proto, port, chain, key in NFT_PORTAL.findall(dump):
            found[(ip, int(port))] = (key, chain)
    return found


def chain_command(mode: str, chain: str) -> list[str]:
    """The listing of one Service chain, in the format the mode's parser reads."""
    if mode == "iptables":
        return ["iptables", "-t", "nat", "-S", chain]
    return ["nft", "list", "chain", "ip", "kube-proxy", chain]


def detect_mode() -> str:
    """nftables if kube-proxy's nft table exists, ipvs if IPVS has services, else iptables."""
    if shutil.which("nft") and subprocess.run(
            ["nft", "list", "table", "ip", "kube-proxy"], capture_output=True).returncode == 0:
        return "nftables"
    if shutil.which("ipvsadm"):
        out = subprocess.run(["ipvsadm", "-Ln"], capture_output=True, text=True).stdout
        if IPVS_SERVICE.search(out.replace("\n", "\n")) and "->" in out:
            return "ipvs"
    return "iptables"


def nf_tables_backend() -> bool:
    """True when `iptables` is iptables-nft, so `nft monitor` sees its changes."""
    out = subprocess.run(["iptables", "-V"], capture_output=True, text=True).stdout
    return "nf_tables" in out


class RuleWatcher:
    """Keeps the routed IP sets and calls `on_change(t_ns, key, ip, present)` on changes.

    Without targets every dump is the whole table and every Service is watched. With
    targets (`watch`), a dump lists only the targets' Service chains once all of them
    are found in the rules, and only their keys are compared; the others keep the state
    of the last whole dump, are not reported on and leave `routes()`."""

    def __init__(self, on_change: Callable[[int, str, str, bool], None],
                 poll_interval_s: float = 0.02) -> None:
        self.on_change = on_change
        self._hurry = threading.Event()  # a focus began: ask once now
        self.poll_interval_s = poll_interval_s
        self.mode = ""
        self.method = ""
        self.resolution_ns = 0
        # dumps taken, by kind; targeted listings retried after a failure, and failed
        # even then (the whole table instead)
        self.dumps = {"full": 0, "targeted": 0, "targeted_retried": 0, "targeted_failed": 0}
        self._routes: Routes = {}
        self._known: set[str] | None = None  # keys whose state is current (None: all)
        self._wanted: list[tuple[str, int]] = []  # ClusterIP:ports to watch
        self._chains: dict[str, str] = {}  # Routes key -> Service chain, of the wanted
        self._sep_ip: dict[str, str] = {}  # KUBE-SEP chain -> endpoint IP (iptables)
        self._lock = threading.Lock()  # one dump and diff at a time
        self._stop = threading.Event()
        self._dirty = threading.Event()  # a change to dump for, since `_dirty_since`
        self._dirty_since = 0
        self._mark = threading.Lock()  # `_dirty` and `_dirty_since` change together
        self._gen: nftnl.Generation | None = None  # the nf_tables generation (trigger)
        self._gen_seen = -1  # the last generation id read
        self._gen_lock = threading.Lock()  # `check` runs on two threads
        self._gen_quiet_until = 0.0  # monotonic: after an unanswered question, wait
        self._nl: nftnl.Client | None = None  # targeted nftables listings
        self._nl_lock = threading.Lock()
        self._next_full = 0.0  # monotonic: no whole dump before (spaced by their cost)

    def start(self) -> None:
        self.mode = detect_mode()
        event_driven = nftnl.available() and (
            self.mode == "nftables" or (self.mode == "iptables" and nf_tables_backend()))
        self.method = "netlink" if event_driven else "poll"
        # netlink: the stamp is the first question that saw the commit's generation,
        # at most GEN_POLL_S after it while a trial is watched closely (the prober's
        # passes call `check`), GEN_IDLE_S otherwise; polling: the interval
        self.resolution_ns = (int(GEN_POLL_S * 1e9) if event_driven
                              else int(self.poll_interval_s * 1e9))
        if self.mode == "nftables":
            try:
                self._nl = nftnl.Client()
            except OSError:
                self._nl = None  # no netlink: `nft` listings
        if event_driven:
            self._gen = nftnl.Generation()
            self._gen_seen = self._gen.read()  # before the first dump: no change missed
        self._routes = self._dump()
        threading.Thread(target=self._dumper, daemon=True, name="rules-dump").start()
        if event_driven:
            threading.Thread(target=self._monitor, daemon=True,
                             name="nft-generation").start()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        self._hurry.set()

    def watch(self, targets: list[tuple[str, int]]) -> dict[str, str]:
        """Watch only these ClusterIP:ports from now on ([]: every Service, whole dumps).
        Takes one whole dump to find their Service chains; returns key -> chain of those
        found (a target not found yet is looked for again in each whole dump)."""
        with self._lock:
            self._wanted = [(ip, int(port)) for ip, port in targets]
            self._chains = {}
            if self._wanted and self.mode in ("iptables", "nftables"):
                self._consume()  # what changed so far is in this dump, adopted silently
                self._take(time.time_ns(), full=True, report=False)
            return dict(self._chains)

    def scope(self) -> str:
        """What the next dump lists: "targeted" (the watched Services' chains) or "full"."""
        if self.mode == "nftables" and self._wanted and self._nl is not None:
            return "targeted"
        return "targeted" if self._targeted() else "full"

    def routes(self) -> Routes:
        return {k: set(v) for k, v in self._routes.items()}

    def _targeted(self) -> bool:
        return bool(self._wanted) and len(self._chains) == len(self._wanted)

    def _dump(self) -> Routes:
        cmd, parse = DUMPERS[self.mode]
        return parse(self._run_full(cmd))

    def _run_full(self, cmd: list[str]) -> str:
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        self.dumps["full"] += 1
        self._next_full = time.monotonic() + FULL_SPACING * (time.monotonic() - t0)
        if proc.returncode != 0 and self.mode == "nftables":
            return ""  # the table is gone (mode switch): nothing routed
        return proc.stdout

    def _dump_targets(self) -> Routes | None:
        """The watched Services' routes from their chains alone; None when a listing
        failed for another reason than the chain being absent (then: a whole dump)."""
        parse = DUMPERS[self.mode][1]
        routes: Routes = {}
        for key, chain in self._chains.items():
            proc = self._list_chain(chain)
            if proc.returncode != 0:
                if any(m in proc.stderr for m in MISSING_CHAIN):
                    continue  # no chain: the Service routes nowhere now
                self.dumps["targeted_failed"] += 1
                return None
            got = (self._iptables_ips(proc.stdout) if self.mode == "iptables"
                   else parse(proc.stdout).get(key))
            if got:
                routes[key] = got
        self.dumps["targeted"] += 1
        return routes

    def _list_chain(self, chain: str) -> subprocess.CompletedProcess[str]:
        """One chain's listing, retried after short sleeps while it fails for another
        reason than the chain being absent: a whole dump instead costs seconds at scale."""
        cmd = chain_command(self.mode, chain)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        for pause in LIST_RETRIES:
            if proc.returncode == 0 or any(m in proc.stderr for m in MISSING_CHAIN):
                break
            self.dumps["targeted_retried"] += 1
            time.sleep(pause)
            proc = subprocess.run(cmd, capture_output=True, text=True)
        return proc

    def _iptables_ips(self, listing: str) -> set[str]:
        """The endpoint IPs a KUBE-SVC chain's listing jumps to. Above 1000 endpoints the
        jumps carry no comment, so an endpoint's IP comes from its KUBE-SEP chain's DNAT:
        known from the last whole dump, else listed once (the chain's name hashes the
        endpoint, so the IP of a name never changes)."""
        ips: set[str] = set()
        for line in listing.splitlines():
            if not (m := IPTABLES_JUMP.match(line)):
                continue
            if c := IPTABLES_SVC.match(line):
                ips.add(c.group(2))
                continue
            sep = m.group(2)
            if sep not in self._sep_ip:
                out = subprocess.run(chain_command("iptables", sep), capture_output=True,
                                     text=True).stdout
                self._sep_ip.update(sep_ips(out))
            if ip := self._sep_ip.get(sep):
                ips.add(ip)
        return ips

    def _netlink_targets(self) -> tuple[Routes, dict[str, str]] | None:
        """nftables, over netlink: the watched ClusterIP:ports' Service chains (from map
        `service-ips`; one that is absent routes nowhere) and their routes. None when
        netlink fails (then: `nft`)."""
        nl = self._nl
        if nl is None:
            return None
        routes: Routes = {}
        chains: dict[str, str] = {}
        try:
            with self._nl_lock:
                for ip, port in self._wanted:
                    chain = nl.service_chain(ip, port)
                    if not chain.startswith("service-"):
                        continue
                    got = nl.chain_routes(chain)
                    key = chain.split("-", 2)[2]  # as `portals` reads it
                    if key.endswith("...") and len(got) == 1:  # truncated: the endpoints'
                        key = next(iter(got))
                    chains[key] = chain
                    if got.get(key):
                        routes[key] = got[key]
        except OSError:
            return None
        self.dumps["targeted"] += 1
        return routes, chains

    def _take(self, t_ns: int, full: bool = False, report: bool = True) -> None:
        """One dump and its diff (caller holds the lock)."""
        if self.mode == "nftables" and self._wanted and (got := self._netlink_targets()):
            routes, chains = got
            if self._known is not None:  # a chain found now routed nowhere before
                self._known |= set(chains) - set(self._chains)
            self._chains = {**self._chains, **chains}
            self._diff(t_ns, routes, scope=set(self._chains), report=report)
            return
        if not full and self._targeted():
            new = self._dump_targets()
            if new is not None:
                self._diff(t_ns, new, scope=set(self._chains), report=report)
                return
        cmd, parse = DUMPERS[self.mode]
        text = self._run_full(cmd)
        if self.mode == "iptables":
            self._sep_ip = sep_ips(text)
        if self._wanted and len(self._chains) < len(self._wanted):
            found = portals(self.mode, text)
            self._chains = {found[w][0]: found[w][1] for w in self._wanted if w in found}
        self._diff(t_ns, parse(text), report=report)

    def hurry(self) -> None:
        """A focus begins: end the idle wait, so the next question is asked now."""
        self._hurry.set()

    def check(self) -> None:
        """Ask the generation id once; a new one is a commit: mark it. Called by the
        prober's passes every GEN_POLL_S while a trial is watched closely (their wakeups
        are shared: a thread of its own waking every 5 ms cost ~2 % of a core), and by
        `_monitor` every GEN_IDLE_S."""
        source = self._gen
        if source is None or self._stop.is_set() or time.monotonic() < self._gen_quiet_until:
            return
        with self._gen_lock:
            try:
                now = source.read()
            except OSError:  # unanswered: a change maybe, the dump tells; ask less often
                self._gen_quiet_until = time.monotonic() + GEN_IDLE_S
                self._mark_dirty(time.time_ns())
                return
            if now != self._gen_seen:
                self._gen_seen = now
                self._mark_dirty(time.time_ns())

    def _monitor(self) -> None:
        """Ask every GEN_IDLE_S, and at once when a focus begins (`hurry`)."""
        while not self._stop.is_set():
            self._hurry.wait(GEN_IDLE_S)
            self._hurry.clear()
            self.check()

    def _mark_dirty(self, t_ns: int) -> None:
        """A change at t_ns; the first unconsumed one gives the stamp."""
        with self._mark:
            if not self._dirty.is_set():
                self._dirty_since = t_ns
                self._dirty.set()

    def _consume(self) -> int | None:
        """The stamp of the changes a dump starting now covers (None: no change since the
        last dump); a change marked from now on triggers the next dump."""
        with self._mark:
            if not self._dirty.is_set():
                return None
            self._dirty.clear()
            return self._dirty_since

    def _space_full(self) -> None:
        """Before a whole dump: wait out the spacing, unless a `watch` makes the next
        dump a targeted one meanwhile (or the watcher stops)."""
        while self.scope() == "full" and not self._stop.is_set():
            left = self._next_full - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, 0.05))

    def _dumper(self) -> None:
        while not self._stop.is_set():
            if self.method == "poll":
                time.sleep(self.poll_interval_s)
                self._mark_dirty(time.time_ns())
            else:
                self._dirty.wait()
                self._space_full()  # a whole dump costs seconds at scale
            if self._stop.is_set():
                break
            with self._lock:
                t_ns = self._consume()
                if t_ns is not None:  # None: an arming's whole dump took it meanwhile
                    self._take(t_ns)

    def _diff(self, t_ns: int, new: Routes, scope: set[str] | None = None,
              report: bool = True) -> None:
        """Compare `new` (covering the keys `scope`, None: all) with the known state and
        report the changes of keys whose state was known; adopt the rest silently."""
        old, known = self._routes, self._known
        keys = (set(old) | set(new)) if scope is None else scope
        for key in keys:
            if known is not None and key not in known:
                continue  # not watched until now: no earlier state to compare with
            before, after = old.get(key, set()), new.get(key, set())
            if not report:
                continue
            for ip in after - before:
                self.on_change(t_ns, key, ip, True)
            for ip in before - after:
                self.on_change(t_ns, key, ip, False)
        if scope is None:
            self._routes, self._known = new, None
        else:
            self._routes = {k: set(v) for k, v in new.items() if k in scope}
            self._known = set(scope)
