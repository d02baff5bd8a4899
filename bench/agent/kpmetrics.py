"""Poll kube-proxy's /metrics for the end of each rules sync.

`kubeproxy_sync_proxy_rules_last_timestamp_seconds` is stamped by kube-proxy itself when
a sync succeeds, so its value (not our poll time) is the event time; polling only
risks missing a sync when two complete within one poll interval, which the sync
counter reveals and we record.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

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


def _series(body: str, name: str) -> float:
    """The value of `name` without labels or with the IPv4 label; 0 if absent."""
    key = "\n" + name
    i = body.find(key)
    while i >= 0:
        end = body.find("\n", i + 1)
        line = body[i + 1:end] if end >= 0 else body[i + 1:]
        rest = line[len(name):]
        if rest.startswith(" ") or (rest.startswith("{") and '"IPv4"' in rest.split("}")[0]):
            return float(line.rsplit(None, 1)[1])
        i = body.find(key, i + 1)
    return 0.0


_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")


def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration string ("1s", "1m30s", "500ms", "0s")."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def min_sync_period(configz: dict[str, Any]) -> float | None:
    """kube-proxy's MinSyncPeriod from its /configz answer, None if not there."""
    cfg = configz.get("kubeproxy.config.k8s.io", {})
    raw = cfg.get("MinSyncPeriod", cfg.get("minSyncPeriod"))
    if raw is None:
        for sub in ("IPTables", "NFTables", "IPVS", "iptables", "nftables", "ipvs"):
            raw = raw or (cfg.get(sub) or {}).get("MinSyncPeriod")
    try:
        return parse_go_duration(str(raw)) if raw is not None else None
    except ValueError:
        return None


def parse_sync(body: str) -> tuple[float, float]:
    """(last sync unix seconds, sync count) for IPv4 (or the unlabeled series). A string
    search, not a line split: kube-proxy's /metrics is ~100 kB, polled several times a
    second."""
    body = "\n" + body
    return _series(body, LAST_TS), _series(body, COUNT)


class SyncPoller:
    """Polls every `interval_s` while `fast()` says a trial is being watched closely,
    every `idle_interval_s` otherwise (a sync outside any trial is not needed)."""

    def __init__(self, on_sync: Callable[[int, int, int], None], host: str = "127.0.0.1",
                 port: int = 10249, interval_s: float = 0.25, idle_interval_s: float = 1.0,
                 fast: Callable[[], bool] = lambda: True) -> None:
        self.on_sync = on_sync  # (sync t_ns, seen t_ns, syncs since previous poll)
        self.host, self.port, self.interval_s = host, port, interval_s
        self.idle_interval_s = idle_interval_s
        self.fast = fast
        self.active = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._poke_at = float("inf")
        self._last = (0.0, 0.0)
        self.errors = 0

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True, name="kp-metrics").start()

    def stop(self) -> None:
        self._stop.set()
        self.active.set()
        self._wake.set()

    def wake(self, after_s: float = 0.0) -> None:
        """Poll `after_s` from now (a focus began, or rules just changed and kube-proxy
        stamps the sync's end a few ms after its commit), then on the usual schedule."""
        at = time.monotonic() + after_s
        if at < self._poke_at:
            self._poke_at = at
            self._wake.set()

    def _sleep(self) -> None:
        until = time.monotonic() + (self.interval_s if self.fast() else self.idle_interval_s)
        while not self._stop.is_set():
            now = time.monotonic()
            end = min(until, self._poke_at)
            if now >= end:
                break
            self._wake.wait(end - now)
            self._wake.clear()
        self._poke_at = float("inf")

    def raw(self) -> str:
        return http_get(self.host, self.port, "/metrics")

    def min_sync_period(self) -> float | None:
        """kube-proxy's --min-sync-period (from /configz), None when unknown."""
        try:
            return min_sync_period(json.loads(http_get(self.host, self.port, "/configz")))
        except (OSError, ValueError):
            return None

    def last_sync(self) -> float:
        """Unix seconds of the last sync end seen (0 before the first poll)."""
        return self._last[0]

    def _run(self) -> None:
        while not self._stop.is_set():
            self.active.wait()
            try:
                ts, count = parse_sync(self.raw())
            except OSError:
                self.errors += 1
                self._sleep()
                continue
            if ts and (ts, count) != self._last:
                missed = int(count - self._last[1]) if self._last[1] else 1
                if ts != self._last[0]:
                    self.on_sync(int(ts * 1e9), time.time_ns(), max(missed, 1))
                self._last = (ts, count)
            self._sleep()
