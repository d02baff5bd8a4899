"""Lifecycle of the embedded local cluster: up, down, status, set-proxy-mode.

Topology (docs/design.md §6): a fabric namespace with a bridge and no uplink; a control-plane
namespace (etcd, kube-apiserver, kube-controller-manager, kube-scheduler); one namespace
per node (containerd, kubelet, kube-proxy). The root namespace only gets a loopback
forwarder to the API server, never an address or a route.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from bench import prom
from bench.build import doctor, images
from bench.build.gobuild import Toolset, require_toolset
from bench.cluster.local import components as comp
from bench.cluster.local import netns, nshttp, pki, procs, teardown
from bench.cluster.local.spec import API_PORT, ClusterSpec, check_mode
from bench.errors import ClusterError, UserError
from bench.paths import state_root
from bench.poll import wait_until
from bench.ready import is_ready

Say = Callable[[str], None]
CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBELET_CLIENT = "kube-apiserver-kubelet-client"  # the API server's identity to kubelets


@dataclass
class Timer:
    started: float

    def __call__(self) -> float:
        return round(time.monotonic() - self.started, 2)


# --- validation ------------------------------------------------------------------


def refuse_ipvs_without_kernel_support(mode: str) -> None:
    if mode == "ipvs" and not doctor.has_ipvs():
        raise UserError("proxy mode ipvs needs the kernel's IP_VS module, which this kernel "
                        "lacks; measure IPVS on kind (--provider kind) or a real cluster "
                        "(--kubeconfig)")


def validate_new(spec: ClusterSpec) -> None:
    """Everything that can be refused is refused here, before anything is created."""
    if os.geteuid() != 0:
        raise UserError("the local cluster needs root (network namespaces, mounts, cgroups)")
    refuse_ipvs_without_kernel_support(spec.proxy_mode)
    doctor.require_local()
    if is_running(spec.name):
        raise UserError(f"cluster name {spec.name!r} is already in use by a running cluster "
                        f"(`hopbench cluster down --name {spec.name}` first)")


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
        return json.loads(_state_path(spec).read_text())
    except (OSError, ValueError):
        return {}


def _write_state(spec: ClusterSpec, **updates: object) -> None:
    state = read_state(spec)
    state.update(updates)
    tmp = _state_path(spec).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.rename(_state_path(spec))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- building blocks ---------------------------------------------------------------


def make_pki(spec: ClusterSpec) -> None:
    d = spec.pki
    d.mkdir(parents=True, exist_ok=True)
    ca = pki.make_ca(d, "ca", "hopbench-ca")
    eca = pki.make_ca(d, "etcd-ca", "hopbench-etcd-ca")
    pki.issue(eca, d, "etcd-server", "etcd", server=True, dns=("localhost",), ips=("127.0.0.1",))
    pki.issue(eca, d, "apiserver-etcd-client", "kube-apiserver-etcd-client")
    dns, ips = comp.api_sans(spec)
    pki.issue(ca, d, "apiserver", "kube-apiserver", server=True, client=False, dns=dns, ips=ips)
    pki.issue(ca, d, "apiserver-kubelet-client", KUBELET_CLIENT, org="kubeadm:cluster-admins")
    pki.service_account_keys(d)
    inside = f"https://{spec.cp_ip}:{API_PORT}"
    cacrt = d / "ca.crt"
    admin = pki.issue(ca, d, "admin", "hopbench-admin", org="system:masters")
    pki.kubeconfig(spec.kubeconfig, f"https://127.0.0.1:{spec.api_port}", cacrt, admin,
                   "admin", cluster=spec.name)
    pki.kubeconfig(spec.state_dir / "admin-inside.kubeconfig", inside, cacrt, admin, "admin")
    for user, cn in (("controller-manager", "system:kube-controller-manager"),
                     ("scheduler", "system:kube-scheduler")):
        pair = pki.issue(ca, d, user, cn)
        pki.kubeconfig(spec.state_dir / f"{user}.kubeconfig", inside, cacrt, pair, cn)
    proxy = pki.issue(ca, d, "kube-proxy", "system:kube-proxy")
    for node in spec.node_names():
        nd = spec.node_dir(node)
        kubelet = pki.issue(ca, d, f"kubelet-{node}", f"system:node:{node}", org="system:nodes")
        pki.kubeconfig(nd / "kubelet.kubeconfig", inside, cacrt, kubelet, f"system:node:{node}")
        pki.kubeconfig(nd / "kube-proxy.kubeconfig", inside, cacrt, proxy, "system:kube-proxy")


def make_network(spec: ClusterSpec) -> None:
    f = spec.fabric_ns
    netns.add(f)
    netns.ip("-n", f, "link", "add", "name", "br0", "type", "bridge")
    netns.ip("-n", f, "addr", "add", f"{spec.gateway_ip}/24", "dev", "br0")
    netns.ip("-n", f, "link", "set", "br0", "up")
    netns.sysctl(f, "net.ipv4.ip_forward", "1")
    netns.sysctl(f, "net.ipv4.conf.all.send_redirects", "0")
    members = [(spec.cp_ns, "cp", spec.cp_ip)] + [
        (spec.node_ns(n), n, spec.node_ip(n)) for n in spec.node_names()]
    for ns, short, addr in members:
        netns.add(ns)
        netns.ip("-n", f, "link", "add", "name", short, "type", "veth", "peer", "name", "eth0",
                 "netns", ns)
        netns.ip("-n", f, "link", "set", short, "master", "br0", "up")
        netns.ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        netns.ip("-n", ns, "link", "set", "eth0", "up")
        netns.ip("-n", ns, "route", "add", "default", "via", spec.gateway_ip)
        netns.sysctl(ns, "net.ipv4.ip_forward", "1")


def route_pod_cidr(spec: ClusterSpec, node: str, cidr: str) -> None:
    netns.ip("-n", spec.fabric_ns, "route", "replace", cidr, "via", spec.node_ip(node))


def make_cgroups(spec: ClusterSpec) -> None:
    """Each node's pods live under /hopbench/<name>/<node> in every hierarchy."""
    for ctrl in CGROUP_ROOT.iterdir():
        if not ctrl.is_dir() or ctrl.is_symlink() or not (ctrl / "cgroup.procs").exists():
            continue
        for node in spec.node_names():
            path = ctrl
            for part in (*spec.cgroup_parent.strip("/").split("/"), node):
                parent, path = path, path / part
                path.mkdir(exist_ok=True)
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    if (path / knob).exists() and not (path / knob).read_text().strip():
                        (path / knob).write_text((parent / knob).read_text())


