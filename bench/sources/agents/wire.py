"""What travels between the harness and a node agent, typed on the harness side.

The agent (bench/agent/server.py) is stdlib-only and imports nothing of the harness, so
it writes plain JSON; these TypedDicts say what the harness reads from it. A unit test
(tests/unit/test_agent_wire.py) checks them against a reply the real agent code makes.
`Transport` is how the harness reaches one agent (pod proxy, network namespace, ...).
"""

from __future__ import annotations

from typing import Any, Protocol, TypedDict


class Transport(Protocol):
    node: str

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                timeout: float = 5.0) -> Any: ...


class ClockReply(TypedDict):
    """GET /clock: the agent's wall clock, and its kernel's boot id ("" if unreadable)."""

    t_ns: int
    boot_id: str


class RuleChange(TypedDict):
    """The pod IP `ip` appeared in (present) or left the node's rules of `service`."""

    t_ns: int      # node clock: when the agent saw the rules change
    service: str   # the rules' key, e.g. "ns/svc:port"
    ip: str
    present: bool


class SyncStamp(TypedDict):
    """A kube-proxy sync, from its /metrics."""

    t_ns: int      # node clock: the sync's end (kubeproxy_sync_proxy_rules_last_timestamp)
    seen_ns: int   # node clock: when the agent read it
    syncs: int     # syncs since the previous poll


class PodSeen(TypedDict):
    """Answers one pod gave on one target (a change since the last collect)."""

    first_ns: int      # node clock: send time of the first answered request
    last_ns: int       # node clock: send time of the last answered request
    count: int
    first_gap_ns: int  # first answer minus the request before it (0: unknown)
    last_gap_ns: int   # the request after the last answer minus it (0: not yet known)


class FailRunReport(TypedDict):
    """A run of consecutive failed requests on one target."""

    first_ns: int
    last_ns: int
    count: int
    reasons: dict[str, int]  # reason -> failed requests
    first_gap_ns: int
    last_gap_ns: int


class ProbeReport(TypedDict):
    pods: dict[str, dict[str, PodSeen]]          # target -> pod -> answers (changes only)
    fail_runs: dict[str, list[FailRunReport]]    # target -> closed runs (drained)
    open_fail: dict[str, FailRunReport]          # target -> the run still going on
    requests: int
    focused_s: float                             # wall seconds with some target focused


class MeshStamp(TypedDict, total=False):
    """One stamp of the mesh client's own (xDS and load-balancer updates)."""

    ev: str            # eds | lb_add | lb_remove | subconn_ready | picker_ready
    target: str
    t_ns: int          # node clock
    addr: str          # the endpoint's IP (lb_*, subconn_ready, picker_ready)
    addrs: list[str]   # every "ip:port" of the update (eds)


class MeshReport(TypedDict, total=False):
    """GET /collect `mesh`: the mesh client's take (bench/agent/meshclient.py), answers
    keyed by pod IP, not name (gRPC's peer address is what the client knows)."""

    pods: dict[str, dict[str, PodSeen]]        # target -> pod IP -> answers (changes)
    fail_runs: dict[str, list[FailRunReport]]  # reasons: gRPC status code names
    open_fail: dict[str, FailRunReport]
    events: list[MeshStamp]                     # drained
    requests: int
    focused_s: float
    errors: list[str]                           # the client died or did not answer
    cpu_s: float                                # the client's CPU seconds since it started


class _CollectOptional(TypedDict, total=False):
    mesh: MeshReport  # only from an agent that runs a mesh client


class CollectReply(_CollectOptional):
    """GET /collect: the state changes since the last collect, and the agent's settings."""

    node: str
    t_ns: int
    rule_changes: list[RuleChange]
    syncs: list[SyncStamp]
    probe: ProbeReport
    cpu_s: float   # CPU seconds of the agent and its children since it started
    wall_s: float  # wall seconds since it started
    rule_mode: str
    rule_method: str            # "netlink" | "poll" ("nft-monitor" in older runs)
    rule_resolution_ns: int
    probe_interval_ns: int
    probe_idle_interval_ns: int
    kube_proxy_min_sync_s: float | None  # None: kube-proxy's /configz unreadable
    early_rule_changes: int
    sync_poll_interval_ns: int
    routes: dict[str, list[str]]  # rules key -> pod IPs routed now
    rule_dumps: dict[str, int]  # since the agent started: full, targeted, targeted_retried,
    #                             targeted_failed (a whole dump instead)


class RulesSummary(TypedDict):
    """GET /rules-summary?ns=NS: how far the node's rules have come for one namespace."""

    mode: str             # the dataplane the agent dumped: iptables | nftables | ipvs
    services_routed: int  # Services of NS with at least one routed endpoint
    rules: int            # iptables: `-A` lines of nat; nftables: rules + set/map elements
    dump_ms: float        # how long the dump and its parse took


class AgentInfo(TypedDict, total=False):
    """How an agent observes (its last collect's settings): run.json's resolution.agents.
    None where the agent did not say (an agent image older than the harness)."""

    rule_mode: str | None
    rule_method: str | None
    rule_resolution_ns: int | None
    probe_interval_ns: int | None
    probe_idle_interval_ns: int | None
    sync_poll_interval_ns: int | None
    kube_proxy_min_sync_s: float | None
    early_rule_changes: int | None
    probe_focused_s: float | None
    rule_dumps: dict[str, int] | None


def agent_info(reply: CollectReply) -> AgentInfo:
    return AgentInfo(
        rule_mode=reply.get("rule_mode"), rule_method=reply.get("rule_method"),
        rule_resolution_ns=reply.get("rule_resolution_ns"),
        probe_interval_ns=reply.get("probe_interval_ns"),
        probe_idle_interval_ns=reply.get("probe_idle_interval_ns"),
        sync_poll_interval_ns=reply.get("sync_poll_interval_ns"),
        kube_proxy_min_sync_s=reply.get("kube_proxy_min_sync_s"),
        early_rule_changes=reply.get("early_rule_changes"),
        probe_focused_s=reply["probe"].get("focused_s"),
        rule_dumps=reply.get("rule_dumps"))
