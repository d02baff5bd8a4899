"""Poll kube-proxy's /metrics for the end of each rules sync.

`kubeproxy_sync_proxy_rules_last_timestamp_seconds` is stamped by kube-proxy itself when
a sync succeeds, so its value (not our poll time) is the event time; polling only
risks missing a sync when two complete within one poll interval, which the sync
counter reveals and we record.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

LAST_TS = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"
COUNT = "kubeproxy_sync_proxy_rules_duration_seconds_count"


def http_get(host: str, port: int, path: str, timeout: float = 1.0) -> str:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        chunks = []
        while data := s.recv(262144):
            chunks.append(data)
    raw = b"".join(chunks).decode(errors="replace")
    return raw.partition("\r\n\r\n")[2]


def parse_sync(body: str) -> tuple[float, float]:
    """(last sync unix seconds, sync count) for IPv4 (or the unlabeled series)."""
    ts = count = 0.0
    for line in body.splitlines():
        if line.startswith(LAST_TS) and ("IPv4" in line or line.startswith(LAST_TS + " ")):
            ts = float(line.rsplit(None, 1)[1])
        elif line.startswith(COUNT) and ("IPv4" in line or line.startswith(COUNT + " ")):
            count = float(line.rsplit(None, 1)[1])
    return ts, count


class SyncPoller:
    def __init__(self, on_sync: Callable[[int, int, int], None], host: str = "127.0.0.1",
                 port: int = 10249, interval_s: float = 0.25) -> None:
        self.on_sync = on_sync  # (sync t_ns, seen t_ns, syncs since previous poll)
        self.host, self.port, self.interval_s = host, port, interval_s
        self.active = threading.Event()
        self._stop = threading.Event()
        self._last = (0.0, 0.0)
        self.errors = 0

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True, name="kp-metrics").start()

    def stop(self) -> None:
        self._stop.set()
        self.active.set()

    def raw(self) -> str:
        return http_get(self.host, self.port, "/metrics")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.active.wait()
            try:
                ts, count = parse_sync(self.raw())
            except OSError:
                self.errors += 1
                time.sleep(self.interval_s)
                continue
            if ts and (ts, count) != self._last:
                missed = int(count - self._last[1]) if self._last[1] else 1
                if ts != self._last[0]:
                    self.on_sync(int(ts * 1e9), time.time_ns(), max(missed, 1))
                self._last = (ts, count)
            time.sleep(self.interval_s)
