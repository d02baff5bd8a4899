"""Scenarios by name: names are checked against the registry, each selection records a
known set of trials in cycle order, a new scenario is one module, and the lane's cycle
runs what the registry says."""

from __future__ import annotations

import importlib
import itertools
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from bench.errors import UserError
from bench.kube import Kube
from bench.results.schema import Ev
from bench.scenarios import ScenarioConfig, parse_counts, parse_scenarios, registry
from bench.scenarios.lane import Cycle, Lane
from bench.sources.base import Registry

BUILT_IN = ("scale-up", "crash", "readiness-flap", "proxy-restart", "delete")
FULL_CYCLE = [("scale-up", "add"), ("crash", "remove"), ("crash", "add"),
              ("readiness-flap", "remove"), ("readiness-flap", "add"),
              ("proxy-restart", "restart"), ("delete", "remove")]


@pytest.fixture
def own_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Registrations made by the test are gone after it."""
    monkeypatch.setattr(registry, "_BY_NAME", dict(registry._BY_NAME))
    yield


def test_the_built_in_scenarios_are_registered_in_cycle_order() -> None:
    assert registry.names() == BUILT_IN


def test_default_cycle_is_one_add_and_one_delete() -> None:
    assert ScenarioConfig().transitions == [("scale-up", "add"), ("delete", "remove")]


def test_crash_and_flap_each_record_a_removal_then_an_add() -> None:
    cfg = ScenarioConfig(scenarios=parse_scenarios("scale-up, crash,readiness-flap,delete"))
    assert cfg.transitions == [t for t in FULL_CYCLE if t[0] != "proxy-restart"]


def test_transitions_follow_the_cycle_not_the_command_line() -> None:
    cfg = ScenarioConfig(scenarios=parse_scenarios(
        "delete,proxy-restart,readiness-flap,scale-up,crash"))
    assert cfg.scenarios == ("delete", "proxy-restart", "readiness-flap", "scale-up",
                             "crash")  # as given
    assert cfg.transitions == FULL_CYCLE


@pytest.mark.parametrize("chosen", [c for k in range(1, 5)
                                    for c in itertools.combinations(BUILT_IN, k)])
def test_every_selection_records_its_own_trials_in_cycle_order(chosen: tuple[str, ...]) -> None:
    got = ScenarioConfig(scenarios=tuple(reversed(chosen))).transitions
    assert got == [t for t in FULL_CYCLE if t[0] in chosen]


def test_unknown_scenario_is_one_line_listing_the_registered_ones() -> None:
    with pytest.raises(UserError) as exc:
        parse_scenarios("scale-up,explode")
    msg = str(exc.value)
    assert "\n" not in msg and "'explode'" in msg
    assert msg.endswith("(available: scale-up, crash, readiness-flap, proxy-restart, delete)")


@pytest.mark.parametrize("raw", ["", " , "])
def test_empty_selection_is_refused(raw: str) -> None:
    with pytest.raises(UserError, match="name at least one of scale-up, crash"):
        parse_scenarios(raw)


def test_duplicates_collapse() -> None:
    assert parse_scenarios("delete,delete") == ("delete",)


def test_a_count_spreads_a_slow_scenario_over_the_cycles() -> None:
    raw = "scale-up,delete,proxy-restart:3"
    cfg = ScenarioConfig(scenarios=parse_scenarios(raw), counts=parse_counts(raw), trials=30)
    assert cfg.scenarios == ("scale-up", "delete", "proxy-restart")
    assert cfg.cycles_of("proxy-restart") == {0, 10, 20}
    assert cfg.selected(10) == ("scale-up", "delete", "proxy-restart")
    assert cfg.selected(11) == ("scale-up", "delete")
    assert cfg.trials_per_mode == 30 * 2 + 3
    assert cfg.transitions_in([0, 1]) == 3 + 2


def test_a_count_above_the_cycles_runs_in_every_cycle() -> None:
    cfg = ScenarioConfig(scenarios=("scale-up", "proxy-restart"),
                         counts={"proxy-restart": 50}, trials=4)
    assert cfg.cycles_of("proxy-restart") == {0, 1, 2, 3}
    assert cfg.trials_per_mode == 8


def test_a_restart_may_last_longer_than_a_change() -> None:
    cfg = ScenarioConfig(scenarios=("scale-up", "proxy-restart"), counts={"proxy-restart": 1},
                         trials=2, trial_timeout_s=30)
    assert registry.timeout_s("scale-up", cfg) == 30
    assert registry.timeout_s("proxy-restart", cfg) >= 600
    assert cfg.budget_s([0]) == 30 + registry.timeout_s("proxy-restart", cfg)
    assert cfg.budget_s([1]) == 30


@pytest.mark.parametrize("raw", ["proxy-restart:0", "proxy-restart:x", "delete:-1"])
def test_a_bad_count_is_one_line_naming_it(raw: str) -> None:
    with pytest.raises(UserError, match=r"^--scenario .*: the count after ':'"):
        parse_counts(raw)


def test_a_count_on_an_unknown_scenario_is_refused() -> None:
    with pytest.raises(UserError, match="'explode'"):
        parse_counts("explode:3")


def test_a_name_is_registered_once(own_registry: None) -> None:
    with pytest.raises(ValueError, match="twice"):
        registry.register(registry.get("crash"))


def test_a_new_scenario_is_one_module(own_registry: None, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hb_fake_rollout.py").write_text(textwrap.dedent('''
        from bench.scenarios.registry import register

        class Rollout:
            name = "rollout"
            order = 40
            directions = ("remove", "add")
            always = False
            gated = False

            def run(self, cycle):
                pass

        register(Rollout())
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module("hb_fake_rollout")
    finally:
        sys.modules.pop("hb_fake_rollout", None)
    assert registry.names() == ("scale-up", "crash", "readiness-flap", "rollout", "proxy-restart",
                                "delete")
    chosen = parse_scenarios("rollout,readiness-flap")
    assert ScenarioConfig(scenarios=chosen).transitions == [
        ("readiness-flap", "remove"), ("readiness-flap", "add"),
        ("rollout", "remove"), ("rollout", "add")]
    assert [s.name for s in registry.cycle(("rollout",))] == ["scale-up", "rollout", "delete"]
    with pytest.raises(UserError, match="readiness-flap, rollout, proxy-restart, delete"):
        parse_scenarios("nope")


# --- the lane's cycle loop, on fake scenarios (no cluster: the pod calls are stubbed) ---
class Step:
    def __init__(self, name: str, order: int, always: bool, gives_ip: bool = False,
                 gated: bool = False) -> None:
        self.name, self.order, self.always, self.gated = name, order, always, gated
        self.directions = ("add",)
        self.gives_ip = gives_ip
        self.ran: list[tuple[str, str, bool]] = []

    def run(self, cycle: Cycle) -> None:
        self.ran.append((self.name, cycle.pod, cycle.gated))
        if self.gives_ip:
            cycle.ip = "10.0.0.9"
        r = cycle.ref(self.name, "add")
        cycle.keep(r, [cycle.lane.trigger(r, 1, cycle.pod, self.name)])


def _lane(monkeypatch: pytest.MonkeyPatch, steps: list[Step], selected: tuple[str, ...]
          ) -> tuple[Lane, list[tuple[str, list[Any]]], list[str], list[str]]:
    monkeypatch.setattr(registry, "_BY_NAME", {s.name: s for s in steps})
    stored: list[tuple[str, list[Any]]] = []
    order: list[str] = []
    lane = Lane(api=cast(Kube, None), namespace="ns", service="svc0", image="img",
                agents=None, registry=Registry(), run_id="r", mode="iptables",  # type: ignore[arg-type]
                cfg=ScenarioConfig(scenarios=selected),
                on_trial=lambda ref, rows: stored.append((ref.scenario, rows)))
    deleted: list[str] = []
    monkeypatch.setattr(lane, "delete_pod", deleted.append)
    for s in steps:  # one shared log of what ran, in order
        monkeypatch.setattr(s, "run", lambda c, s=s, f=s.run: (order.append(s.name), f(c)))  # type: ignore[func-returns-value]
    return lane, stored, order, deleted


def test_the_cycle_runs_always_and_selected_scenarios_in_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    steps = [Step("close", 100, True), Step("mid", 20, False), Step("open", 0, True, True),
             Step("skip", 10, False, gated=True)]
    lane, stored, order, deleted = _lane(monkeypatch, steps, ("mid", "close"))
    lane.run_cycle(3)
    assert order == ["open", "mid", "close"]
    assert [s for s, _ in stored] == ["mid", "close"]  # "open" ran as setup, not stored
    pod = steps[2].ran[0][1]
    assert pod.startswith("svc0-t3-") and deleted == [pod]  # removed whatever happened
    assert not any(g for s in steps for _, _, g in s.ran)  # "skip" (gated) not selected


def test_the_cycle_gates_the_pod_when_a_selected_scenario_needs_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    steps = [Step("open", 0, True, True), Step("flap", 10, False, gated=True)]
    lane, _, _, _ = _lane(monkeypatch, steps, ("flap",))
    lane.run_cycle(0)
    assert steps[0].ran[0][2] is True


def test_a_pod_without_ip_censors_the_rest_of_the_cycle(
        monkeypatch: pytest.MonkeyPatch) -> None:
    steps = [Step("open", 0, True), Step("mid", 20, False), Step("close", 100, True)]
    lane, stored, order, deleted = _lane(monkeypatch, steps, ("open", "mid"))
    lane.run_cycle(0, done=frozenset({"open"}))
    assert order == ["open"]  # nothing else ran on a pod without an IP
    assert [s for s, _ in stored] == ["mid"]  # "open" already recorded, "close" unselected
    (censor,) = stored[0][1]
    assert censor["event"] == Ev.CENSOR and "never got an IP" in censor["detail"]
    assert len(deleted) == 1


def test_the_error_line_shows_the_count_as_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich would turn `proxy-restart:x:` into an emoji and `[b]` into markup."""
    import io

    from rich.console import Console

    from bench import cli

    buf = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=buf, width=200))
    with pytest.raises(UserError) as exc:
        parse_counts("scale-up,proxy-restart:x")
    cli.say_error(exc.value)
    cli.say_error(UserError("a [b]literal[/b] bracket"))
    assert buf.getvalue() == ("hopbench: error: --scenario proxy-restart:x: the count after "
                              "':' must be a whole number of at least 1\n"
                              "hopbench: error: a [b]literal[/b] bracket\n")