def import_images(spec: ClusterSpec, node: str, archives: dict[str, Path]) -> None:
    sock = str(spec.containerd_sock(node))
    wait_until(Path(sock).exists, 30, 0.05, f"containerd on {node} to start",
               hint=f"{spec.logs}/containerd-{node}.log")
    for ref, path in archives.items():
        proc = subprocess.run(["ctr", "-a", sock, "-n", "k8s.io", "images", "import",
                               "--snapshotter=overlayfs",
                               str(path)], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise ClusterError(f"importing {ref} into {node}: {proc.stderr.strip()}")


def api_client(spec: ClusterSpec, timeout: float = 5.0) -> httpx.Client:
    p = spec.pki
    ctx = ssl.create_default_context(cafile=str(p / "ca.crt"))
    ctx.load_cert_chain(str(p / "admin.crt"), str(p / "admin.key"))
    return httpx.Client(base_url=f"https://127.0.0.1:{spec.api_port}", timeout=timeout,
                        verify=ctx)


#: what a starting component answers before it is up: refused, 503, half-written JSON
STARTING_ERRORS = (OSError, httpx.HTTPError, ValueError, KeyError)


def wait_for(what: str, probe: Callable[[], bool], timeout: float, log_hint: str) -> None:
    """bench.poll.wait_until, tolerating STARTING_ERRORS, pointing at a log on timeout."""
    wait_until(probe, timeout, 0.1, what, retry_on=STARTING_ERRORS, hint=log_hint)


def last_proxy_sync(spec: ClusterSpec, node: str) -> float:
    """kube-proxy's own last successful sync (unix seconds; 0 before the first one).

    /healthz is no use here: it answers 200 before the first sync when nothing is pending.
    """
    status, body = nshttp.get(spec.node_ns(node), "127.0.0.1", 10249, "/metrics")
    if status != 200:
        return 0.0
    return prom.last_sync_s(body)


def proxy_synced(spec: ClusterSpec, node: str) -> bool:
    return last_proxy_sync(spec, node) > 0


# --- lifecycle ---------------------------------------------------------------------


def up(spec: ClusterSpec, say: Say = print, tools: Toolset | None = None) -> ClusterSpec:
    validate_new(spec)
    clock = Timer(time.monotonic())
    if teardown.cluster_netns(spec) or spec.state_dir.exists() or spec.run_dir.exists():
        counts = teardown.teardown(spec)
        say(f"cleaned what an earlier run of {spec.name!r} left: {counts}")
    tools = tools or require_toolset()
    spec = replace(spec, api_port=spec.api_port or _free_port())
    try:
        _up(spec, tools, say, clock)
    except BaseException:
        say("bring-up failed; logs kept in " + str(spec.logs))
        _keep_logs_and_teardown(spec)
        raise
    say(f"cluster {spec.name!r} up in {clock()}s: {spec.nodes} node(s), "
        f"kube-proxy {spec.proxy_mode}")
    return spec


def _keep_logs_and_teardown(spec: ClusterSpec) -> None:
    keep = spec.state_dir.parent / f".{spec.name}-failed-logs"
    shutil.rmtree(keep, ignore_errors=True)
    if spec.logs.exists():
        shutil.copytree(spec.logs, keep)
    teardown.teardown(spec)


def _up(spec: ClusterSpec, tools: Toolset, say: Say, clock: Timer) -> None:
    archives = images.standard_images(tools)
    for d in (spec.state_dir, spec.run_dir, spec.logs):
        d.mkdir(parents=True, exist_ok=True)
    for node in spec.node_names():
        for sub in ("cni", "kubelet", "pod-logs", "ipam"):
            (spec.node_dir(node) / sub).mkdir(parents=True, exist_ok=True)
        (spec.run_dir / node).mkdir(parents=True, exist_ok=True)
    (spec.state_dir / "spec.json").write_text(spec.to_json())
    (spec.state_dir / "resolv.conf").write_text("# hopbench: no cluster DNS\n")
    _write_state(spec, status="starting", owner_pid=os.getpid(), toolset=tools.as_dict(), pids={},
                 proxy_mode=spec.proxy_mode)
    teardown.claim_shared_dirs()
    make_pki(spec)
    make_network(spec)
    make_cgroups(spec)
    say(f"[{clock()}s] certificates, namespaces and cgroups ready")
    pids: dict[str, int] = {}

    def start(key: str, argv: list[str], ns: str | None) -> None:
        pids[key] = procs.start(argv, spec.logs / f"{key}.log", ns)
        _write_state(spec, pids=pids)

    start("etcd", comp.etcd(spec, tools), spec.cp_ns)
    start("kube-apiserver", comp.apiserver(spec, tools), spec.cp_ns)
    start("api-forwarder", procs.python_module(
        "bench.cluster.local.forward", str(spec.api_port), spec.cp_ns, spec.cp_ip,
        str(API_PORT)), None)
    pause = next(r for r in archives if "/pause:" in r)
    for node in spec.node_names():
        cfg = comp.containerd_config(spec, node, pause)
        start(f"containerd-{node}", comp.containerd(spec, node, cfg), spec.node_ns(node))
    with ThreadPoolExecutor(max_workers=max(1, spec.nodes)) as pool:
        for f in [pool.submit(import_images, spec, n, archives) for n in spec.node_names()]:
            f.result()
    say(f"[{clock()}s] images imported into {spec.nodes} containerd(s)")
    with api_client(spec) as api:
        wait_for("kube-apiserver /readyz", lambda: api.get("/readyz").status_code == 200,
                 90, f"{spec.logs}/kube-apiserver.log")
        say(f"[{clock()}s] API server ready")
        wait_for("the kubelet-client RBAC binding", functools.partial(grant_kubelet_api, api),
                 30, f"{spec.logs}/kube-apiserver.log")
        start("kube-controller-manager", comp.controller_manager(spec, tools), spec.cp_ns)
        start("kube-scheduler", comp.scheduler(spec, tools), spec.cp_ns)
        for node in spec.node_names():
            start(f"kubelet-{node}", comp.kubelet(spec, node, tools), spec.node_ns(node))
        cidrs: dict[str, str] = {}

        def all_cidrs() -> bool:
            for item in api.get("/api/v1/nodes").json()["items"]:
                name, cidr = item["metadata"]["name"], item["spec"].get("podCIDR")
                if cidr and name not in cidrs:
                    cidrs[name] = cidr
                    route_pod_cidr(spec, name, cidr)
                    comp.cni_config(spec, name, cidr)
            return len(cidrs) == spec.nodes

        wait_for("nodes to register and get pod CIDRs", all_cidrs, 90, f"{spec.logs}/kubelet-*")
        say(f"[{clock()}s] {spec.nodes} node(s) registered")
        start_proxies(spec, tools, spec.proxy_mode, start)
        wait_for("nodes Ready", lambda: _all_ready(api, spec.nodes), 90,
                 f"{spec.logs}/kubelet-*")
        for node in spec.node_names():
            wait_for(f"kube-proxy sync on {node}", functools.partial(proxy_synced, spec, node),
                     60, f"{spec.logs}/kube-proxy-{node}.log")
    (spec.state_dir / "spec.json").write_text(spec.to_json())
    _write_state(spec, status="up", up_seconds=clock(), node_cidrs=cidrs)


def grant_kubelet_api(api: httpx.Client) -> bool:
    """Let the API server call the kubelets' API (`kubectl logs`, `exec`, `port-forward`),
    as kubeadm does: bind its kubelet-client identity to system:kubelet-api-admin.

    Done right after the API server is ready and before any kubelet starts, so no kubelet
    has cached a refusal (its webhook authorizer keeps one for 30 s). True once it exists.
    """
    body = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "hopbench:apiserver-kubelet-api-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:kubelet-api-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": KUBELET_CLIENT}],
    }
    r = api.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", json=body)
    return r.status_code in (201, 409)  # 409: already there


