"""Check (and optionally install) what the local cluster needs on this host."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.errors import PrerequisiteError

CNI_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("ptp", "host-local", "portmap", "loopback")
APT_PACKAGES = ("containerd", "runc", "containernetworking-plugins", "iptables", "nftables",
                "conntrack", "iproute2", "util-linux", "kmod")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True
    package: str | None = None  # Debian package that fixes it


def _modules() -> str:
    try:
        return Path("/proc/modules").read_text()
    except OSError:
        return ""


def _kernel_feature(name: str, proc_paths: tuple[str, ...], modules: tuple[str, ...]) -> bool:
    if any(Path(p).exists() for p in proc_paths):
        return True
    loaded = _modules()
    if any(f"{m} " in loaded for m in modules):
        return True
    builtin = Path(f"/lib/modules/{os.uname().release}/modules.builtin")
    if builtin.exists() and any(f"/{m}.ko" in builtin.read_text() for m in modules):
        return True
    return any(subprocess.run(["modprobe", "-q", m], capture_output=True).returncode == 0
               and f"{m} " in _modules() for m in modules) if shutil.which("modprobe") else False


def has_ipvs() -> bool:
    return _kernel_feature("ip_vs", ("/proc/net/ip_vs",), ("ip_vs",))


def _nft_works() -> bool:
    if not shutil.which("nft"):
        return False
    return subprocess.run(["nft", "list", "tables"], capture_output=True).returncode == 0


def _veth_works() -> bool:
    """Create a veth pair in a throwaway namespace: the only test that tells for sure."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        return Path("/sys/module/veth").exists()
    ns = f"hb-doctor-{os.getpid()}"
    try:
        if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode != 0:
            return False
        return subprocess.run(["ip", "-n", ns, "link", "add", "name", "hbva", "type", "veth",
                               "peer", "name", "hbvb"], capture_output=True).returncode == 0
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def _tool(name: str, package: str) -> Check:
    path = shutil.which(name)
    return Check(name, bool(path), path or "not found on PATH", package=package)


def checks() -> list[Check]:
    from bench.cluster.toolset import find_go  # late: keeps doctor importable without Go

    out = [Check("root", os.geteuid() == 0, "running as root" if os.geteuid() == 0
                 else "hopbench's local cluster needs root (netns, mounts, cgroups)")]
    feats: list[tuple[str, Callable[[], bool], bool]] = [
        ("nf_tables", _nft_works, True),
        ("iptables nat", lambda: _kernel_feature("nat", ("/proc/net/ip_tables_names",),
                                                 ("nf_nat", "iptable_nat")) or _nft_works(),
         True),
        ("conntrack", lambda: _kernel_feature("ct", ("/proc/net/nf_conntrack",),
                                              ("nf_conntrack",)) or _nft_works(), True),
        ("veth", _veth_works, True),
        ("overlayfs", lambda: "overlay" in Path("/proc/filesystems").read_text(), True),
        ("IP_VS (ipvs mode only)", has_ipvs, False),
    ]
    for name, probe, required in feats:
        ok = probe()
        out.append(Check(f"kernel: {name}", ok, "present" if ok else "missing", required))
    out += [_tool("containerd", "containerd"), _tool("ctr", "containerd"),
            _tool("runc", "runc"), _tool("iptables", "iptables"), _tool("nft", "nftables"),
            _tool("conntrack", "conntrack"), _tool("ip", "iproute2"),
            _tool("nsenter", "util-linux")]
    boot = shutil.which("debootstrap")
    out.append(Check("debootstrap (agent image, --kubeconfig runs)", bool(boot),
                     boot or "not found", required=False, package="debootstrap"))
    missing = [p for p in CNI_PLUGINS if not (CNI_DIR / p).exists()]
    out.append(Check("CNI plugins", not missing,
                     f"{CNI_DIR}: " + ("ok" if not missing else "missing " + ", ".join(missing)),
                     package="containernetworking-plugins"))
    try:
        go = find_go()
        out.append(Check("go", True, go))
    except PrerequisiteError as exc:
        out.append(Check("go", False, str(exc)))
    return out


def fix(run: Callable[[list[str]], int] | None = None) -> list[str]:
    """Install the Debian packages behind failed checks; returns what was installed."""
    run = run or (lambda cmd: subprocess.run(cmd).returncode)
    pkgs = sorted({c.package for c in checks() if not c.ok and c.package})
    if not pkgs:
        return []
    env_cmd = ["env", "DEBIAN_FRONTEND=noninteractive"]
    if run([*env_cmd, "apt-get", "update", "-qq"]) != 0 or run(
            [*env_cmd, "apt-get", "install", "-y", "-qq", *pkgs]) != 0:
        raise PrerequisiteError(f"apt-get install {' '.join(pkgs)} failed")
    return pkgs


def require_local() -> None:
    """Raise one clear line for the first required check that fails."""
    for c in checks():
        if c.required and not c.ok:
            hint = " (run `hopbench doctor --fix`)" if c.package else ""
            raise PrerequisiteError(f"{c.name}: {c.detail}{hint}")
