"""The scenario options of a run, parsed once into a typed value (run.json stores it)."""

from __future__ import annotations

from dataclasses import dataclass

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

    @property
    def transitions(self) -> list[tuple[str, str]]:
        """(scenario, direction) of every trial one cycle records, in cycle order."""
        return registry.transitions(self.scenarios)


def split_trials(trials: int, lanes: int) -> list[list[int]]:
    """Cycle numbers per lane: lane k runs k, k + lanes, k + 2 lanes, ..."""
    return [list(range(k, trials, lanes)) for k in range(lanes)]
