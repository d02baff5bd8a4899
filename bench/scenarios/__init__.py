"""Scenarios: what a lane does to one fresh pod per cycle, one module per scenario.

registry (by name; order in the cycle) <- scale_up, crash, readiness_flap, proxy_restart,
delete;
config (ScenarioConfig: what a run selects); lane (the cycle loop and the helpers every
scenario uses). A new scenario is one new module that calls `registry.register`, plus
its import below.
"""

from bench.scenarios import (  # noqa: F401 - register
    crash,
    delete,
    proxy_restart,
    readiness_flap,
    scale_up,
)
from bench.scenarios.config import ScenarioConfig
from bench.scenarios.lane import Lane
from bench.scenarios.registry import names, parse_counts, parse_scenarios

__all__ = ["Lane", "ScenarioConfig", "names", "parse_counts", "parse_scenarios"]