def start_proxies(spec: ClusterSpec, tools: Toolset, mode: str,
                  start: Callable[[str, list[str], str | None], None]) -> None:
    for node in spec.node_names():
        start(f"kube-proxy-{node}", comp.kube_proxy(spec, node, tools, mode), spec.node_ns(node))


def _all_ready(api: httpx.Client, n: int) -> bool:
    items = api.get("/api/v1/nodes").json()["items"]
    return sum(is_ready(i) for i in items) == n


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
                     "status": state.get("status") if not dead else "degraded",
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


def set_proxy_mode(name: str, mode: str, say: Say = print,
                   tools: Toolset | None = None) -> float:
    """Stop kube-proxy everywhere, clean the old mode's rules, start the new mode, wait."""
    check_mode(mode)
    spec = ClusterSpec.load(name)
    refuse_ipvs_without_kernel_support(mode)
    if not is_running(name):
        raise UserError(f"cluster {name!r} is not running")
    tools = tools or require_toolset()
    clock = Timer(time.monotonic())
    state = read_state(spec)
    pids: dict[str, int] = state.get("pids", {})
    procs.stop([pids[f"kube-proxy-{n}"] for n in spec.node_names() if f"kube-proxy-{n}" in pids])
    for node in spec.node_names():
        netns.run_in(spec.node_ns(node), comp.kube_proxy_cleanup(tools), check=False)

    def start(key: str, argv: list[str], ns: str | None) -> None:
        pids[key] = procs.start(argv, spec.logs / f"{key}.log", ns)

    start_proxies(spec, tools, mode, start)
    _write_state(spec, pids=pids, proxy_mode=mode)
    for node in spec.node_names():
        wait_for(f"kube-proxy ({mode}) sync on {node}",
                 functools.partial(proxy_synced, spec, node), 60,
                 f"{spec.logs}/kube-proxy-{node}.log")
    say(f"kube-proxy now {mode} on {spec.nodes} node(s) after {clock()}s")
    return clock()
