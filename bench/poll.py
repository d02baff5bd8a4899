"""The harness's one way to wait for something: poll a predicate until it holds.

Bringing a cluster up, switching kube-proxy's mode, waiting for pods, agents and
namespaces all poll the same way: ask, sleep a little, ask again, and on timeout say
what was awaited and the last error seen. The clock and the sleep are parameters, so
tests drive a wait on a fake clock without sleeping.

The trial loops in bench/scenarios/ are not waits of this kind: they measure, and a
timeout there censors a node instead of failing the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from bench.errors import ClusterError

T = TypeVar("T")


class WaitTimeout(ClusterError):
    """A wait ran out of time; names what it waited for and the last error seen."""

    def __init__(self, what: str, timeout_s: float, last_error: BaseException | None = None,
                 hint: str = "") -> None:
        self.what, self.timeout_s, self.last_error = what, timeout_s, last_error
        last = (f"; last error: {type(last_error).__name__}: "
                f"{(str(last_error).splitlines() or [''])[0][:200]}" if last_error else "")
        see = f" (see {hint})" if hint else ""
        super().__init__(f"timed out after {timeout_s:.0f}s waiting for {what}{see}{last}")


def wait_until(predicate: Callable[[], T], timeout: float, interval: float, what: str, *,
               retry_on: tuple[type[BaseException], ...] = (), hint: str = "",
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> T:
    """The predicate's first truthy result, asked every `interval` s for `timeout` s.

    An exception of a `retry_on` type counts as "not yet" (the last one is named in the
    timeout); any other exception ends the wait at once. The predicate is asked once more
    at the deadline, so a wait never fails without a last look.
    """
    deadline = clock() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except retry_on as exc:
            last = exc
        left = deadline - clock()
        if left <= 0:
            raise WaitTimeout(what, timeout, last, hint)
        sleep(min(interval, left))
