"""How far a node's kube-proxy rules have come: Services of one namespace routed, rule count.

Serves `GET /rules-summary?ns=NAMESPACE`: one dump of the node's rules (the rule
watcher's dumpers and parsers, bench.agent.rules), and from it the number of Services of
that namespace that route to at least one endpoint, and the size of the table:
iptables mode counts the `-A` lines of the nat table; nftables mode counts the rules and
the set and map elements of table `ip kube-proxy`. The harness polls this until every
node routes the whole background population (bench.background.wait).
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from bench.agent.rules import DUMPERS, Routes


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


def summary(mode: str, namespace: str) -> dict[str, Any]:
    """One dump of the node's rules for `mode`, summarised."""
    t0 = time.monotonic()
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
