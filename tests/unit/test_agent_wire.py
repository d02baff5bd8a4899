"""The harness's types of the agent's replies match what the real agent sends.

The agent is stdlib-only and cannot import the harness's TypedDicts, so this test makes
a real agent (bench.agent.server.Agent, its prober armed against a loopback HTTP server
and a port with nothing behind it, then something behind it), reads /collect and /clock
through the agent's own HTTP handler, and compares every key, nested ones included."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, get_type_hints, is_typeddict

import pytest

from bench.agent.server import Agent, make_handler
from bench.results.schema import Ev
from bench.sources.agents.clocks import ClockOffset
from bench.sources.agents.events import Ask, trial_events
from bench.sources.agents.nodelog import NodeLog, absorb
from bench.sources.agents.wire import (
    ClockReply,
    CollectReply,
    FailRunReport,
    PodSeen,
    ProbeReport,
    RuleChange,
    SyncStamp,
)
from bench.sources.base import TrialRef

TOKEN = "tok"


class _Pod(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b"pod-a"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    srv = ThreadingHTTPServer(("127.0.0.1", port), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    return srv


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def _get(port: int, path: str) -> Any:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers={"X-Hopbench-Token": TOKEN})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def replies() -> Iterator[tuple[CollectReply, ClockReply]]:
    """A real agent's /collect after answers, a closed and an open failure run, a rule
    change and a sync (the watcher's and poller's callbacks), and its /clock."""
    good = _serve(0, _Pod)
    late = _free_port()  # nothing listens here at first: failed requests
    agent = Agent("n1", probe_interval_s=0.005, rules_poll_s=0.02, metrics_port=_free_port())
    api = _serve(0, make_handler(agent, TOKEN))
    servers = [good, api]
    try:
        agent.arm({"targets": [{"name": "svc0", "ip": "127.0.0.1",
                                "port": good.server_address[1]},
                               {"name": "svc1", "ip": "127.0.0.1", "port": late},
                               {"name": "svc2", "ip": "127.0.0.1", "port": _free_port()}],
                   "interval_ms": 5, "idle_interval_ms": 5, "max_requests": 5000,
                   "max_seconds": 30})
        time.sleep(0.3)
        servers.append(_serve(late, _Pod))  # svc1's failure run closes on its first answer
        time.sleep(0.3)
        agent._on_rule(time.time_ns(), "ns/svc0:80", "10.64.1.7", True)
        agent._on_sync(time.time_ns(), time.time_ns(), 1)
        api_port = api.server_address[1]
        yield _get(api_port, "/collect"), _get(api_port, "/clock")
    finally:
        agent.disarm()
        agent.prober.stop()
        for s in servers:
            s.shutdown()
            s.server_close()


def _keys(td: Any) -> set[str]:
    return set(td.__required_keys__) | set(td.__optional_keys__)


def _check(td: Any, value: dict[str, Any], where: str) -> None:
    """Every key of `value` is declared by `td` and every declared key is there; nested
    TypedDicts (directly, in a list, or as a dict's values) are checked the same way."""
    required = set(td.__required_keys__)
    assert required <= set(value) <= _keys(td), (
        f"{where}: sent {sorted(value)}, typed {sorted(_keys(td))} (required {sorted(required)})")
    for key, hint in get_type_hints(td).items():
        if key in value:
            _check_value(hint, value[key], f"{where}.{key}")


def _check_value(hint: Any, value: Any, where: str) -> None:
    if is_typeddict(hint):
        _check(hint, value, where)
        return
    args = getattr(hint, "__args__", ())
    origin = getattr(hint, "__origin__", None)
    if origin is list and args and is_typeddict(args[0]):
        assert value, f"{where}: empty, nothing to check"
        for i, v in enumerate(value):
            _check(args[0], v, f"{where}[{i}]")
    elif origin is dict and args:
        for k, v in value.items():
            _check_value(args[1], v, f"{where}[{k}]")


def test_collect_reply_matches_the_typeddict(replies: tuple[CollectReply, ClockReply]
                                             ) -> None:
    collect, _ = replies
    probe = collect["probe"]
    # the reply really holds every nested kind, so each was checked
    assert probe["pods"]["svc0"]["pod-a"] and probe["pods"]["svc1"]["pod-a"]
    assert probe["fail_runs"]["svc1"] and probe["open_fail"]["svc2"]
    assert collect["rule_changes"] and collect["syncs"]
    _check(CollectReply, dict(collect), "collect")


def test_the_nested_types_are_the_ones_the_reply_is_checked_against() -> None:
    hints = get_type_hints(CollectReply)
    assert hints["probe"] is ProbeReport
    assert hints["rule_changes"] == list[RuleChange] and hints["syncs"] == list[SyncStamp]
    probe = get_type_hints(ProbeReport)
    assert probe["pods"] == dict[str, dict[str, PodSeen]]
    assert probe["fail_runs"] == dict[str, list[FailRunReport]]
    assert probe["open_fail"] == dict[str, FailRunReport]


def test_clock_reply_matches_the_typeddict(replies: tuple[CollectReply, ClockReply]) -> None:
    _, clock = replies
    _check(ClockReply, dict(clock), "clock")


def test_a_real_reply_becomes_rows(replies: tuple[CollectReply, ClockReply]) -> None:
    """What the harness does with it: fold into a node log, translate a trial."""
    collect, _ = replies
    log = NodeLog("n1", ClockOffset(0, 0, 15))
    absorb(log, collect)
    ref = TrialRef("run", 0, "svc0", "scale-up", "nftables", "add")
    rows = trial_events({"n1": log}, Ask(ref, "svc0", "pod-a", "10.64.1.7", 0, time.time_ns()))
    assert {r["event"] for r in rows} == {Ev.PROXY_SYNC, Ev.RULE_PRESENT, Ev.FIRST_SUCCESS}
    assert log.info["probe_interval_ns"] == 5_000_000
    assert log.info["rule_method"] == collect["rule_method"]
