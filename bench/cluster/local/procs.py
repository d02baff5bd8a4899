"""Start long-running daemons inside a namespace, and stop exactly the ones we started."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
from pathlib import Path

from bench.cluster.local.netns import ns_path
from bench.poll import WaitTimeout, wait_until

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # keeps daemons we started reapable


def start(argv: list[str], log: Path, netns: str | None = None,
          env: dict[str, str] | None = None) -> int:
    """Start a detached daemon (own session) with only its network namespace switched."""
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = (["nsenter", f"--net={ns_path(netns)}", "--"] if netns else []) + argv
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, **(env or {})}, close_fds=True)
    _CHILDREN[proc.pid] = proc
    return proc.pid


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a live process (VmRSS of /proc/<pid>/status), None if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().split(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def with_descendants(pids: list[int]) -> list[int]:
    kids = children_map()
    seen: list[int] = []
    stack = list(pids)
    while stack:
        pid = stack.pop()
        if pid in seen or pid == os.getpid():
            continue
        seen.append(pid)
        stack.extend(kids.get(pid, []))
    return seen


def _reaped(targets: list[int]) -> bool:
    """Reap whichever of `targets` exited; True once none is alive."""
    for pid in targets:
        if pid in _CHILDREN:
            if _CHILDREN[pid].poll() is not None:
                del _CHILDREN[pid]
            continue
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    return not any(alive(p) for p in targets)


def stop(pids: list[int], grace: float = 5.0) -> None:
    """SIGTERM, wait up to `grace`, then SIGKILL whatever is left; reap if ours."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        targets = [p for p in pids if alive(p)]
        for pid in targets:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        with contextlib.suppress(WaitTimeout):  # SIGKILL next, or left as they are
            wait_until(functools.partial(_reaped, targets),
                       grace if sig == signal.SIGTERM else 5.0, 0.05, "processes to exit")
        if not any(alive(p) for p in pids):
            break
    for pid in pids:  # reap our own children so no zombie or Popen warning is left
        child = _CHILDREN.get(pid)
        if child is not None and child.poll() is not None:
            del _CHILDREN[pid]
