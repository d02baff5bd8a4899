"""The restart chain (proxy-restart): hop declarations, and the timeline of a restart
trial assembled from hand-written events."""

from __future__ import annotations

from typing import Any

import pytest

from analysis.frame import DIRECTIONS, end_to_end
from analysis.headline import chain
from bench.errors import UserError
from bench.results.schema import ALL_NODES, CLUSTER, END_TO_END, HOPS, Ev
from bench.scenarios import registry
from bench.scenarios.config import ScenarioConfig
from bench.scenarios.proxy_restart import pick_node
from bench.sources.agents.events import Ask
from bench.sources.base import TrialRef
from tests.unit.test_timeline import ev, hops_of, one

RESTART = [h for h in HOPS if h.direction == "restart"]


def test_restart_hops_are_declared_with_an_end_to_end_and_a_full_chain() -> None:
    names = {h.name for h in RESTART}
    assert {"kill_to_start", "start_to_sync", "kill_to_rule", "kill_to_traffic"} <= names
    assert END_TO_END["restart"] == "kill_to_traffic" == end_to_end("restart")
    assert "restart" in DIRECTIONS
    assert all(h.per_node for h in RESTART)  # every step happens on the restarted node
    steps = [h.name for h in chain("restart")]  # the headline can split the end to end
    assert steps == ["kill_to_start", "start_to_sync", "sync_to_rule", "rule_to_traffic"]


def restart_trial(**skip: bool) -> list[dict[str, Any]]:
    """Node a restarted: killed at 0, started at 150, a periodic sync of the old process
    at 100 and the full sync at 700; node b serves on and syncs at 400 (not its trial)."""
    events = [
        ev(Ev.TRIGGER, 0, direction="restart", res_ms=0),
        ev(Ev.PROXY_KILLED, 0, "a", direction="restart", res_ms=0),
        ev(Ev.PROXY_SYNC, 100, "a", direction="restart"),
        ev(Ev.PROXY_STARTED, 150, "a", direction="restart", res_ms=0),
        ev(Ev.FAIL_FIRST, 160, "a", direction="restart", res_ms=5),
        ev(Ev.RULE_PRESENT, 698, "a", direction="restart", res_ms=5),
        ev(Ev.PROXY_SYNC, 700, "a", direction="restart"),
        ev(Ev.PROXY_SYNC, 900, "a", direction="restart"),
        ev(Ev.FIRST_SUCCESS, 704, "a", direction="restart", res_ms=5),
        ev(Ev.PROXY_SYNC, 400, "b", direction="restart"),
        ev(Ev.FIRST_SUCCESS, 260, "b", direction="restart", res_ms=5),
    ]
    return [e for e in events if not skip.get(f"{e['event']}@{e['node'] or 'cluster'}")]


def test_restart_trial_assembles_on_the_restarted_node_only() -> None:
    hops = hops_of(*restart_trial())
    assert set(hops["direction"]) == {"restart"}
    assert set(hops["node"]) == {"a", ALL_NODES}  # node b is not part of the trial
    got = {h: one(hops, h, "a")["latency_ms"] for h in
           ("kill_to_start", "start_to_sync", "sync_to_rule", "rule_to_traffic",
            "kill_to_rule", "kill_to_traffic")}
    # the sync chosen is the first at or after the start (700), not the old process's (100)
    assert got == {"kill_to_start": 150.0, "start_to_sync": 550.0, "sync_to_rule": -2.0,
                   "rule_to_traffic": 6.0, "kill_to_rule": 698.0, "kill_to_traffic": 704.0}
    assert one(hops, "sync_to_rule", "a")["flag"] == "negative"
    assert one(hops, "kill_to_traffic", ALL_NODES)["latency_ms"] == 704.0
    assert not hops["censored"].any()


