"""Remove every trace of a local cluster, found by discovery rather than by trusting state.

`down` and the crash cleanup before `up` share this: after a kill -9 the pid file may
be stale, so we find what belongs to the cluster from the kernel's own view — processes
whose network namespace is one of the cluster's (plus their descendants, which covers
container shims and containers), root-namespace helpers whose command line names the
cluster, mounts under the cluster's directories, pod namespaces peered with its nodes,
and its cgroups. Every step is idempotent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from bench.cluster.local import netns, procs
from bench.cluster.local.spec import ClusterSpec
from bench.paths import state_root

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cluster_netns(spec: ClusterSpec) -> list[str]:
    if not netns.NETNS_DIR.exists():
        return []
    return sorted(n for n in os.listdir(netns.NETNS_DIR) if n.startswith(spec.ns_prefix))


def pod_netns(node_ns: str) -> list[str]:
    """Named namespaces (containerd's cni-*) that have a peer link into this node."""
    proc = netns.ip("-n", node_ns, "-j", "netns", "list-id", check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    return [e["name"] for e in json.loads(proc.stdout)
            if isinstance(e.get("name"), str) and e["name"].startswith("cni-")]


def cluster_pids(spec: ClusterSpec, namespaces: list[str]) -> list[int]:
    inodes = {i for n in namespaces if (i := netns.inode(netns.ns_path(n)))}
    pids = netns.pids_in(inodes) if inodes else []
    markers = (str(spec.state_dir) + "/", str(spec.run_dir) + "/", f" {spec.cp_ns} ")
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            line = procs.cmdline(int(entry)) + " "
            if any(m in line for m in markers):
                pids.append(int(entry))
    return procs.with_descendants(sorted(set(pids)))


def cluster_mounts(spec: ClusterSpec, extra: list[Path]) -> list[str]:
    prefixes = (str(spec.state_dir) + "/", str(spec.run_dir) + "/")
    exact = {str(p) for p in extra}
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefixes) or point in exact:
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


def cgroup_dirs(spec: ClusterSpec) -> list[Path]:
    found: list[Path] = []
    if not CGROUP_ROOT.exists():
        return found
    for ctrl in CGROUP_ROOT.iterdir():
        base = ctrl / spec.cgroup_parent.lstrip("/")
        if base.is_dir():
            found.extend(Path(p) for p, _, _ in os.walk(base, topdown=False))
    return [Path(p) for p in found]


def remove_cgroups(spec: ClusterSpec) -> None:
    for d in cgroup_dirs(spec):
        try:
            d.rmdir()
        except OSError:
            pass
    for ctrl in CGROUP_ROOT.iterdir() if CGROUP_ROOT.exists() else []:
        top = ctrl / "hopbench"
        try:
            top.rmdir()  # only succeeds when no other cluster uses it
        except OSError:
            pass


def remove_container_log_links(spec: ClusterSpec) -> None:
    logs = Path("/var/log/containers")
    if not logs.is_dir():
        return
    for link in logs.iterdir():
        if link.is_symlink() and os.readlink(link).startswith(str(spec.state_dir) + "/"):
            link.unlink(missing_ok=True)


KUBELET_SHARED = Path("/var/lib/kubelet")  # kubelet hardcodes device-plugins/ here


def _marker() -> Path:
    return state_root() / ".created-var-lib-kubelet"


def claim_shared_dirs() -> None:
    """Remember if we are the ones creating /var/lib/kubelet, so `down` can remove it."""
    state_root().mkdir(parents=True, exist_ok=True)
    if not KUBELET_SHARED.exists():
        _marker().touch()


def release_shared_dirs() -> None:
    others = [p for p in state_root().iterdir() if (p / "spec.json").exists()] if \
        state_root().exists() else []
    if _marker().exists() and not others:
        shutil.rmtree(KUBELET_SHARED, ignore_errors=True)
        _marker().unlink(missing_ok=True)


def teardown(spec: ClusterSpec) -> dict[str, int]:
    """Remove everything of this cluster; returns counts of what was removed."""
    spaces = cluster_netns(spec)
    pods = [p for n in spaces if n != spec.fabric_ns for p in pod_netns(n)]
    pids = cluster_pids(spec, spaces + pods)
    procs.stop(pids)
    pod_paths = [netns.ns_path(p) for p in pods]
    mounts = cluster_mounts(spec, pod_paths)
    for m in mounts:
        subprocess.run(["umount", "-l", m], capture_output=True)
    for name in pods + spaces:
        netns.delete(name)
    remove_cgroups(spec)
    remove_container_log_links(spec)
    for d in (spec.run_dir, spec.state_dir):
        shutil.rmtree(d, ignore_errors=True)
    release_shared_dirs()
    return {"processes": len(pids), "namespaces": len(spaces) + len(pods),
            "mounts": len(mounts)}


def leftovers(spec: ClusterSpec) -> dict[str, list[str]]:
    """What of this cluster still exists (empty lists when the teardown was clean)."""
    spaces = cluster_netns(spec)
    return {
        "namespaces": spaces,
        "processes": [procs.cmdline(p)[:80] for p in cluster_pids(spec, spaces)],
        "mounts": cluster_mounts(spec, []),
        "cgroups": [str(p) for p in cgroup_dirs(spec)],
        "dirs": [str(d) for d in (spec.state_dir, spec.run_dir) if d.exists()],
    }
