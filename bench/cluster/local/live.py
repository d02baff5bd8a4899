"""A running local cluster: its state, condition and status, its API client, waits on it,
switching kube-proxy's mode, running a command on a node, and removing it.

What the run path needs of a local cluster lives here; creating one (certificates,
network, images, daemons) is bench.cluster.local.cluster's job, which may build.
"""

from __future__ import annotations

import functools
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import prom
from bench.cluster import doctor
from bench.cluster.local import components as comp
from bench.cluster.local import netns, nshttp, procs, teardown
from bench.cluster.local.spec import ClusterSpec, check_mode
from bench.cluster.toolset import Toolset, find_toolset
from bench.errors import ClusterError, UserError
from bench.kube import ApiStatusError, ApiUnreachable, Kube
from bench.paths import state_root
from bench.poll import wait_until

Say = Callable[[str], None]



def refuse_ipvs_without_kernel_support(mode: str) -> None:
    if mode == "ipvs" and not doctor.has_ipvs():
        raise UserError("proxy mode ipvs needs the kernel's IP_VS module, which this kernel "
                        "lacks; measure IPVS on kind (--provider kind) or a real cluster "
                        "(--kubeconfig)")



def is_running(name: str) -> bool:
    path = state_root() / name / "spec.json"
    if not path.exists():
        return False
    state = read_state(ClusterSpec.load(name))
    if state.get("status") == "starting":  # an `up` in progress, unless its owner died
        return procs.alive(int(state.get("owner_pid", 0)))
    pids = state.get("pids", {}).values()
    return state.get("status") == "up" and bool(pids) and all(procs.alive(p) for p in pids)



@dataclass(frozen=True)
class Condition:
    """What is there of a local cluster name, judged from its recorded state and pids."""

    name: str
    state: str  # absent | up | starting | degraded | leftovers
    dead: tuple[str, ...] = ()  # components whose recorded pid is gone
    owner_pid: int = 0  # the `cluster up` in progress, when starting

    def refusal(self) -> str:
        """Why a run may neither use nor replace this cluster, and what to do instead."""
        recreate = (f"`hopbench cluster down --name {self.name}` then `hopbench cluster up "
                    f"--name {self.name}`, or pick another --cluster")
        if self.state == "degraded":
            return (f"cluster {self.name!r} is degraded (dead: {', '.join(self.dead)}); "
                    f"a run neither uses nor replaces it: {recreate}")
        if self.state == "starting":
            return (f"cluster {self.name!r} is still being brought up (by pid "
                    f"{self.owner_pid}); wait for it, or pick another --cluster")
        return (f"cluster {self.name!r} is not running but left state or namespaces behind "
                f"(an interrupted `cluster up`?); a run does not remove them: {recreate}")



def condition(name: str) -> Condition:
    """Absent (nothing of that name exists), up (every recorded daemon alive), or else."""
    path = state_root() / name / "spec.json"
    if not path.exists():
        spec = ClusterSpec(name=name)
        left = teardown.cluster_netns(spec) or spec.state_dir.exists() or spec.run_dir.exists()
        return Condition(name, "leftovers" if left else "absent")
    state = read_state(ClusterSpec.load(name))
    owner = int(state.get("owner_pid", 0))
    if state.get("status") == "starting" and procs.alive(owner):
        return Condition(name, "starting", owner_pid=owner)
    pids: dict[str, int] = state.get("pids", {})
    dead = tuple(sorted(k for k, p in pids.items() if not procs.alive(p)))
    if state.get("status") != "up" or not pids:
        return Condition(name, "leftovers", dead)
    return Condition(name, "degraded" if dead else "up", dead)



def _state_path(spec: ClusterSpec) -> Path:
    return spec.state_dir / "state.json"



def read_state(spec: ClusterSpec) -> dict[str, Any]:
    """What `up` recorded of a cluster (status, pids, proxy mode, timings); {} if none."""
    try:
        state: dict[str, Any] = json.loads(_state_path(spec).read_text())
        return state
    except (OSError, ValueError):
        return {}



def _write_state(spec: ClusterSpec, **updates: object) -> None:
    state = read_state(spec)
    state.update(updates)
    tmp = _state_path(spec).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.rename(_state_path(spec))



def api_client(spec: ClusterSpec, timeout: float = 5.0) -> Kube:
    """The cluster's admin client (its kubeconfig: client certificate, loopback forwarder)."""
    return Kube(spec.kubeconfig, timeout=timeout)



