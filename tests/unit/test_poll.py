"""bench.poll.wait_until on a fake clock: no test here sleeps."""

from __future__ import annotations

import pytest

from bench.errors import ClusterError
from bench.poll import WaitTimeout, wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def test_returns_the_first_truthy_answer() -> None:
    clock, answers = FakeClock(), iter([None, [], ["pod-a"], ["never asked"]])
    got = wait_until(lambda: next(answers), 10, 0.5, "pods", clock=clock, sleep=clock.sleep)
    assert got == ["pod-a"] and clock.sleeps == [0.5, 0.5]


def test_timeout_names_what_and_the_last_error_and_asks_at_the_deadline() -> None:
    clock, asked = FakeClock(), []

    def probe() -> bool:
        asked.append(clock.now)
        raise OSError("connection refused")

    with pytest.raises(WaitTimeout) as info:
        wait_until(probe, 1.0, 0.3, "kube-proxy sync on n1", retry_on=(OSError,),
                   hint="/logs/kube-proxy-n1.log", clock=clock, sleep=clock.sleep)
    err = info.value
    assert isinstance(err, ClusterError) and isinstance(err.last_error, OSError)
    assert str(err) == ("timed out after 1s waiting for kube-proxy sync on n1 "
                        "(see /logs/kube-proxy-n1.log); last error: OSError: connection refused")
    # asked at 0, .3, .6, .9 and once more at the deadline; never slept past it
    assert asked == pytest.approx([100.0, 100.3, 100.6, 100.9, 101.0])
    assert sum(clock.sleeps) == pytest.approx(1.0)


def test_an_error_not_retried_ends_the_wait_at_once() -> None:
    clock = FakeClock()

    def probe() -> bool:
        raise ValueError("the answer is malformed")

    with pytest.raises(ValueError, match="malformed"):
        wait_until(probe, 60, 1, "x", retry_on=(OSError,), clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


def test_timeout_without_error_says_no_last_error() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimeout, match=r"^timed out after 2s waiting for namespace x to go$"):
        wait_until(lambda: False, 2, 1, "namespace x to go", clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [1, 1]
