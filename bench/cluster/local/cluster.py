"""Lifecycle of the embedded local cluster: up, down, status, set-proxy-mode.

Topology (docs/design.md §6): a fabric namespace with a bridge and no uplink; a control-plane
namespace (etcd, kube-apiserver, kube-controller-manager, kube-scheduler); one namespace
per node (containerd, kubelet, kube-proxy). The root namespace only gets a loopback
forwarder to the API server, never an address or a route.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from bench.build import images
from bench.build.gobuild import require_toolset
from bench.cluster import doctor
from bench.cluster.local import components as comp
from bench.cluster.local import fakedrop, netns, pki, procs, teardown
from bench.cluster.local.live import (
    Say,
    _write_state,
    api_client,
    condition,
    is_running,
    proxy_synced,
    refuse_ipvs_without_kernel_support,
    start_proxies,
    wait_for,
)
from bench.cluster.local.spec import API_PORT, ClusterSpec
from bench.cluster.toolset import Toolset
from bench.errors import ClusterError, UserError
from bench.kube import Kube
from bench.poll import wait_until
from bench.ready import is_ready

CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBELET_CLIENT = "kube-apiserver-kubelet-client"  # the API server's identity to kubelets


@dataclass
class Timer:
    started: float

    def __call__(self) -> float:
        return round(time.monotonic() - self.started, 2)


# --- validation ------------------------------------------------------------------




def validate_new(spec: ClusterSpec) -> None:
    """Everything that can be refused is refused here, before anything is created."""
    if os.geteuid() != 0:
        raise UserError("the local cluster needs root (network namespaces, mounts, cgroups)")
    refuse_ipvs_without_kernel_support(spec.proxy_mode)
    doctor.require_local()
    if is_running(spec.name):
        raise UserError(f"cluster name {spec.name!r} is already in use by a running cluster "
                        f"(`hopbench cluster down --name {spec.name}` first)")














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
    fakedrop.install(f)  # the background population's fake endpoints die here, counted
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




#: what a starting component answers before it is up: refused, 503, half-written JSON








# --- lifecycle ---------------------------------------------------------------------


def up(spec: ClusterSpec, say: Say = print, tools: Toolset | None = None) -> ClusterSpec:
    validate_new(spec)
    clock = Timer(time.monotonic())
    if teardown.cluster_netns(spec) or spec.state_dir.exists() or spec.run_dir.exists():
        counts = teardown.teardown(spec)
        say(f"cleaned what an earlier run of {spec.name!r} left: {counts}")
    tools = tools or require_toolset()
    if spec.mesh:  # its build (minutes, once) before anything of the cluster exists
        from bench.build.meshbuild import build_mesh
        build_mesh()
    spec = replace(spec, api_port=spec.api_port or _free_port())
    try:
        _up(spec, tools, say, clock)
    except BaseException:
        say(f"bring-up failed; logs kept in {failed_logs(spec)}")
        _keep_logs_and_teardown(spec)
        raise
    say(f"cluster {spec.name!r} up in {clock()}s: {spec.nodes} node(s), "
        f"kube-proxy {spec.proxy_mode}")
    return spec


def failed_logs(spec: ClusterSpec) -> Path:
    """Where a failed bring-up's logs are kept (the state directory itself is removed)."""
    return spec.state_dir.parent / f".{spec.name}-failed-logs"


def _keep_logs_and_teardown(spec: ClusterSpec) -> None:
    keep = failed_logs(spec)
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

    def start(key: str, argv: list[str], ns: str | None,
              env: dict[str, str] | None = None) -> int:
        pids[key] = procs.start(argv, spec.logs / f"{key}.log", ns, env=env)
        _write_state(spec, pids=pids)
        return pids[key]

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
        wait_for("kube-apiserver /readyz", lambda: api.request("GET", "/readyz").status_code == 200,
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
            for item in api.list("/api/v1/nodes"):
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
        if spec.mesh:
            _start_mesh(spec, api, start, say, clock)
    (spec.state_dir / "spec.json").write_text(spec.to_json())
    _write_state(spec, status="up", up_seconds=clock(), node_cidrs=cidrs)


def _start_mesh(spec: ClusterSpec, api: Kube, start: Callable[..., int], say: Say,
                clock: Timer) -> None:
    """The mesh's control plane in the control-plane namespace, and where the node agents
    find its client and discovery server (state.json `mesh`; the run path reads it there,
    never the build)."""
    from bench.build.meshbuild import require_mesh
    from bench.mesh import registry as meshes

    local = meshes.local_module(spec.mesh)
    kept = failed_logs(spec) / local.log_path(spec).name
    local.start(spec, api, start, log_hint=kept)
    tools = require_mesh()
    _write_state(spec, mesh={"name": spec.mesh, "xds": local.xds_address(spec),
                             "client": str(tools.path(meshes.get(spec.mesh).client)),
                             "log": str(local.log_path(spec))})
    say(f"[{clock()}s] {spec.mesh} control plane ready")


def grant_kubelet_api(api: Kube) -> bool:
    """Let the API server call the kubelets' API (`kubectl logs`, `exec`, `port-forward`),
    as kubeadm does: bind its kubelet-client identity to system:kubelet-api-admin.

    Done right after the API server is ready and before any kubelet starts, so no kubelet
    has cached a refusal (its webhook authorizer keeps one for 30 s). True once it exists.
    """
    body = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "kube-apiserver-kubelet-api-admin"},  # kubeadm grants the same
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:kubelet-api-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": KUBELET_CLIENT}],
    }
    r = api.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", json=body)
    return r.status_code in (201, 409)  # 409: already there




def _all_ready(api: Kube, n: int) -> bool:
    return sum(is_ready(i) for i in api.list("/api/v1/nodes")) == n














def ensure(name: str, nodes: int, mode: str, component_args: dict[str, list[str]],
           say: Say = print, mesh: str = "",
           component_env: dict[str, dict[str, str]] | None = None
           ) -> tuple[ClusterSpec, bool]:
    """The cluster a run measures, and whether this call created it (the run then owns it
    and removes it after). A healthy cluster of that name is reused; one is brought up
    where nothing of that name exists. Anything in between (a dead daemon, a bring-up in
    progress, leftovers) is refused: the cluster is the user's, a run never removes it."""
    cond = condition(name)
    if cond.state not in ("up", "absent"):
        raise UserError(cond.refusal())
    if cond.state == "up":
        spec = ClusterSpec.load(name)
        say(f"using running local cluster {name!r} ({spec.nodes} nodes)")
        if mesh and spec.mesh != mesh:
            raise UserError(f"cluster {name!r} runs " + (f"mesh {spec.mesh!r}" if spec.mesh
                            else "no mesh") + f", not {mesh!r}: `hopbench cluster down "
                            f"--name {name}` then `hopbench cluster up --name {name} "
                            f"--mesh {mesh}`, or pick another --cluster")
        return spec, False
    spec = up(ClusterSpec(name=name, nodes=nodes, proxy_mode=mode,
                          component_args=component_args, mesh=mesh,
                          component_env=component_env or {}), say=say)
    return spec, True
