"""The agent's nf_tables netlink trigger and targeted nftables listing on the real local
cluster (one node): a rule watcher in the node's network namespace, armed on one
Service, sees kube-proxy route a new endpoint (and drop it again) through the netlink
trigger, in iptables (iptables-nft) and nftables mode, with targeted listings only; the
rules summary counts the Service. Endpoint addresses come from the fake range, dropped
inside the fabric; nothing connects to them."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.cluster.local import cluster, netns, teardown
from bench.cluster.local.spec import ClusterSpec
from bench.poll import wait_until
from bench.providers.local import LocalProvider

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
# in the node netns: watch one ClusterIP:80, print each change and then the state
WATCH = r"""
import json, sys, time
from bench.agent import summary
from bench.agent.rules import RuleWatcher
ip, ns, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
w = RuleWatcher(lambda t, k, a, p: print(json.dumps(
    {"t_ns": t, "seen_ns": time.time_ns(), "key": k, "ip": a, "present": p}), flush=True))
w.start()
chains = w.watch([(ip, 80)])
full = w.dumps["full"]
print(json.dumps({"ready": True, "method": w.method, "mode": w.mode, "chains": chains}),
      flush=True)
for line in sys.stdin:  # the test says when it is done
    break
import subprocess
from bench.agent.rules import DUMPERS
whole = subprocess.run(DUMPERS[w.mode][0], capture_output=True, text=True).stdout
print(json.dumps({"routes": {k: sorted(v) for k, v in w.routes().items()},
                  "whole_count": summary.COUNTERS[w.mode](whole),
                  "full_after_arm": w.dumps["full"] - full, "targeted": w.dumps["targeted"],
                  "scope": w.scope(), "summary": summary.summary(w.mode, ns)}), flush=True)
"""


@pytest.fixture(scope="module")
def nl_cluster(tools) -> Iterator[ClusterSpec]:  # type: ignore[no-untyped-def]
    spec = cluster.up(ClusterSpec(name="netlink1", nodes=1, proxy_mode="iptables"),
                      say=lambda m: None, tools=tools)
    try:
        yield spec
    finally:
        teardown.teardown(spec)


def _slice(ns: str, ips: list[str]) -> dict[str, object]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in ips],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def _routed(node_ns: str, mode: str, ns: str) -> int:
    """Services of `ns` the node's rules route (the agent's rules summary)."""
    out = netns.run_in(node_ns, ["env", f"PYTHONPATH={ROOT}", sys.executable, "-c",
                                 "import sys, json; from bench.agent import summary; print("
                                 "json.dumps(summary.summary(sys.argv[1], sys.argv[2])))",
                                 mode, ns], check=False)
    return int(json.loads(out.stdout)["services_routed"]) if out.returncode == 0 else -1


def _next(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The watcher's next JSON line, within `timeout` seconds."""
    import select
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no line from the watcher within {timeout} s"
    line = proc.stdout.readline()
    assert line, "the watcher exited"
    return json.loads(line)  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_netlink_trigger_and_targeted_routes(mode: str, nl_cluster: ClusterSpec) -> None:
    prov = LocalProvider(nl_cluster)
    prov.set_proxy_mode(mode)
    kube = prov.kube()
    ns = "nl" + secrets.token_hex(3)
    kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": ns}})
    try:
        svc = kube.create(f"/api/v1/namespaces/{ns}/services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
        ip = svc["spec"]["clusterIP"]
        slices = f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"
        kube.create(slices, _slice(ns, ["10.255.250.1"]))
        node = nl_cluster.node_names()[0]
        wait_until(lambda: _routed(nl_cluster.node_ns(node), mode, ns) == 1, 60, 0.5,
                   "kube-proxy to route the Service")
        net = f"--net={netns.ns_path(nl_cluster.node_ns(node))}"
        proc = subprocess.Popen(
            ["nsenter", net, "--", sys.executable, "-c", WATCH, ip, ns, "60"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        try:
            start = _next(proc, 60)
            assert start["method"] == "netlink" and start["mode"] == mode
            key = "ns/web:http" if mode == "iptables" else "ns/web/tcp/http"
            key = key.replace("ns/", ns + "/")
            assert list(start["chains"]) == [key]
            changes: list[dict[str, Any]] = []
            t_patch = time.time_ns()
            kube.patch(f"{slices}/web-1", {"endpoints": _slice(
                ns, ["10.255.250.1", "10.255.250.2"])["endpoints"]})
            while not any(c["ip"] == "10.255.250.2" and c["present"] for c in changes):
                changes.append(_next(proc, 30))
            added = next(c for c in changes if c["ip"] == "10.255.250.2")
            assert added["key"] == key
            t_rule, seen = int(added["t_ns"]), int(added["seen_ns"])
            assert t_patch < t_rule <= seen
            print(f"\n{mode}: patch -> trigger {(t_rule - t_patch) / 1e6:.1f} ms, "
                  f"trigger -> reported {(seen - t_rule) / 1e6:.1f} ms")
            proc.stdin.write("\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            end = _next(proc, 30)
            assert end["routes"] == {key: ["10.255.250.1", "10.255.250.2"]}
            assert end["scope"] == "targeted" and end["targeted"] >= 1
            assert end["full_after_arm"] == 0
            assert end["summary"]["services_routed"] == 1
            # the cheap count is the whole dump's count (the formula of test_background)
            assert end["summary"]["rules"] == end["whole_count"] > 0
            print(f"{mode}: {end}")
        finally:
            proc.kill()
            proc.communicate()  # closes its pipes
    finally:
        kube.delete(f"/api/v1/namespaces/{ns}")
        kube.close()
