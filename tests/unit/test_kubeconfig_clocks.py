"""The kubeconfig provider's clock check: which offsets are too uncertain, warn or refuse,
and what run.json says of the clocks. Offsets are hand-written; no agent is asked."""

from __future__ import annotations

from typing import Any

import pytest

from bench.errors import UserError
from bench.providers.kubeconfig import clocks
from bench.sources.agents import ClockOffset

OFFSETS = {"n2": ClockOffset(0, 6_000_000, 20), "n1": ClockOffset(-3, 400_000, 20)}


class _Node:
    def __init__(self, node: str) -> None:
        self.node = node

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                timeout: float = 5.0) -> Any:
        raise AssertionError("estimate_offset is replaced in these tests")


def test_skew_verdict() -> None:
    assert clocks.skew_problems(OFFSETS, 5.0) == ["n2 ±6.00 ms"]
    assert clocks.skew_problems(OFFSETS, 10.0) == []
    assert clocks.skew_problems(OFFSETS, 0.1) == ["n1 ±0.40 ms", "n2 ±6.00 ms"]
    refuse = clocks.skew_message(["n2 ±6.00 ms"], 5.0, refuse=True)
    warn = clocks.skew_message(["n2 ±6.00 ms"], 5.0, refuse=False)
    assert "--max-skew 5 ms on n2 ±6.00 ms" in refuse and "\n" not in refuse
    assert "prober interval" in warn and "--max-skew MS refuses" in warn


@pytest.fixture
def fixed_offsets(monkeypatch: pytest.MonkeyPatch) -> list[_Node]:
    monkeypatch.setattr(clocks, "estimate_offset", lambda t, samples: OFFSETS[t.node])
    return [_Node("n1"), _Node("n2")]


def test_uncertain_clock_warns_against_the_prober_interval(fixed_offsets: list[_Node]) -> None:
    said: list[str] = []
    assert clocks.check_clocks(fixed_offsets, None, 5.0, said.append) == OFFSETS
    assert len(said) == 1 and said[0].startswith(
        "warning: clock offset uncertainty above the prober interval 5 ms on n2 ±6.00 ms")
    said.clear()
    clocks.check_clocks(fixed_offsets, None, 10.0, said.append)
    assert said == []


def test_max_skew_refuses(fixed_offsets: list[_Node]) -> None:
    with pytest.raises(UserError, match=r"above --max-skew 0\.5 ms on n2 ±6\.00 ms"):
        clocks.check_clocks(fixed_offsets, 0.5, 100.0, lambda m: None)
    assert clocks.check_clocks(fixed_offsets, 7.0, 0.1, lambda m: None) == OFFSETS


def test_clock_provenance() -> None:
    shared = {"n1": ClockOffset(0, 0, 0, shared=True)}
    assert clocks.provenance(shared)["clock"].startswith("one kernel clock")
    assert clocks.provenance({})["clock"].startswith("one clock per node")
    got = clocks.provenance(OFFSETS)
    assert got["clock"].startswith("one clock per node")
    assert got["clock_check"]["n1"] == {"offset_ns": -3, "uncertainty_ns": 400_000,
                                        "shared": False}
