"""The fabric drops the background population's fake endpoint range, and counts it.

Background Services (bench.background) route to addresses in FAKE_RANGE that exist
nowhere. The fabric has no route for them anyway (no uplink, no default route), but that
is a consequence; this makes it a rule that can be shown: table `inet hopbench` in the
fabric namespace drops every packet for FAKE_RANGE at prerouting, before any routing
decision, and counts it (`fake_dropped`); a postrouting counter (`fake_leaving`) counts
any packet for that range that leaves the fabric by any interface, and must stay 0.
"""

from __future__ import annotations

import json

from bench.background.plan import FAKE_RANGE
from bench.cluster.local import netns
from bench.errors import ClusterError

TABLE = "hopbench"
DROPPED = "fake_dropped"
LEAVING = "fake_leaving"

RULESET = f"""
table inet {TABLE} {{
    counter {DROPPED} {{ }}
    counter {LEAVING} {{ }}
    chain prerouting {{
        type filter hook prerouting priority raw; policy accept;
        ip daddr {FAKE_RANGE} counter name "{DROPPED}" drop
    }}
    chain postrouting {{
        type filter hook postrouting priority srcnat; policy accept;
        ip daddr {FAKE_RANGE} counter name "{LEAVING}"
    }}
}}
"""


def install(ns: str) -> None:
    """Create the table in namespace `ns` (the fabric), replacing an older one."""
    proc = netns.run_in(ns, ["sh", "-c", f"nft delete table inet {TABLE} 2>/dev/null; "
                                        f"nft -f - <<'EOF'\n{RULESET}\nEOF"], check=False)
    if proc.returncode != 0:
        raise ClusterError(f"in {ns}: dropping {FAKE_RANGE}: {proc.stderr.strip()}")


def counters(ns: str) -> dict[str, int]:
    """Packets counted so far: {"fake_dropped": n, "fake_leaving": n}."""
    proc = netns.run_in(ns, ["nft", "-j", "list", "counters", "table", "inet", TABLE])
    out: dict[str, int] = {}
    for item in json.loads(proc.stdout).get("nftables", []):
        if "counter" in item:
            out[str(item["counter"]["name"])] = int(item["counter"]["packets"])
    return out