STARTING_ERRORS = (OSError, ApiUnreachable, ApiStatusError, ValueError, KeyError)



def wait_for(what: str, probe: Callable[[], bool], timeout: float, log_hint: str) -> None:
    """bench.poll.wait_until, tolerating STARTING_ERRORS, pointing at a log on timeout."""
    wait_until(probe, timeout, 0.1, what, retry_on=STARTING_ERRORS, hint=log_hint)



def last_proxy_sync(spec: ClusterSpec, node: str) -> float:
    """kube-proxy's own last successful sync (unix seconds; 0 before the first one).

    /healthz is no use here: it answers 200 before the first sync when nothing is pending.
    """
    body = _proxy_metrics(spec, node)
    return prom.last_sync_s(body) if body is not None else 0.0


def _proxy_metrics(spec: ClusterSpec, node: str) -> str | None:
    """kube-proxy's /metrics text on `node`, None when it does not answer 200."""
    status, body = nshttp.get(spec.node_ns(node), "127.0.0.1", 10249, "/metrics")
    return body if status == 200 else None



def proxy_synced(spec: ClusterSpec, node: str) -> bool:
    return last_proxy_sync(spec, node) > 0


def first_syncs(spec: ClusterSpec, nodes: list[str]) -> dict[str, tuple[float, bool]]:
    """Per node, kube-proxy's last successful sync (unix s) and whether it is its first
    (it has synced once): read right after a (re)start's wait, the end of the first sync."""
    out: dict[str, tuple[float, bool]] = {}
    for node in nodes:
        if (body := _proxy_metrics(spec, node)) is not None:
            stamp, syncs = prom.last_sync(body)
            out[node] = (stamp, syncs == 1)
    return out



def start_proxies(spec: ClusterSpec, tools: Toolset, mode: str,
                  start: Callable[[str, list[str], str | None], object],
                  nodes: list[str] | None = None) -> None:
    for node in spec.node_names() if nodes is None else nodes:
        start(f"kube-proxy-{node}", comp.kube_proxy(spec, node, tools, mode), spec.node_ns(node))


def stop_proxies(spec: ClusterSpec) -> int:
    """Stop kube-proxy on every node and forget its pids (the cluster stays `up`); the
    next replace_proxies starts it again. Returns how many were stopped."""
    state = read_state(spec)
    pids: dict[str, int] = state.get("pids", {})
    keys = [k for k in pids if k.startswith("kube-proxy-")]
    procs.stop([pids[k] for k in keys])
    _write_state(spec, pids={k: p for k, p in pids.items() if k not in keys},
                 proxies_stopped=True)  # `cluster status` says so until the next start
    return len(keys)


#: `kube-proxy --cleanup` removes its rules; at 10,000 Services in iptables mode it took
#: 29-50 s, once over a minute (a 60 s limit ended a scale job there)
CLEANUP_TIMEOUT_S = 600.0


def replace_proxies(spec: ClusterSpec, tools: Toolset, mode: str, nodes: list[str],
                    between: Callable[[], None] | None = None) -> dict[str, int]:
    """Stop kube-proxy on `nodes`, remove its rules there (the upstream `kube-proxy
    --cleanup` in each node's namespace), call `between`, start it again in `mode`.

    The one path for a mode switch (every node) and a restart (one node, the
    proxy-restart scenario). Returns harness-clock stamps (time.time_ns()): `killed_ns`
    just before SIGTERM, `stopped_ns` once every old process is gone, `cleaned_ns` once
    the cleanup returned, `started_ns` once the new processes were spawned (nsenter has
    exec'd; kube-proxy's own exec follows).
    """
    state = read_state(spec)
    pids: dict[str, int] = state.get("pids", {})
    stamps = {"killed_ns": time.time_ns()}
    procs.stop([pids[f"kube-proxy-{n}"] for n in nodes if f"kube-proxy-{n}" in pids])
    stamps["stopped_ns"] = time.time_ns()
    for node in nodes:
        netns.run_in(spec.node_ns(node), comp.kube_proxy_cleanup(tools), check=False,
                     timeout=CLEANUP_TIMEOUT_S)
    stamps["cleaned_ns"] = time.time_ns()
    if between is not None:
        between()

    def start(key: str, argv: list[str], ns: str | None) -> None:
        pids[key] = procs.start(argv, spec.logs / f"{key}.log", ns)

    start_proxies(spec, tools, mode, start, nodes)
    stamps["started_ns"] = time.time_ns()
    _write_state(spec, pids=pids, proxy_mode=mode, proxies_stopped=False)
    return stamps



