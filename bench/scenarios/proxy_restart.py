"""`proxy-restart` (a restart): kube-proxy restarted on one node under a serving pod.

While the cycle's pod is Ready and answering, kube-proxy on one node is stopped, its
rules are removed (so the Service truly stops answering there) and it is started again;
the trial lasts until that node's first full sync has put the pod's IP back into its
rules and the pod answers there again. The stamps (docs/design.md §2): PROXY_KILLED just
before the stop signal, PROXY_STARTED once the new process is spawned (both harness
clock, from the provider), then the agent's PROXY_SYNC, RULE_PRESENT and FIRST_SUCCESS.

The node rotates with the trial number over the nodes by name (trial 0 the first), so
every node is restarted as often and a rerun restarts the same node for the same trial.
Only that node's hops are recorded (bench.timeline.ONLY_ON); the other nodes' agents
keep probing, and their rows of the trial show their answers going on.

Needs a provider with the optional `restart_kube_proxy(node, between)` (the local one).
A restart interrupts every Service on the node, other lanes' too, so the scenario is
`solo`: with --parallel K its cycles run alone on the first lane once the other cycles
are done.
"""

from __future__ import annotations

import time
from typing import Any

from bench.errors import UserError
from bench.results.schema import Ev, EventRow
from bench.scenarios.config import ScenarioConfig
from bench.scenarios.lane import Cycle
from bench.scenarios.registry import register
from bench.sources.base import row

#: after the rules are removed, requests sent before it finish before the pod's answers
#: are forgotten: the next answer then proves the restarted rules, not the old ones
SETTLE_S = 0.1

#: a restart's trial may last this long, or --trial-timeout if longer: the first full
#: sync measured here took 2-4 min at 10,000 Services, far beyond a change's 30 s
RESTART_TIMEOUT_S = 600.0


def pick_node(nodes: list[str], trial: int) -> str:
    """The node restarted in `trial`: rotating over the nodes by name."""
    ordered = sorted(nodes)
    return ordered[trial % len(ordered)]


class ProxyRestart:
    name = "proxy-restart"
    order = 80  # after crash and readiness-flap: the pod is back and serving
    directions = ("restart",)
    always = False
    gated = False
    solo = True  # a restart interrupts every Service on the node: its cycles run alone

    def timeout_s(self, cfg: ScenarioConfig) -> float:
        return max(cfg.trial_timeout_s, RESTART_TIMEOUT_S)

    def check_provider(self, provider: Any) -> None:
        if not callable(getattr(provider, "restart_kube_proxy", None)):
            raise UserError(
                f"--scenario {self.name}: the {getattr(provider, 'name', '?')} provider cannot "
                "restart kube-proxy with its rules removed (deleting a kube-proxy pod leaves "
                "its rules in place, so the Service never stops answering); use the local "
                "cluster")

    def run(self, cycle: Cycle) -> None:
        lane = cycle.lane
        ref = cycle.ref(self.name, "restart")
        node = pick_node(list(lane.agents.nodes), cycle.trial)
        timeout = self.timeout_s(lane.cfg)
        lane.focus(True, after_sync=False, seconds=timeout + 5)  # fails from the cleanup on

        def between() -> None:  # the rules are gone: the next answer is a first answer
            time.sleep(SETTLE_S)
            lane.agents.forget(lane.service, cycle.pod, cycle.ip)

        if lane.on_proxy_restart is not None:  # its counters begin again: bank them
            lane.on_proxy_restart(node)
        stamps = lane.provider.restart_kube_proxy(node, between)
        t_kill = int(stamps["killed_ns"])
        deadline = time.monotonic() + timeout
        back = False
        while time.monotonic() < deadline:
            back = (lane.agents.first_answer(node, lane.service, cycle.pod) is not None
                    and lane.agents.rule_change(node, cycle.ip, True, t_kill) is not None
                    and lane.agents.synced_after(node, cycle.ip, True, t_kill))
            if back:
                break
            time.sleep(0.05)
        lane.focus(False)
        lane.agents.collect_once()
        rows: list[EventRow] = [
            lane.trigger(ref, t_kill, cycle.pod, f"restart kube-proxy on {node}"),
            row(ref, Ev.PROXY_KILLED, t_kill, source="harness", node=node, pod=cycle.pod,
                pod_ip=cycle.ip, detail={k: v for k, v in stamps.items() if k != "killed_ns"}),
            row(ref, Ev.PROXY_STARTED, int(stamps["started_ns"]), source="harness", node=node,
                pod=cycle.pod, pod_ip=cycle.ip),
        ]
        rows += lane.agents.trial_events(ref, lane.service, cycle.pod, cycle.ip, t_kill,
                                         time.time_ns())
        if not back:
            rows.append(lane.censor(ref, node, f"timeout {timeout:.0f}s: the "
                                    "pod did not answer again after the restart", cycle.pod))
        cycle.keep(ref, rows)


register(ProxyRestart())