def test_restart_without_a_sync_after_the_start_is_censored_with_a_reason() -> None:
    hops = hops_of(*restart_trial(**{"proxy_sync@a": True}))
    row = one(hops, "start_to_sync", "a")
    assert row["censored"] and row["censor_reason"] == (
        "missing proxy_sync at or after proxy_started")
    assert one(hops, "kill_to_traffic", "a")["latency_ms"] == 704.0


def test_restart_censored_node_reason_reaches_the_all_nodes_row() -> None:
    events = restart_trial(**{"first_success@a": True})
    events.append(ev(Ev.CENSOR, 30_000, "a", direction="restart",
                     detail='{"reason": "timeout 30s: the pod did not answer again"}'))
    hops = hops_of(*events)
    assert one(hops, "kill_to_traffic", "a")["censor_reason"] == (
        "timeout 30s: the pod did not answer again")
    assert one(hops, "kill_to_traffic", ALL_NODES)["censor_reason"].startswith("node a: ")


def test_restart_without_a_kill_event_falls_back_to_every_node() -> None:
    hops = hops_of(*restart_trial(**{"proxy_killed@a": True}))
    assert set(hops["node"]) == {"a", "b", ALL_NODES}
    assert one(hops, "kill_to_traffic", "b")["censor_reason"] == "missing proxy_killed"


def test_restart_is_apart_from_add_trials_of_the_same_number() -> None:
    add = [ev(Ev.TRIGGER, 0), ev(Ev.POD_READY, 10), ev(Ev.SLICE_READY, 20),
           ev(Ev.PROXY_SYNC, 30, "a"), ev(Ev.RULE_PRESENT, 31, "a"),
           ev(Ev.FIRST_SUCCESS, 32, "a"), ev(Ev.FIRST_SUCCESS, 33, "b")]
    hops = hops_of(*add, *restart_trial())
    assert one(hops, "ready_to_traffic", "b", "add")["latency_ms"] == 23.0
    assert one(hops, "start_to_sync", "a", "restart")["latency_ms"] == 550.0
    assert CLUSTER not in set(hops.loc[hops["direction"] == "restart", "node"])


def test_a_restart_asks_the_agents_for_the_ip_coming_back() -> None:
    ref = TrialRef("r", 0, "svc0", "proxy-restart", "iptables", "restart")
    assert Ask(ref, "svc0", "p", "10.0.0.1", 0, 1).adding


def test_node_rotates_with_the_trial_number() -> None:
    assert [pick_node(["n2", "n1"], t) for t in range(4)] == ["n1", "n2", "n1", "n2"]


def test_restart_cycles_run_alone_after_the_parallel_lanes() -> None:
    """With --parallel K the restart cycles leave the lanes' split and run alone; every
    cycle still runs exactly once."""
    cfg = ScenarioConfig(scenarios=("scale-up", "delete", "proxy-restart"), trials=10,
                         parallel=3, counts={"proxy-restart": 2})
    registry.check(cfg)
    assert cfg.solo_cycles() == [0, 5]
    lanes = cfg.lane_cycles()
    assert lanes == [[1, 4, 8], [2, 6, 9], [3, 7]]
    assert sorted(sum(lanes, []) + cfg.solo_cycles()) == list(range(10))
    plain = ScenarioConfig(scenarios=("scale-up", "delete"), trials=4, parallel=2)
    assert plain.solo_cycles() == [] and plain.lane_cycles() == [[0, 2], [1, 3]]


def test_proxy_restart_refuses_providers_without_restart() -> None:

    class NoRestart:
        name = "kubeconfig"

    class WithRestart:
        name = "local"

        def restart_kube_proxy(self, node: str) -> dict[str, int]:
            return {}

    with pytest.raises(UserError, match="kubeconfig provider cannot restart kube-proxy"):
        registry.check_provider(("proxy-restart",), NoRestart())
    registry.check_provider(("proxy-restart",), WithRestart())
    registry.check_provider(("scale-up", "delete"), NoRestart())
