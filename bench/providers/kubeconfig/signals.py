"""Signals around a kubeconfig run, so that what it created is always removed.

While the run is open, SIGTERM and SIGHUP end it like Ctrl-C does (KeyboardInterrupt),
so cleanup runs; during cleanup, Ctrl-C, SIGTERM and SIGHUP only say that it is under
way instead of cutting it short. Handlers someone else installed are left alone, and
every handler is put back afterwards. Signals are the main thread's only: elsewhere
this does nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

Say = Callable[[str], None]
ENDING = (signal.SIGTERM, signal.SIGHUP)  # turned into KeyboardInterrupt while open
SHIELDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # not while cleaning


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class SignalGuard:
    """The handlers it replaced, to put back in restore()."""

    def __init__(self) -> None:
        self.saved: dict[int, Any] = {}

    def install(self) -> None:
        """SIGTERM and SIGHUP raise KeyboardInterrupt (where nobody else handles them)."""
        if not _main_thread():
            return
        for sig in ENDING:
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                self.saved[sig] = signal.signal(sig, _raise_interrupt)

    def shield(self, notice: str, say: Say) -> None:
        """From now on a signal only says `notice`."""
        if not _main_thread():
            return

        def busy(signum: int, frame: object) -> None:
            say(notice)

        for sig in SHIELDED:
            previous = signal.signal(sig, busy)
            self.saved.setdefault(sig, previous)

    def restore(self) -> None:
        if not _main_thread():
            return
        for sig, handler in self.saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self.saved = {}
