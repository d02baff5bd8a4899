"""The agent's rules summary (counts from rule dumps) and the wait on it, from hand-written
dumps and scripted replies on a fake clock."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from bench.agent import summary
from bench.agent.rules import parse_iptables, parse_nft
from bench.agent.server import Agent, make_handler
from bench.background.wait import wait_programmed
from bench.poll import WaitTimeout
from bench.sources.agents.wire import RulesSummary

DATA = Path(__file__).parent / "data"
IPTABLES = (DATA / "rules-bg.iptables").read_text()  # hand-written, in iptables-save's shape

NFT = (DATA / "rules-bg.nft").read_text()  # hand-written, in kube-proxy's nft shape


def test_iptables_counts_every_append_and_routes_per_namespace() -> None:
    assert summary.count_iptables(IPTABLES) == 6
    routes = parse_iptables(IPTABLES)
    assert summary.routed_in(routes, "bg") == 2
    assert summary.routed_in(routes, "other") == 1
    assert summary.routed_in(routes, "b") == 0  # a prefix of a namespace is not it


def test_nft_counts_rules_and_elements_across_lines() -> None:
    # elements: 3 cluster-ips + 1 service-ips; rules: 1 + 2 + 2
    assert summary.count_nft(NFT) == 4 + 5
    assert summary.routed_in(parse_nft(NFT), "bg") == 1


def test_service_of_both_key_shapes() -> None:
    assert summary.service_of("ns/svc:http") == "ns/svc"
    assert summary.service_of("ns/svc/tcp/http") == "ns/svc"
    assert summary.service_of("10.96.0.1:80") == ""


class _Scripted:
    """Replies per poll: a list of {node: services_routed}."""

    def __init__(self, script: list[dict[str, int]]) -> None:
        self.script = script
        self.calls = 0

    def rules_summary(self, namespace: str) -> dict[str, RulesSummary]:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return {n: RulesSummary(mode="iptables", services_routed=k, rules=100 + k,
                                dump_ms=10.0) for n, k in step.items()}


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_wait_times_each_node_at_the_poll_that_saw_it_complete() -> None:
    clock = _Clock()
    agents = _Scripted([{"n1": 0, "n2": 0}, {"n1": 50, "n2": 10}, {"n1": 50, "n2": 40},
                        {"n1": 50, "n2": 50}])
    p = wait_programmed(agents, "bg", 50, 60, poll_s=1.0, clock=clock, sleep=clock.sleep)
    assert p.node_seconds == {"n1": 1.0, "n2": 3.0}
    assert p.seconds == 3.0
    assert p.routed == {"n1": 50, "n2": 50} and p.rules == {"n1": 150, "n2": 150}
    assert p.polls == 4 and p.resolution_s == pytest.approx(1.01)


def test_wait_times_out_in_one_line_with_each_nodes_count() -> None:
    clock = _Clock()
    agents = _Scripted([{"n1": 50, "n2": 7}])
    with pytest.raises(WaitTimeout) as exc:
        wait_programmed(agents, "bg", 50, 5, poll_s=1.0, clock=clock, sleep=clock.sleep)
    assert "routed: n1 50, n2 7" in str(exc.value) and "\n" not in str(exc.value)


def test_rules_summary_route_answers_the_typed_reply() -> None:
    """The real agent's handler: /rules-summary?ns= replies every RulesSummary key."""
    agent = Agent("n1", probe_interval_s=0.005, rules_poll_s=0.02, metrics_port=9)
    agent.rules.mode = "iptables"
    srv = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(agent, "tok"))
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    port = srv.server_address[1]

    def get(path: str, token: str = "tok") -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"X-Hopbench-Token": token})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    try:
        reply = get("/rules-summary?ns=bg")
        assert set(reply) == set(get_type_hints(RulesSummary))
        assert reply["mode"] in ("iptables", "nftables") and isinstance(reply["rules"], int)
        with pytest.raises(urllib.error.HTTPError) as exc:
            get("/rules-summary")
        assert exc.value.code == 400
        with pytest.raises(urllib.error.HTTPError) as exc:
            get("/rules-summary?ns=bg", token="bad")
        assert exc.value.code == 403
    finally:
        srv.shutdown()
        srv.server_close()


def test_iptables_routes_without_comments_in_large_cluster_mode() -> None:
    """Real kube-proxy output (local cluster, 500 Services x 2 fake endpoints): above 1000
    endpoints kube-proxy writes KUBE-SVC -> KUBE-SEP jumps and KUBE-SEP rules without
    comments, as for bg-00484 here; bg-00146 was written before, with them."""
    routes = parse_iptables((DATA / "rules-large.iptables").read_text())
    assert routes == {"hopbench-bg-itea1e/bg-00146:http": {"10.255.1.37", "10.255.1.38"},
                      "hopbench-bg-itea1e/bg-00484:http": {"10.255.3.201", "10.255.3.202"}}
