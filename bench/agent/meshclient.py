"""Drive the mesh client (meshclient/, Go) the agent runs beside its prober.

The proxyless gRPC client is a Go program: grpc-go's xDS resolver and load balancer are
the data plane being measured, so they cannot be imitated in Python. It runs as a child
of the agent, in the node's network namespace, and speaks JSON lines: one command per
line on its stdin, exactly one reply line on its stdout. It probes the armed Services'
`xds:///` targets with gRPC health checks (the prober's focus rules), and its `take`
reply carries what the prober's does (first and last answer per pod IP, failure runs)
plus its own stamps of the xDS and load-balancer updates.

Stdlib only, like the rest of the agent. A client that dies or stops answering is
reported in `take` as an error, never raised into the agent's HTTP handlers.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import threading
import time
from typing import Any

REPLY_TIMEOUT_S = 5.0


class MeshClientError(Exception):
    pass


class MeshClient:
    """One meshclient process, started at the first arming that names mesh targets."""

    def __init__(self, binary: str, xds: str, node: str, node_ip: str,
                 max_lifetime_s: float) -> None:
        self.binary, self.xds, self.node, self.node_ip = binary, xds, node, node_ip
        self.max_lifetime_s = max_lifetime_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.namespace = ""
        self.lock = threading.Lock()
        self._buf = b""
        self.errors: list[str] = []

    def _start(self, namespace: str) -> subprocess.Popen[bytes]:
        if self.proc is not None and self.proc.poll() is None and namespace == self.namespace:
            return self.proc
        self.stop()
        self.namespace = namespace
        self.proc = subprocess.Popen(
            [self.binary, "--node", self.node, "--node-ip", self.node_ip, "--xds", self.xds,
             "--namespace", namespace, "--max-lifetime", str(int(self.max_lifetime_s))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, close_fds=True,
            # one OS thread runs Go code: 15 % of a core focused at 5 ms, against 18 %
            env={**os.environ, "GOMAXPROCS": os.environ.get("GOMAXPROCS", "1")})
        self._buf = b""
        return self.proc

    def call(self, cmd: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """Send one command, return its reply; MeshClientError when the client is not
        running, died, stays silent for REPLY_TIMEOUT_S or answers ok=false."""
        with self.lock:
            if namespace is not None:
                proc = self._start(namespace)
            elif self.proc is None or self.proc.poll() is not None:
                raise MeshClientError("mesh client is not running")
            else:
                proc = self.proc
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps(cmd).encode() + b"\n")
                proc.stdin.flush()
            except OSError as exc:
                raise MeshClientError(f"mesh client: {exc}") from None
            reply = json.loads(self._readline(proc, REPLY_TIMEOUT_S))
        if not reply.get("ok"):
            raise MeshClientError(str(reply.get("error") or reply))
        return dict(reply)

    def _readline(self, proc: subprocess.Popen[bytes], timeout_s: float) -> bytes:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise MeshClientError(f"mesh client gave no reply in {timeout_s:g}s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise MeshClientError(f"mesh client exited (code {proc.poll()})")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def arm(self, namespace: str, targets: list[dict[str, Any]], interval_ms: float,
            idle_interval_ms: float, max_requests: int, max_seconds: float) -> list[str]:
        reply = self.call({"cmd": "arm", "targets": targets, "interval_ms": interval_ms,
                           "idle_interval_ms": idle_interval_ms, "timeout_ms": 1000,
                           "max_requests": max_requests, "max_seconds": max_seconds},
                          namespace=namespace)
        return list(reply.get("armed") or [])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def focus(self, target: str, seconds: float) -> None:
        if self.running():
            self._quiet({"cmd": "focus", "target": target, "seconds": seconds, "delay_s": 0})

    def forget(self, target: str, addr: str) -> None:
        if self.running():
            self._quiet({"cmd": "forget", "target": target, "addr": addr})

    def disarm(self) -> None:
        if self.running():
            self._quiet({"cmd": "disarm"})

    def take(self) -> dict[str, Any] | None:
        """What changed since the last take, or None when no client runs; an error of
        the client is reported under `errors` (drained)."""
        if self.proc is None:
            return None
        try:
            reply = self.call({"cmd": "take"}) if self.running() else {}
        except MeshClientError as exc:
            self.errors.append(str(exc))
            reply = {}
        if not self.running():
            self.errors.append(f"mesh client exited (code {self.proc.poll()})")
            self.proc = None
        errors, self.errors = self.errors, []
        reply.pop("ok", None)
        cpu = {"cpu_s": c} if (c := self.cpu_seconds()) is not None else {}
        return {**reply, **cpu, "errors": errors}

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the running client (it is not the agent's reaped child,
        so the agent's own figure leaves it out); None when none runs."""
        if self.proc is None:
            return None
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _quiet(self, cmd: dict[str, Any]) -> None:
        try:
            self.call(cmd)
        except MeshClientError as exc:
            self.errors.append(str(exc))

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # the client exits on EOF
            proc.wait(timeout=3)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(timeout=3)
