"""Which backend IPs a node's kube-proxy rules currently route each Service to.

Pure parsers over rule dumps, one per dataplane, plus the watcher that decides when to
take a dump: on every `nft monitor` event where the backend is nf_tables (nftables mode
and iptables-nft), by polling otherwise (iptables-legacy, IPVS). Only rules that route
a Service count: a kube-proxy nftables endpoint chain that still exists but is no
longer referenced from the Service's vmap does not carry traffic.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable

IPTABLES_SVC = re.compile(
    r'^-A KUBE-SV[CL]-\S+ .*--comment "?([^ "]+) -> (\d+\.\d+\.\d+\.\d+):\d+"? .*-j KUBE-SEP-')
NFT_GOTO = re.compile(r"goto endpoint-[A-Z0-9]+-([^ ,]+?)__(\d+\.\d+\.\d+\.\d+)/\d+")
IPVS_SERVICE = re.compile(r"^(TCP|UDP|SCTP)\s+(\S+)")
IPVS_REAL = re.compile(r"^\s+->\s+(\d+\.\d+\.\d+\.\d+):\d+")

Routes = dict[str, set[str]]  # service key -> backend IPs


IPTABLES_PORTAL = re.compile(
    r'^-A KUBE-SERVICES .*--comment "?([^ "]+) cluster IP"? .*-j (KUBE-SV[CL]-\S+)')
IPTABLES_DNAT = re.compile(
    r"^-A (KUBE-SEP-\S+) .*-j DNAT --to-destination (\d+\.\d+\.\d+\.\d+):\d+")
IPTABLES_JUMP = re.compile(r"^-A (KUBE-SV[CL]-\S+) .*-j (KUBE-SEP-\S+)")


def parse_iptables(dump: str) -> Routes:
    """Each Service's endpoints from the jumps KUBE-SVC -> KUBE-SEP. Above 1000 endpoints
    kube-proxy writes those jumps without comments ("large cluster mode"), so a jump's
    Service comes from the KUBE-SERVICES rule that enters its chain and its IP from the
    KUBE-SEP chain's DNAT, and the comment is only a fallback."""
    lines = dump.splitlines()
    service: dict[str, str] = {}
    ip_of: dict[str, str] = {}
    for line in lines:
        if m := IPTABLES_PORTAL.match(line):
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
    """Keeps the routed IP sets and calls `on_change(t_ns, key, ip, present)` on changes."""

    def __init__(self, on_change: Callable[[int, str, str, bool], None],
                 poll_interval_s: float = 0.02) -> None:
        self.on_change = on_change
        self.poll_interval_s = poll_interval_s
        self.mode = ""
        self.method = ""
        self.resolution_ns = 0
        self._routes: Routes = {}
        self._stop = threading.Event()
        self._dirty = threading.Event()
        self._dirty_since = 0
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.mode = detect_mode()
        event_driven = shutil.which("nft") is not None and (
            self.mode == "nftables" or (self.mode == "iptables" and nf_tables_backend()))
        self.method = "nft-monitor" if event_driven else "poll"
        # event-driven: the stamp is when the agent read the monitor's line, a few ms after
        # the commit at worst on a loaded 2-core node; polling: the interval
        self.resolution_ns = 5_000_000 if event_driven else int(self.poll_interval_s * 1e9)
        self._routes = self._dump()
        threading.Thread(target=self._dumper, daemon=True, name="rules-dump").start()
        if event_driven:
            threading.Thread(target=self._monitor, daemon=True, name="nft-monitor").start()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()

    def monitor_pid(self) -> int:
        """The live `nft monitor` child, 0 if none."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else 0

    def routes(self) -> Routes:
        return {k: set(v) for k, v in self._routes.items()}

    def _dump(self) -> Routes:
        cmd, parse = DUMPERS[self.mode]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 and self.mode == "nftables":
            return {}  # the table is gone (mode switch): nothing routed
        return parse(proc.stdout)

    def _monitor(self) -> None:
        try:  # Linux applies this to the calling thread only: read events the moment they come
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        except (OSError, AttributeError):
            pass  # not permitted: stamps may lag a little more under load
        self._proc = subprocess.Popen(["nft", "monitor", "rules"], stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True, bufsize=1)
        assert self._proc.stdout is not None
        for _ in self._proc.stdout:
            if self._stop.is_set():
                break
            if not self._dirty.is_set():
                self._dirty_since = time.time_ns()
                self._dirty.set()

    def _dumper(self) -> None:
        while not self._stop.is_set():
            if self.method == "poll":
                time.sleep(self.poll_interval_s)
                self._dirty_since = time.time_ns()
            else:
                self._dirty.wait()
                time.sleep(0.002)  # let the burst of one sync finish
            self._dirty.clear()
            t_ns = self._dirty_since
            new = self._dump()
            self._diff(t_ns, new)

    def _diff(self, t_ns: int, new: Routes) -> None:
        old = self._routes
        for key in set(old) | set(new):
            before, after = old.get(key, set()), new.get(key, set())
            for ip in after - before:
                self.on_change(t_ns, key, ip, True)
            for ip in before - after:
                self.on_change(t_ns, key, ip, False)
        self._routes = new
