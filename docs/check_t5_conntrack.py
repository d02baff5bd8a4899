"""Check T5 against the kernel: first_success t_ns vs conntrack's NEW event, per trial.

T5 (`first_success`) is the send time of the first request a new pod answers: the agent
reads the clock just before connect(). The kernel creates that connection's conntrack
entry when the SYN passes the node's netfilter hooks, DNATed from the ClusterIP to the
pod. On a local cluster (one kernel clock, docs/design.md §3) the two can be compared
directly. While a run goes, record the NEW events in a node's namespace, e.g.

    timeout 900 hopbench cluster exec NAME n1 -- conntrack -E -e NEW -o timestamp > n1.ct

then:

    python docs/check_t5_conntrack.py RUN_DIR n1=n1.ct [n2=n2.ct ...]

For each add trial and node, the matched event is the earliest NEW TCP connection from
that node to a Service port whose reply source is the new pod's IP (the kubelet's probes
go to the pod IP directly, so their original destination is the pod and they are left
out), within 2 s of T5. `-o timestamp` is when conntrack received the event (userspace,
microseconds), a little after the kernel created it, so the figure bounds T5's lead over
the SYN from above.
"""

from __future__ import annotations

import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

NEW = re.compile(
    r"^\[(?P<s>\d+)\.(?P<us>\d{6})\]\s+\[NEW\] tcp\s+\d+ \d+ SYN_SENT "
    r"src=(?P<src>\S+) dst=(?P<dst>\S+) sport=\d+ dport=(?P<dport>\d+) "
    r"(?:\[UNREPLIED\] )?src=(?P<rsrc>\S+) ")
WINDOW_NS = 2_000_000_000


@dataclass(frozen=True)
class New:
    t_ns: int
    dst: str      # original destination (the ClusterIP)
    backend: str  # reply source: the pod the connection was DNATed to


def parse(path: Path) -> list[New]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if (m := NEW.match(line)) and m["dst"] != m["rsrc"]:
            out.append(New(int(m["s"]) * 10**9 + int(m["us"]) * 1000, m["dst"], m["rsrc"]))
    return out


def compare(run_dir: Path, logs: dict[str, Path]) -> pd.DataFrame:
    ev = pd.read_parquet(run_dir / "events.parquet")
    t5 = ev[(ev.event == "first_success") & ev.node.isin(list(logs))]
    news = {node: parse(path) for node, path in logs.items()}
    rows = []
    for r in t5.itertuples():
        t = int(r.t_ns)
        near = [n for n in news[str(r.node)]
                if n.backend == r.pod_ip and abs(n.t_ns - t) <= WINDOW_NS]
        first = min(near, key=lambda n: n.t_ns) if near else None
        rows.append({"proxy_mode": r.proxy_mode, "trial": r.trial, "node": r.node,
                     "pod_ip": r.pod_ip, "clock": r.clock, "offset_ns": r.offset_ns,
                     "conntrack_minus_t5_ms": (first.t_ns - t) / 1e6 if first else float("nan"),
                     "news_before_t5": sum(n.t_ns < t for n in near)})
    return pd.DataFrame(rows)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    logs = {k: Path(v) for k, _, v in (a.partition("=") for a in argv[1:])}
    df = compare(Path(argv[0]), logs)
    print(df.to_string(index=False))
    d = df.conntrack_minus_t5_ms.dropna().tolist()
    if d:
        print(f"\nconntrack NEW minus T5 (ms): n={len(d)} of {len(df)}, min {min(d):.3f}, "
              f"median {statistics.median(d):.3f}, max {max(d):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
