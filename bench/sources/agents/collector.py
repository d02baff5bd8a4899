"""Drain every node agent's /collect into its NodeLog, on a thread, at a pace that
follows the trials: every `poll_s` while some target is focused (and for a second
after a focus ends: the trial's end still waits for its last answers), every
`idle_poll_s` otherwise.

`lock` guards `nodes`; readers (the queries, the event translation) hold it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from bench.sources.agents.clocks import ClockOffset
from bench.sources.agents.nodelog import NodeLog, absorb
from bench.sources.agents.wire import CollectReply, Transport

FAST_AFTER_FOCUS_S = 1.0


class Collector:
    def __init__(self, transports: list[Transport], poll_s: float = 0.1,
                 idle_poll_s: float = 0.5) -> None:
        self.transports = transports
        self.poll_s = poll_s  # while some target is focused; idle_poll_s otherwise
        self.idle_poll_s = idle_poll_s
        self.lock = threading.Lock()
        self.nodes: dict[str, NodeLog] = {}
        self.errors: dict[str, int] = {}  # node -> collects that failed
        self._focused: set[str] = set()
        self._fast_until = 0.0  # the fast rate also runs on briefly after a focus ends
        self._poke = threading.Event()
        self._collect_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, offsets: Mapping[str, ClockOffset]) -> None:
        """One log per node, with its clock offset; a first collect, then the thread."""
        for t in self.transports:
            self.nodes[t.node] = NodeLog(t.node, offsets[t.node])
            self.errors[t.node] = 0
        self.collect_once()
        self._thread = threading.Thread(target=self._run, daemon=True, name="agent-collect")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._poke.set()
        if self._thread:
            self._thread.join(timeout=5)

    def focused(self, target: str, on: bool) -> None:
        """A target's focus began (collect at the fast rate) or ended."""
        with self.lock:
            if on:
                self._focused.add(target)
            else:
                self._focused.discard(target)
                self._fast_until = time.monotonic() + FAST_AFTER_FOCUS_S
        self._poke.set()

    def interval(self) -> float:
        fast = self._focused or time.monotonic() < self._fast_until
        return self.poll_s if fast else self.idle_poll_s

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poke.wait(self.interval())
            self._poke.clear()
            if not self._stop.is_set():
                self.collect_once()

    def collect_once(self) -> None:
        """Drain every agent once. Lanes and the collector thread both call this; one at a
        time, so an older snapshot of an agent's answers never lands after a newer one."""
        with self._collect_lock:
            for t in self.transports:
                self._collect(t)

    def _collect(self, t: Transport) -> None:
        try:
            reply: CollectReply = t.request("GET", "/collect")
        except Exception:  # noqa: BLE001 - counted; the trial times out if it persists
            self.errors[t.node] += 1
            return
        with self.lock:
            absorb(self.nodes[t.node], reply)
