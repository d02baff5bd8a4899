"""The scenario options of a run, parsed once into a typed value (run.json stores it)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.scenarios import registry


@dataclass(frozen=True)
class ScenarioConfig:
    scenarios: tuple[str, ...] = ("scale-up", "delete")
    trials: int = 100
    parallel: int = 1
    spacing_s: float = 0.0
    trial_timeout_s: float = 30.0
    settle_s: float = 0.3
    probe_interval_ms: float = 5.0
    probe_idle_interval_ms: float = 100.0
    counts: dict[str, int] = field(default_factory=dict)  # --scenario NAME:K

    def count(self, name: str) -> int:
        """Trials of `name` per mode: its `:K`, at most one per cycle."""
        return min(self.counts.get(name, self.trials), self.trials)

    def cycles_of(self, name: str) -> frozenset[int]:
        """The cycles that record `name`: all, or K of them spread evenly."""
        k = self.count(name)
        return frozenset(i * self.trials // k for i in range(k)) if k else frozenset()

    def selected(self, cycle: int) -> tuple[str, ...]:
        """The selected scenarios cycle `cycle` runs and records."""
        return tuple(n for n in self.scenarios if cycle in self.cycles_of(n))

    def transitions_in(self, cycles: Iterable[int]) -> int:
        """Trials those cycles record."""
        return sum(len(registry.transitions(self.selected(t))) for t in cycles)

    def budget_s(self, cycles: Iterable[int]) -> float:
        """The longest those cycles' trials may last, each up to its scenario's timeout."""
        return sum(registry.timeout_s(n, self) for t in cycles
                   for n, _ in registry.transitions(self.selected(t)))

    def solo_cycles(self) -> list[int]:
        """The cycles that run a `solo` scenario (registry.solo): alone, after the others."""
        return [t for t in range(self.trials)
                if any(registry.solo(n) for n in self.selected(t))]

    def lane_cycles(self) -> list[list[int]]:
        """The other cycles' numbers per lane, run in parallel: lane k takes the k-th,
        (k + lanes)-th, ... of them."""
        solo = set(self.solo_cycles())
        shared = [t for t in range(self.trials) if t not in solo]
        return [shared[k::self.parallel] for k in range(self.parallel)]

    @property
    def trials_per_mode(self) -> int:
        return self.transitions_in(range(self.trials))

    @property
    def transitions(self) -> list[tuple[str, str]]:
        """(scenario, direction) of every trial one cycle records, in cycle order."""
        return registry.transitions(self.scenarios)

