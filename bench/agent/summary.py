"""How far a node's kube-proxy rules have come: Services of one namespace routed, rule count.

Serves `GET /rules-summary?ns=NAMESPACE`: the number of Services of that namespace that
route to at least one endpoint, and the size of the table. The harness polls this until
every node routes the whole background population (bench.background.wait), so it must stay
cheap at 10,000 Services, where a whole dump costs seconds of CPU:

- nftables: Services of the namespace among the verdicts of map `service-ips` (a
  ClusterIP:port is in it only while its Service has endpoints; nf_tables netlink,
  bench.agent.nftnl); rules = the rules of table `ip kube-proxy` plus the elements of its
  named sets and maps (anonymous verdict maps are part of their rules), counted over
  netlink.
- iptables: Services of the namespace among the jumps of `iptables -t nat -S
  KUBE-SERVICES` (a Service is there only while it has endpoints); rules = the rules of
  the nat table, which are its `-A` lines: counted over netlink where iptables is
  iptables-nft (table `ip nat`), else from `iptables-save -t nat`.
- ipvs (and any failure of the above): one whole dump, parsed as the rule watcher does.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from bench.agent import nftnl
from bench.agent.rules import DUMPERS, IPTABLES_PORTAL, Routes, nf_tables_backend


def service_of(key: str) -> str:
    """`ns/name` of a rules key: iptables `ns/name:port`, nftables `ns/name/tcp/port`,
    ipvs has none (an address)."""
    parts = key.split("/")
    if len(parts) < 2:
        return ""
    return f"{parts[0]}/{parts[1].split(':', 1)[0]}"


def routed_in(routes: Routes, namespace: str) -> int:
    """Services of `namespace` with at least one routed endpoint."""
    return len({svc for key, ips in routes.items() if ips
                and (svc := service_of(key)).startswith(namespace + "/")})


def count_iptables(dump: str) -> int:
    """`-A` lines of an `iptables-save -t nat` dump."""
    return sum(1 for line in dump.splitlines() if line.startswith("-A "))


def count_nft(dump: str) -> int:
    """Rules plus set and map elements of an `nft list table` dump."""
    count, block, in_elements = 0, "", False
    for raw in dump.splitlines():
        line = raw.strip()
        if in_elements:
            count += _elements(line.rstrip("}"))
            in_elements = not line.endswith("}")
            continue
        if not line or line.startswith("#"):
            continue
        head = line.split()[0]
        if head in ("chain", "set", "map") and line.endswith("{"):
            block = head
        elif line == "}":
            block = ""
        elif block in ("set", "map") and line.startswith("elements = {"):
            body = line[len("elements = {"):]
            count += _elements(body.rstrip("}"))
            in_elements = not body.rstrip().endswith("}")
        elif block == "chain" and head not in ("type", "policy", "comment"):
            count += 1
    return count


def _elements(text: str) -> int:
    return sum(1 for part in text.split(",") if part.strip())


COUNTERS = {"iptables": count_iptables, "nftables": count_nft}


def current_mode(started_as: str) -> str:
    """The mode kube-proxy runs in now (it may have been switched since the agent's rule
    watcher started): nftables while its nft table exists, else iptables; ipvs stays."""
    if started_as == "ipvs":
        return started_as
    try:
        out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    except OSError:
        return started_as or "iptables"
    tables = {line.strip() for line in out.splitlines()}
    return "nftables" if "table ip kube-proxy" in tables else "iptables"


def nft_summary(namespace: str) -> tuple[int, int]:
    """nftables over netlink: (Services of `namespace` in map service-ips, rules +
    named set and map elements of table ip kube-proxy)."""
    with nftnl.Client() as nl:
        services = {service_of(el.chain.split("-", 2)[2])
                    for el in nl.set_elements("service-ips")
                    if el.chain.startswith("service-") and el.chain.count("-") >= 2}
        elements = sum(len(nl.set_elements(name)) for name in nl.named_sets())
        rules = nl.rule_count()
    return sum(1 for svc in services if svc.startswith(namespace + "/")), rules + elements


def iptables_summary(namespace: str) -> tuple[int, int]:
    """iptables: (Services of `namespace` jumped to from nat KUBE-SERVICES, rules of the
    nat table); raises OSError when a tool is missing or fails."""
    proc = subprocess.run(["iptables", "-t", "nat", "-S", "KUBE-SERVICES"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise OSError(proc.stderr.strip())
    services = {service_of(key) for _ip, _proto, key, _port, _chain
                in IPTABLES_PORTAL.findall(proc.stdout)}
    routed = sum(1 for svc in services if svc.startswith(namespace + "/"))
    if nf_tables_backend():
        with nftnl.Client() as nl:
            return routed, nl.rule_count("nat")
    save = subprocess.run(DUMPERS["iptables"][0], capture_output=True, text=True)
    return routed, count_iptables(save.stdout)


CHEAP = {"nftables": nft_summary, "iptables": iptables_summary}


def summary(mode: str, namespace: str) -> dict[str, Any]:
    """The node's rules for `mode`, summarised (cheaply where the mode allows)."""
    t0 = time.monotonic()
    if (cheap := CHEAP.get(mode)) is not None:
        try:
            routed, rules = cheap(namespace)
            return {"mode": mode, "services_routed": routed, "rules": rules,
                    "dump_ms": round((time.monotonic() - t0) * 1000, 1)}
        except OSError:
            pass  # no netlink, no iptables: the whole dump below
    cmd, parse = DUMPERS[mode]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        dump = proc.stdout if proc.returncode == 0 else ""
    except OSError:  # the dumper is not installed: nothing is routed
        dump = ""
    counter = COUNTERS.get(mode)
    return {"mode": mode, "services_routed": routed_in(parse(dump), namespace),
            "rules": counter(dump) if counter else 0,
            "dump_ms": round((time.monotonic() - t0) * 1000, 1)}
