"""Network namespaces: create, wire, enter, and open sockets inside them.

The local cluster lives entirely in namespaces we create (docs/design.md §6). The harness
stays in the root namespace and reaches into a namespace per socket: a helper thread
calls setns(2) (network namespaces are per thread) and creates the socket there; the
socket keeps that namespace for its whole life.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
from pathlib import Path

from bench.errors import ClusterError

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def ns_path(name: str) -> Path:
    return NETNS_DIR / name


def exists(name: str) -> bool:
    return ns_path(name).exists()


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise ClusterError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def add(name: str) -> None:
    ip("netns", "add", name)
    ip("-n", name, "link", "set", "lo", "up")


def delete(name: str) -> None:
    if exists(name):
        ip("netns", "delete", name, check=False)
        if ns_path(name).exists():  # a stale bind mount from a crash
            subprocess.run(["umount", "-l", str(ns_path(name))], capture_output=True)
            ns_path(name).unlink(missing_ok=True)


def sysctl(name: str, key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    run_in(name, ["sh", "-c", f"echo {value} > {path}"])


def run_in(name: str, cmd: list[str], check: bool = True,
           timeout: float | None = 60) -> subprocess.CompletedProcess[str]:
    """Run a command with only the network namespace switched (host mounts stay)."""
    try:
        proc = subprocess.run(["nsenter", f"--net={ns_path(name)}", "--", *cmd],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"in {name}: {' '.join(cmd)}: no answer within {timeout}s"
                           ) from None
    if check and proc.returncode != 0:
        raise ClusterError(f"in {name}: {' '.join(cmd)}: {proc.stderr.strip()}")
    return proc


def _setns(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def socket_in(name_or_path: str | Path, family: int = socket.AF_INET,
              kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A new socket that belongs to the given network namespace."""
    path = Path(name_or_path) if "/" in str(name_or_path) else ns_path(str(name_or_path))
    box: dict[str, object] = {}

    def worker() -> None:
        try:
            _setns(path)
            box["sock"] = socket.socket(family, kind)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["err"] = exc

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    if "err" in box:
        raise box["err"]  # type: ignore[misc]
    return box["sock"]  # type: ignore[return-value]


def connect_in(name: str, host: str, port: int, timeout: float = 2.0) -> socket.socket:
    sock = socket_in(name)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def inode(path: str | Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def pids_in(ns_inodes: set[int]) -> list[int]:
    """Every process whose network namespace is one of the given ones."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino in ns_inodes:
                found.append(int(entry))
        except OSError:
            continue
    return found
