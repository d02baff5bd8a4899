"""The results schema: event names, hop declarations and table columns, versioned.

This module is the contract between the sources (which record events), the timeline
assembly (which turns events into hops) and `analysis` (which reads the files). It is
pure data: no Kubernetes client, no I/O, so `analysis` may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypedDict, get_type_hints

from bench.results.modeblock import ModeBlock

SCHEMA_VERSION = 2  # 2: the `point` column (bench.results.point)
#: older versions this code reads as the current one: their only difference is a column it
#: fills with its default (1: no `point`, read as "" = no background)
READS_AS_CURRENT = frozenset({1})

Direction = Literal["add", "remove", "restart"]
CLUSTER = ""  # node value of cluster-level events (API watch, harness)
ALL_NODES = "*"  # node value of the "all nodes converged" hops


class Ev:
    """Event names. Add chain T0..T5, removal chain R0..R5, restart chain K0..K4
    (docs/design.md §2)."""

    TRIGGER = "trigger"                # T0/R0 harness acted (scale, delete, kill, flip)
    POD_READY = "pod_ready"            # T1 pod Ready=True seen on the watch
    SLICE_READY = "slice_ready"        # T2 EndpointSlice lists the pod IP ready
    PROXY_SYNC = "proxy_sync"          # T3[n]/R3[n] kube-proxy sync that covers the change
    RULE_PRESENT = "rule_present"      # T4[n] node's dataplane holds the pod IP
    FIRST_SUCCESS = "first_success"    # T5[n] first answer from the new pod on node n
    POD_UNREADY = "pod_unready"        # R1 pod Ready=False or deletionTimestamp set
    SLICE_UNREADY = "slice_unready"    # R2 slice drops the IP or marks it not ready
    RULE_ABSENT = "rule_absent"        # R4[n] the pod IP left the node's rules
    LAST_SUCCESS = "last_success"      # R5[n] last answer served by the removed pod
    FAIL_FIRST = "fail_first"          # first failed request in the transition window
    FAIL_LAST = "fail_last"            # last failed request (value = failure count)
    PROXY_KILLED = "proxy_killed"      # K0[n] harness signalled kube-proxy on node n to stop
    PROXY_STARTED = "proxy_started"    # K1[n] the new kube-proxy process on node n exists
    # cross-checks, never the measurement
    READY_LTT = "pod_ready_ltt"        # condition lastTransitionTime (1 s resolution)
    SLICE_TRIGGER = "slice_trigger"    # endpoints.kubernetes.io/last-change-trigger-time
    AUDIT_STATUS = "audit_pod_status"  # audit log stageTimestamp of the pods/status write
    AUDIT_SLICE = "audit_slice_write"  # audit log stageTimestamp of the slice write
    CENSOR = "censor"                  # a trial ended without some event (detail = reason)
    TRIAL_END = "trial_end"            # harness closed the trial: all its events are recorded
    CHURN = "churn"                    # background endpoint changes during the trial (value)
    # the mesh path (M1..M7, docs/design.md §2): same trials, same T1/T2 and R1/R2
    MESH_PATH = "mesh_path"            # the trial was measured on a mesh too (detail: name)
    MESH_CONTROL = "mesh_control_plane"  # ...and its control plane's log was read (M1-M3)
    MESH_SLICE_SEEN = "mesh_slice_seen"  # M1 the mesh's control plane handled the slice
    MESH_PUSH = "mesh_push"            # M2 its push debounce ended for the Service
    EDS_SENT = "eds_sent"              # M3[n] it sent node n's client the endpoints
    EDS_RECEIVED = "eds_received"      # M4[n] node n's client received them
    LB_UPDATE = "lb_update"            # M5[n] its load balancer added / dropped the IP
    PICKER_READY = "picker_ready"      # M6[n] a picker with the pod's ready subchannel
    MESH_FIRST = "mesh_first_success"  # M7[n] first RPC the new pod answered
    MESH_LAST = "mesh_last_success"    # MR7[n] last RPC the removed pod answered
    MESH_FAIL_FIRST = "mesh_fail_first"  # first failed RPC in the transition window
    MESH_FAIL_LAST = "mesh_fail_last"    # last failed RPC (value = failure count)


@dataclass(frozen=True)
class Hop:
    """One latency, declared as data: from one event to another, per node or not."""

    name: str
    direction: Direction
    start: str
    end: str
    per_node: bool  # end event is per node (start may be cluster-level)
    label: str      # what a reader sees on a plot
    path: str = "kube-proxy"  # the discovery path: "kube-proxy" or "mesh" (PATH_MARKER)


HOPS: tuple[Hop, ...] = (
    Hop("trigger_to_ready", "add", Ev.TRIGGER, Ev.POD_READY, False, "kubelet: trigger → Ready"),
    Hop("ready_to_slice", "add", Ev.POD_READY, Ev.SLICE_READY, False,
        "EndpointSlice controller: Ready → slice"),
    Hop("slice_to_sync", "add", Ev.SLICE_READY, Ev.PROXY_SYNC, True,
        "kube-proxy: slice → sync done"),
    Hop("sync_to_rule", "add", Ev.PROXY_SYNC, Ev.RULE_PRESENT, True,
        "dataplane: sync → rule present"),
    Hop("rule_to_traffic", "add", Ev.RULE_PRESENT, Ev.FIRST_SUCCESS, True,
        "prober: rule → first answer"),
    Hop("ready_to_traffic", "add", Ev.POD_READY, Ev.FIRST_SUCCESS, True,
        "end to end: Ready → first answer"),
    Hop("trigger_to_unready", "remove", Ev.TRIGGER, Ev.POD_UNREADY, False,
        "trigger → pod unready"),
    Hop("unready_to_slice", "remove", Ev.POD_UNREADY, Ev.SLICE_UNREADY, False,
        "EndpointSlice controller: unready → slice"),
    Hop("slice_to_sync", "remove", Ev.SLICE_UNREADY, Ev.PROXY_SYNC, True,
        "kube-proxy: slice → sync done"),
    Hop("sync_to_rule", "remove", Ev.PROXY_SYNC, Ev.RULE_ABSENT, True,
        "dataplane: sync → rule gone"),
    Hop("unready_to_rule_gone", "remove", Ev.POD_UNREADY, Ev.RULE_ABSENT, True,
        "end to end: unready → rule gone"),
    Hop("unready_to_last", "remove", Ev.POD_UNREADY, Ev.LAST_SUCCESS, True,
        "unready → last answer from the pod"),
    Hop("blackhole", "remove", Ev.FAIL_FIRST, Ev.FAIL_LAST, True,
        "black-hole window: first → last failed request"),
    # restart: recorded on the restarted node only (timeline.ONLY_ON)
    Hop("kill_to_start", "restart", Ev.PROXY_KILLED, Ev.PROXY_STARTED, True,
        "restart: kill → rules cleaned, process started"),
    Hop("start_to_sync", "restart", Ev.PROXY_STARTED, Ev.PROXY_SYNC, True,
        "kube-proxy: start → first full sync done"),
    Hop("sync_to_rule", "restart", Ev.PROXY_SYNC, Ev.RULE_PRESENT, True,
        "dataplane: sync → rule present"),
    Hop("rule_to_traffic", "restart", Ev.RULE_PRESENT, Ev.FIRST_SUCCESS, True,
        "prober: rule → first answer"),
    Hop("kill_to_rule", "restart", Ev.PROXY_KILLED, Ev.RULE_PRESENT, True,
        "restart: kill → rule present again"),
    Hop("kill_to_traffic", "restart", Ev.PROXY_KILLED, Ev.FIRST_SUCCESS, True,
        "end to end: kube-proxy killed → first answer"),
    # the mesh path, for the trials of a run with --mesh (timeline.PATH_MARKER)
    Hop("slice_to_mesh", "add", Ev.SLICE_READY, Ev.MESH_SLICE_SEEN, False,
        "mesh control plane: slice → handled", "mesh"),
    Hop("mesh_debounce", "add", Ev.MESH_SLICE_SEEN, Ev.MESH_PUSH, False,
        "mesh control plane: handled → push (debounce)", "mesh"),
    Hop("push_to_sent", "add", Ev.MESH_PUSH, Ev.EDS_SENT, True,
        "mesh control plane: push → EDS sent", "mesh"),
    Hop("slice_to_push", "add", Ev.SLICE_READY, Ev.EDS_SENT, True,
        "mesh: slice → EDS sent", "mesh"),
    Hop("push_to_eds", "add", Ev.EDS_SENT, Ev.EDS_RECEIVED, True,
        "xDS: EDS sent → received", "mesh"),
    Hop("eds_to_lb", "add", Ev.EDS_RECEIVED, Ev.LB_UPDATE, True,
        "gRPC client: EDS → balancer has the pod", "mesh"),
    Hop("lb_to_picker", "add", Ev.LB_UPDATE, Ev.PICKER_READY, True,
        "gRPC client: balancer → connected picker", "mesh"),
    Hop("eds_to_mesh_traffic", "add", Ev.EDS_RECEIVED, Ev.MESH_FIRST, True,
        "gRPC client: EDS → first RPC answered", "mesh"),
    Hop("ready_to_mesh_traffic", "add", Ev.POD_READY, Ev.MESH_FIRST, True,
        "mesh end to end: Ready → first RPC answered", "mesh"),
    Hop("slice_to_mesh", "remove", Ev.SLICE_UNREADY, Ev.MESH_SLICE_SEEN, False,
        "mesh control plane: slice → handled", "mesh"),
    Hop("mesh_debounce", "remove", Ev.MESH_SLICE_SEEN, Ev.MESH_PUSH, False,
        "mesh control plane: handled → push (debounce)", "mesh"),
    Hop("push_to_sent", "remove", Ev.MESH_PUSH, Ev.EDS_SENT, True,
        "mesh control plane: push → EDS sent", "mesh"),
    Hop("slice_to_push", "remove", Ev.SLICE_UNREADY, Ev.EDS_SENT, True,
        "mesh: slice → EDS sent", "mesh"),
    Hop("push_to_eds", "remove", Ev.EDS_SENT, Ev.EDS_RECEIVED, True,
        "xDS: EDS sent → received", "mesh"),
    Hop("eds_to_lb", "remove", Ev.EDS_RECEIVED, Ev.LB_UPDATE, True,
        "gRPC client: EDS → balancer dropped the pod", "mesh"),
    Hop("unready_to_lb_gone", "remove", Ev.POD_UNREADY, Ev.LB_UPDATE, True,
        "mesh end to end: unready → balancer dropped the pod", "mesh"),
    Hop("unready_to_mesh_last", "remove", Ev.POD_UNREADY, Ev.MESH_LAST, True,
        "unready → last RPC answered by the pod", "mesh"),
    Hop("mesh_blackhole", "remove", Ev.MESH_FAIL_FIRST, Ev.MESH_FAIL_LAST, True,
        "mesh failure window: first → last failed RPC", "mesh"),
)

END_TO_END = {"add": "ready_to_traffic", "remove": "unready_to_rule_gone",
              "restart": "kill_to_traffic"}
#: the mesh path's end-to-end hops, compared with END_TO_END's on the same trials
MESH_END_TO_END = {"add": "ready_to_mesh_traffic", "remove": "unready_to_lb_gone"}
#: a hop of a path other than kube-proxy's is derived only for the trials carrying its
#: marker event (a run without a mesh has no mesh rows, not censored ones)
PATH_MARKER = {"mesh": Ev.MESH_PATH}
#: events only some runs can record: a hop from or to one is derived only for the trials
#: carrying the marker (a kubeconfig run does not read the cluster's istiod log: its mesh
#: hops are the client's, without control-plane rows rather than with censored ones)
NEEDS_MARKER = {e: Ev.MESH_CONTROL for e in (Ev.MESH_SLICE_SEEN, Ev.MESH_PUSH, Ev.EDS_SENT)}
#: directions whose trial brings the pod's IP into the node's rules (rule_present,
#: first_success); the others take it out (rule_absent, last_success)
ADDING = frozenset({"add", "restart"})


class EventRow(TypedDict):
    """One raw observation. Sources produce these and nothing else."""

    run_id: str
    trial: int          # -1 for run-level events
    service: str
    scenario: str
    proxy_mode: str
    point: str          # sweep point label (bench.results.point); "" = no background
    direction: str      # "add" | "remove" | "restart" | "" for run-level
    node: str           # CLUSTER for cluster-level events
    event: str
    t_ns: int           # on `clock`
    clock: str          # "harness" (also a node on the harness's kernel) | "node:<name>"
    offset_ns: int      # add to t_ns to get the harness clock
    uncertainty_ns: int  # of the offset
    resolution_ns: int  # how coarse t_ns can be
    source: str         # "harness" | "api-watch" | "audit" | "agent-rules" | ...
    pod: str
    pod_ip: str
    value: float        # e.g. failure count on FAIL_LAST; NaN otherwise
    detail: str         # JSON text, free-form


class HopRow(TypedDict):
    """One derived latency: trial x node x hop."""

    run_id: str
    trial: int
    service: str
    scenario: str
    proxy_mode: str
    point: str          # sweep point label, as in EventRow
    direction: str
    node: str           # ALL_NODES for the max-over-nodes row
    hop: str
    start_event: str
    end_event: str
    latency_ms: float   # signed; NaN when censored
    censored: bool
    censor_reason: str
    flag: str           # "" | "negative" | ... never clamped
    resolution_ms: float
    value: float        # e.g. failure count for the black-hole hop; NaN otherwise


EVENT_COLUMNS = list(EventRow.__annotations__)
HOP_COLUMNS = list(HopRow.__annotations__)

# pandas dtypes of the two tables, derived from the row types so they cannot drift
_PANDAS_DTYPE = {int: "int64", float: "float64", bool: "bool", str: "str"}


def _dtypes(row: type) -> dict[str, str]:
    return {name: _PANDAS_DTYPE[kind] for name, kind in get_type_hints(row).items()}


EVENT_DTYPES = _dtypes(EventRow)
HOP_DTYPES = _dtypes(HopRow)


@dataclass(frozen=True)
class Instruments:
    """A mode's checks of its own instruments, read from run.json `modes[mode]`; whatever
    an older run.json lacks stays empty. Per-node values are keyed by node name."""

    proxy_mode: str
    trials_per_minute: float | None
    trials: int | None
    elapsed_s: float
    segments: int                          # 1, or how many runs --resume made of it
    agent_cpu: dict[str, float]            # fraction of one core
    fine_share: dict[str, float]           # fraction of elapsed_s at the fine interval
    early_rule_changes: dict[str, int]     # rules that changed while a focus waited
    agent_errors: dict[str, int]
    rule_method: str
    rule_resolution_ns: int | None
    probe_interval_ns: int | None
    probe_idle_interval_ns: int | None
    watch_delay_ms: dict[str, float]


def instruments(mode: str, m: ModeBlock) -> Instruments:
    """A mode's instruments from its run.json block, the whole run's (bench.results.modeblock)."""
    agents: dict[str, dict[str, Any]] = (m.get("resolution") or {}).get("agents") or {}
    elapsed = float(m.get("elapsed_s") or 0)
    first = next(iter(agents.values()), {})
    return Instruments(
        proxy_mode=mode, trials_per_minute=m.get("trials_per_minute"), trials=m.get("trials"),
        elapsed_s=elapsed, segments=len(m.get("segments") or []) or 1,
        agent_cpu={n: float(v) for n, v in (m.get("agent_cpu_fraction") or {}).items()},
        fine_share={n: float(a["probe_focused_s"] or 0) / elapsed for n, a in agents.items()
                    if "probe_focused_s" in a and elapsed},
        early_rule_changes={n: int(a["early_rule_changes"]) for n, a in agents.items()
                            if "early_rule_changes" in a},
        agent_errors={n: int(v) for n, v in (m.get("agent_errors") or {}).items()},
        rule_method=str(first.get("rule_method") or ""),
        rule_resolution_ns=first.get("rule_resolution_ns"),
        probe_interval_ns=first.get("probe_interval_ns"),
        probe_idle_interval_ns=first.get("probe_idle_interval_ns"),
        watch_delay_ms=dict(m.get("watch_delay_ms") or {}),
    )
