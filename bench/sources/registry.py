"""Sources by name: each source module registers how to open itself for one mode of a
run, and the runner opens, starts, consults and stops them all alike.

A factory gets what a source may need of the run (SourceContext) and returns the source,
or None when it does not apply (no audit log on this cluster). Sources open, start and
stop in registration order, which is the import order in bench/sources/__init__.py
(agents first: the provider deploys them before the watch connects). The runner still
reaches a few sources directly for what only they do (the agents' prober, the watch's
sync): `Opened.of(AgentStore)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from bench.results.schema import EventRow
from bench.sources.base import Registry, Sink, Source, TrialRef

if TYPE_CHECKING:
    from bench.background.churn import Churner
    from bench.providers.base import Provider

T = TypeVar("T")


@dataclass(frozen=True)
class SourceContext:
    provider: Provider
    namespace: str
    trials: Registry  # pod -> the trial it takes part in, set by the scenarios
    sink: Sink  # where a source hands each row as it records it
    token: str  # the agents' bearer token for this mode
    probe_interval_ms: float
    churner: Churner | None = None  # background churn of this mode (bench.background)


Factory = Callable[[SourceContext], Source | None]
_BY_NAME: dict[str, Factory] = {}


def register(name: str, factory: Factory) -> None:
    if name in _BY_NAME:
        raise ValueError(f"source {name!r} is registered twice")
    _BY_NAME[name] = factory


def names() -> tuple[str, ...]:
    return tuple(_BY_NAME)


class Opened:
    """The sources of one mode of a run, by name, in registration order."""

    def __init__(self, by_name: dict[str, Source]) -> None:
        self.by_name = by_name

    def __iter__(self) -> Iterator[Source]:
        return iter(self.by_name.values())

    def find(self, cls: type[T]) -> T | None:
        return next((s for s in self.by_name.values() if isinstance(s, cls)), None)

    def of(self, cls: type[T]) -> T:
        if (s := self.find(cls)) is None:
            raise LookupError(f"no {cls.__name__} among the sources {list(self.by_name)}")
        return s

    def start(self) -> None:
        for s in self:
            s.start()

    def stop(self) -> None:
        for s in self:
            s.stop()

    def events_for(self, ref: TrialRef, batch: list[EventRow]) -> list[EventRow]:
        return [r for s in self for r in s.events_for(ref, batch)]


def open_all(ctx: SourceContext) -> Opened:
    opened = {name: src for name, make in _BY_NAME.items() if (src := make(ctx)) is not None}
    return Opened(opened)
