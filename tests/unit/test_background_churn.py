"""Churn: which endpoint each change touches, that the thread is bounded, how changes are
counted in a window, and the per-trial row the churn source adds."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from bench.background import churn as churn_mod
from bench.background.churn import Churner, schedule, stride
from bench.errors import UserError
from bench.results.schema import Ev
from bench.sources import registry
from bench.sources.base import Registry, TrialRef, row
from bench.sources.churn import ChurnSource

REF = TrialRef("r", 3, "svc0", "scale-up", "iptables", "add")


class _Pop:
    def __init__(self, services: int, endpoints: int) -> None:
        self.services, self.endpoints = services, endpoints
        self.namespace, self.run_id = "hopbench-bg-r", "r"


class _Kube:
    """Records the patches a churner sends (what the API server would store)."""

    def __init__(self, fail_every: int = 0) -> None:
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.fail_every = fail_every

    def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.fail_every and (len(self.patches) + 1) % self.fail_every == 0:
            self.patches.append(("failed", {}))
            raise OSError("refused")
        self.patches.append((path, body))
        return {}


@pytest.mark.parametrize("n", [1, 2, 3, 10, 1000, 1024, 9973])
def test_the_schedule_visits_every_service_before_any_twice(n: int) -> None:
    assert sorted(schedule(k, n, 2)[0] for k in range(n)) == list(range(n))
    assert {schedule(k, n, 2)[1] for k in range(n)} == {0}
    assert {schedule(k, n, 2)[1] for k in range(n, 2 * n)} == {1}
    if n > 10:
        assert stride(n) > n // 4  # consecutive changes land far apart


def test_churn_needs_background_services() -> None:
    with pytest.raises(UserError, match="needs background Services"):
        Churner(_Kube(), _Pop(0, 2), 5.0)  # type: ignore[arg-type]


def test_churner_stops_by_itself_and_toggles_readiness() -> None:
    kube = _Kube()
    c = Churner(kube, _Pop(3, 2), 1000.0)  # type: ignore[arg-type]
    t0 = time.time_ns()
    c.start(max_s=30, max_changes=7)
    deadline = time.monotonic() + 10
    while c.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not c.running() and c.changes == 7 and len(kube.patches) == 7
    assert c.changes_between(t0, time.time_ns()) == 7
    assert c.changes_between(0, t0) == 0
    # the 4th change is the second visit of Service 0 at k=3: endpoint 1 goes unready
    # while endpoint 0 (unready since k=0) stays so
    path, body = kube.patches[3]
    assert path.endswith("/endpointslices/bg-00000")
    assert [e["conditions"]["ready"] for e in body["endpoints"]] == [False, False]
    c.stop()


def test_churner_keeps_its_rate_and_stop_ends_it() -> None:
    c = Churner(_Kube(), _Pop(50, 2), 100.0)  # type: ignore[arg-type]
    c.start(max_s=30)
    time.sleep(0.5)
    c.stop()
    n = c.changes
    assert 30 <= n <= 70
    time.sleep(0.1)
    assert c.changes == n and not c.running()


def test_a_failed_write_is_counted_not_recorded() -> None:
    kube = _Kube(fail_every=2)
    c = Churner(kube, _Pop(4, 2), 1000.0)  # type: ignore[arg-type]
    c.start(max_changes=6)
    deadline = time.monotonic() + 10
    while c.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert c.errors == 3 and c.changes == 3


def test_changes_between_is_half_open() -> None:
    c = Churner(_Kube(), _Pop(4, 2), 1.0)  # type: ignore[arg-type]
    c._times = [10, 20, 20, 30]
    assert c.changes_between(10, 30) == 3
    assert c.changes_between(20, 21) == 2
    assert c.changes_between(31, 40) == 0


def test_the_churn_source_adds_one_row_per_trial() -> None:
    c = Churner(_Kube(), _Pop(4, 2), 2.5)  # type: ignore[arg-type]
    now = time.time_ns()
    c._times = [now - 5_000_000_000, now - 2_000_000_000, now - 1_000_000_000]
    src = ChurnSource(c)
    # a node row 3 s ago on a node clock 1 s behind: the window starts 2 s ago
    batch = [row(REF, Ev.TRIGGER, now - 1_500_000_000, source="harness"),
             row(REF, Ev.RULE_PRESENT, now - 3_000_000_000, source="agent-rules",
                 node="n1", offset_ns=1_000_000_000)]
    (r,) = src.events_for(REF, batch)
    assert r["event"] == Ev.CHURN == "churn" and r["trial"] == 3
    assert r["value"] == 2 and r["t_ns"] == now - 2_000_000_000
    assert json.loads(r["detail"]) == {"rate_per_s": 2.5}
    assert src.events_for(REF, []) == []


def test_the_churn_source_opens_only_with_a_churner() -> None:
    assert "churn" in registry.names()

    def ctx(churner: Churner | None) -> registry.SourceContext:
        return registry.SourceContext(provider=None, namespace="ns",  # type: ignore[arg-type]
                                      trials=Registry(), sink=lambda r: None, token="t",
                                      probe_interval_ms=5.0, churner=churner)

    factory = registry._BY_NAME["churn"]
    assert factory(ctx(None)) is None
    assert isinstance(factory(ctx(Churner(_Kube(), _Pop(4, 2), 1.0))),  # type: ignore[arg-type]
                      ChurnSource)
    assert churn_mod.MAX_S > 0


def test_stop_leaves_every_endpoint_ready_again() -> None:
    """The next mode or sweep point reuses the population: churn must not leave it with
    endpoints not ready (an nftables rule count 610 short at 1000 x 2 showed it did)."""
    kube = _Kube()
    c = Churner(kube, _Pop(3, 2), 1000.0)  # type: ignore[arg-type]
    c.start(max_s=30, max_changes=7)  # Service 0 visited three times, 1 and 2 twice
    deadline = time.monotonic() + 10
    while c.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    c.stop()
    last: dict[str, list[bool]] = {}
    for path, body in kube.patches:
        last[path] = [e["conditions"]["ready"] for e in body["endpoints"]]
    assert len(last) == 3 and all(all(r) for r in last.values()), last
    assert len(kube.patches) > 7  # the restoring writes came after the churn's own