def down(name: str, say: Say = print) -> dict[str, int]:
    spec = _spec_or_default(name)
    counts = teardown.teardown(spec)
    left = teardown.leftovers(spec)
    if any(left.values()):
        raise ClusterError(f"teardown of {name!r} left: { {k: v for k, v in left.items() if v} }")
    return counts



def _spec_or_default(name: str) -> ClusterSpec:
    try:
        return ClusterSpec.load(name)
    except UserError:
        return ClusterSpec(name=name)  # nothing recorded: still sweep what the name owns



def status(name: str | None = None) -> list[dict[str, object]]:
    root = state_root()
    names = [name] if name else sorted(p.name for p in root.iterdir()
                                       if (p / "spec.json").exists()) if root.exists() else []
    rows = []
    for n in names:
        spec = ClusterSpec.load(n)
        state = read_state(spec)
        pids = state.get("pids", {})
        dead = sorted(k for k, p in pids.items() if not procs.alive(p))
        rows.append({"name": n, "nodes": spec.nodes, "proxy_mode": state.get("proxy_mode"),
                     "node_rss_mib": node_memory_mib(spec),
                     "status": "degraded" if dead else (
                         "up, kube-proxy stopped (set-proxy-mode starts it)"
                         if state.get("status") == "up" and state.get("proxies_stopped")
                         else state.get("status")),
                     "dead": dead, "kubeconfig": str(spec.kubeconfig),
                     "api": f"https://127.0.0.1:{spec.api_port}"})
    return rows



def node_memory_mib(spec: ClusterSpec) -> dict[str, float]:
    """Resident memory of everything running in each node's namespace (daemons + pods)."""
    out: dict[str, float] = {}
    for node in spec.node_names():
        ns = spec.node_ns(node)
        ino = netns.inode(netns.ns_path(ns))
        pods = teardown.pod_netns(ns) if ino else []
        inodes = {i for i in [ino, *(netns.inode(netns.ns_path(p)) for p in pods)] if i}
        total = 0
        for pid in procs.with_descendants(netns.pids_in(inodes)):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        out[node] = round(total / 1024, 1)
    return out



def exec_in(name: str, node: str, cmd: list[str]) -> int:
    spec = ClusterSpec.load(name)
    if node not in spec.node_names() + ["cp", "fabric"]:
        raise UserError(f"cluster {name!r} has no node {node!r} "
                        f"(nodes: {', '.join(spec.node_names())}, cp, fabric)")
    ns = {"cp": spec.cp_ns, "fabric": spec.fabric_ns}.get(node, spec.node_ns(node))
    return subprocess.run(["nsenter", f"--net={netns.ns_path(ns)}", "--", *cmd]).returncode


#: kube-proxy's first sync after a start: 129 s was measured here in nftables mode with
#: 10,000 background Services; upstream reports full syncs of 13-16 min at 5k-44k
FIRST_SYNC_TIMEOUT_S = 900.0


def set_proxy_mode(name: str, mode: str, say: Say = print,
                   tools: Toolset | None = None) -> dict[str, Any]:
    """Stop kube-proxy everywhere, clean the old mode's rules, start the new mode, wait for
    every node's first sync. Returns replace_proxies' stamps, `first_sync_s` per node (the
    end of its first sync, unix s, from kube-proxy's metrics), `first_sync_exact` (False
    where it had synced again before it was read) and `switch_s`."""
    check_mode(mode)
    spec = ClusterSpec.load(name)
    refuse_ipvs_without_kernel_support(mode)
    if not is_running(name):
        raise UserError(f"cluster {name!r} is not running")
    tools = tools or find_toolset()
    started = time.monotonic()
    stamps: dict[str, Any] = dict(replace_proxies(spec, tools, mode, spec.node_names()))
    for node in spec.node_names():
        wait_for(f"kube-proxy ({mode}) sync on {node}",
                 functools.partial(proxy_synced, spec, node), FIRST_SYNC_TIMEOUT_S,
                 f"{spec.logs}/kube-proxy-{node}.log")
    firsts = first_syncs(spec, spec.node_names())
    stamps["first_sync_s"] = {n: t for n, (t, _) in firsts.items()}
    stamps["first_sync_exact"] = {n: first for n, (_, first) in firsts.items()}
    stamps["switch_s"] = round(time.monotonic() - started, 2)
    say(f"kube-proxy now {mode} on {spec.nodes} node(s) after {stamps['switch_s']:.2f}s")
    return stamps

