"""Scenarios by name, as measurements are in ClusterLoader2: each scenario module
registers one object, and the CLI, the cycle and the trial count all ask this registry.

A scenario is one step of a lane's cycle on one fresh pod. `order` places it in the
cycle; an `always` scenario runs in every cycle (scale-up creates the pod, delete removes
it) and is recorded only when selected; the others run only when selected. `directions`
are the trials one run of it records, in order; `gated` asks for the readiness gate on
the cycle's pod. Optional hooks: `timeout_s(cfg)`, `solo`, `check(cfg)`,
`check_provider(provider)` (see their functions below). Adding a scenario is adding a
module under bench/scenarios/ that calls `register` and importing it in
bench/scenarios/__init__.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from bench.errors import UserError

if TYPE_CHECKING:
    from bench.scenarios.config import ScenarioConfig
    from bench.scenarios.lane import Cycle


class Scenario(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def order(self) -> int: ...  # place in the cycle, smallest first

    @property
    def directions(self) -> tuple[str, ...]: ...  # trials one run records: add/remove/restart

    @property
    def always(self) -> bool: ...  # runs in every cycle (setup, cleanup), selected or not

    @property
    def gated(self) -> bool: ...  # the cycle's pod needs the readiness gate

    def run(self, cycle: Cycle) -> None: ...


_BY_NAME: dict[str, Scenario] = {}


def register(scenario: Scenario) -> Scenario:
    if scenario.name in _BY_NAME:
        raise ValueError(f"scenario {scenario.name!r} is registered twice")
    _BY_NAME[scenario.name] = scenario
    return scenario


def names() -> tuple[str, ...]:
    """Every registered scenario, in cycle order."""
    return tuple(s.name for s in sorted(_BY_NAME.values(), key=lambda s: s.order))


def get(name: str) -> Scenario:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UserError(f"unknown scenario {name!r} (available: {', '.join(names())})"
                        ) from None


def cycle(selected: tuple[str, ...]) -> list[Scenario]:
    """What one cycle runs, in order: the `always` scenarios and the selected ones."""
    chosen = {get(n).name for n in selected}
    return sorted((s for s in _BY_NAME.values() if s.always or s.name in chosen),
                  key=lambda s: s.order)


def transitions(selected: tuple[str, ...]) -> list[tuple[str, str]]:
    """(scenario, direction) of every trial one cycle records, in cycle order."""
    return [(s.name, d) for s in cycle(selected) if s.name in selected for d in s.directions]


def timeout_s(name: str, cfg: ScenarioConfig) -> float:
    """How long one trial of `name` may last: the scenario's own `timeout_s(cfg)` if it
    has one (a full sync at scale takes minutes), else --trial-timeout."""
    hook = getattr(get(name), "timeout_s", None)
    return float(hook(cfg)) if hook is not None else cfg.trial_timeout_s


def solo(name: str) -> bool:
    """Whether `name` needs the cluster to itself (its optional `solo`, default False): a
    cycle that runs it runs alone, after the parallel lanes' cycles (a kube-proxy restart
    interrupts every Service on the node, other lanes' trials too)."""
    return bool(getattr(get(name), "solo", False))


def check(cfg: ScenarioConfig) -> None:
    """Each selected scenario's optional `check(cfg)`: a UserError before anything exists."""
    for n in cfg.scenarios:
        if (hook := getattr(get(n), "check", None)) is not None:
            hook(cfg)


def check_provider(selected: tuple[str, ...], provider: Any) -> None:
    """Each selected scenario's optional `check_provider(provider)`: a UserError before the
    run directory exists (e.g. a provider lacking an optional method the scenario needs)."""
    for n in selected:
        if (hook := getattr(get(n), "check_provider", None)) is not None:
            hook(provider)


def _split(raw: str) -> list[tuple[str, str]]:
    items = [s.strip() for s in raw.split(",") if s.strip()]
    return [(i.partition(":")[0].strip(), i.partition(":")[2].strip()) for i in items]


def parse_scenarios(raw: str) -> tuple[str, ...]:
    """--scenario: comma-separated registered names (each may carry `:K`, see
    parse_counts), duplicates dropped, order kept."""
    chosen = tuple(dict.fromkeys(n for n, _ in _split(raw)))
    for n in chosen:
        get(n)
    if not chosen:
        raise UserError("--scenario: name at least one of " + ", ".join(names()))
    return chosen


def parse_counts(raw: str) -> dict[str, int]:
    """The `NAME:K` entries of --scenario: K trials of NAME per mode, spread over the
    cycles (for a scenario too slow to run in every cycle, e.g. proxy-restart at scale)."""
    counts: dict[str, int] = {}
    for n, k in _split(raw):
        if not k:
            continue
        if not k.isdigit() or int(k) < 1:
            raise UserError(f"--scenario {n}:{k}: the count after ':' must be a whole "
                            "number of at least 1")
        counts[get(n).name] = int(k)
    return counts
