"""Sources by name: the runner opens every registered source alike, in registration
order, drops those that do not apply to the run, and drives them through one protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.results.schema import Ev
from bench.sources import registry
from bench.sources.agents import AgentStore
from bench.sources.apiwatch import ApiWatch
from bench.sources.audit import AuditTail
from bench.sources.base import Registry, TrialRef, row

REF = TrialRef("r", 0, "svc0", "scale-up", "iptables", "add")


class FakeProvider:
    def __init__(self, audit: Path | None) -> None:
        self.audit = audit
        self.calls: list[tuple[Any, ...]] = []

    def start_agents(self, token: str, probe_interval_ms: float) -> list[Any]:
        self.calls.append(("start_agents", token, probe_interval_ms))
        return []

    def watch_client(self) -> httpx.Client:
        self.calls.append(("watch_client",))
        return httpx.Client(base_url="http://127.0.0.1:9")  # never used: no start()

    def audit_log(self) -> Path | None:
        self.calls.append(("audit_log",))
        return self.audit


def _ctx(provider: FakeProvider) -> registry.SourceContext:
    return registry.SourceContext(provider=provider, namespace="ns",  # type: ignore[arg-type]
                                  trials=Registry(), sink=lambda r: None, token="tok",
                                  probe_interval_ms=5.0)


def test_built_in_sources_open_in_order_and_audit_only_with_a_log(tmp_path: Path) -> None:
    assert registry.names() == ("agents", "api-watch", "audit", "churn", "istiod")
    p = FakeProvider(None)
    opened = registry.open_all(_ctx(p))
    assert list(opened.by_name) == ["agents", "api-watch"]
    assert [c[0] for c in p.calls] == ["start_agents", "watch_client", "audit_log"]
    assert p.calls[0] == ("start_agents", "tok", 5.0)
    assert isinstance(opened.of(AgentStore), AgentStore)
    assert isinstance(opened.of(ApiWatch), ApiWatch)
    assert opened.find(AuditTail) is None
    with pytest.raises(LookupError, match="AuditTail"):
        opened.of(AuditTail)
    log = tmp_path / "audit.log"
    log.write_text("")
    assert isinstance(registry.open_all(_ctx(FakeProvider(log))).of(AuditTail), AuditTail)


class Recorder:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def start(self) -> None:
        self.log.append(f"start {self.name}")

    def stop(self) -> None:
        self.log.append(f"stop {self.name}")

    def events_for(self, ref: TrialRef, batch: list[Any]) -> list[Any]:
        return [row(ref, Ev.TRIGGER, len(batch), source=self.name)]


def test_a_new_source_is_started_stopped_and_consulted_like_the_others(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_BY_NAME", {})
    log: list[str] = []
    registry.register("one", lambda ctx: Recorder("one", log))
    registry.register("absent", lambda ctx: None)
    registry.register("two", lambda ctx: Recorder("two", log))
    with pytest.raises(ValueError, match="twice"):
        registry.register("one", lambda ctx: None)
    opened = registry.open_all(_ctx(FakeProvider(None)))
    assert list(opened.by_name) == ["one", "two"]
    opened.start()
    rows = opened.events_for(REF, [])
    opened.stop()
    assert log == ["start one", "start two", "stop one", "stop two"]
    assert [r["source"] for r in rows] == ["one", "two"]
