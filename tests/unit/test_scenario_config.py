"""Scenario selection: names are checked, and each cycle records a known set of trials."""

from __future__ import annotations

import pytest

from bench.errors import UserError
from bench.scenario import ScenarioConfig, parse_scenarios


def test_default_cycle_is_one_add_and_one_delete() -> None:
    assert ScenarioConfig().transitions == [("scale-up", "add"), ("delete", "remove")]


def test_crash_and_flap_each_record_a_removal_then_an_add() -> None:
    cfg = ScenarioConfig(scenarios=parse_scenarios("scale-up, crash,readiness-flap,delete"))
    assert cfg.transitions == [
        ("scale-up", "add"), ("crash", "remove"), ("crash", "add"),
        ("readiness-flap", "remove"), ("readiness-flap", "add"), ("delete", "remove")]


@pytest.mark.parametrize("raw", ["scale-up,explode", "", " , "])
def test_unknown_or_empty_scenarios_are_refused(raw: str) -> None:
    with pytest.raises(UserError):
        parse_scenarios(raw)


def test_duplicates_collapse() -> None:
    assert parse_scenarios("delete,delete") == ("delete",)
