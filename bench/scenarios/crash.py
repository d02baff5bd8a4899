"""`crash` (a removal, then an add): the pod's container exits and the kubelet restarts it.

The removal ends early if the restarted container is Ready again before the IP has left
every node's rules (recorded as censored, with that reason).
"""

from __future__ import annotations

from typing import Any

from bench.errors import ClusterError
from bench.ready import is_ready
from bench.scenarios.lane import Cycle, Lane
from bench.scenarios.registry import register
from bench.scenarios.roundtrip import Abort, RoundTrip


class Crash(RoundTrip):
    name = "crash"
    order = 20
    after_sync = False  # requests fail from the exit on, not from kube-proxy's next sync

    def take_away(self, cycle: Cycle) -> tuple[str, Abort | None]:
        lane, pod = cycle.lane, cycle.pod
        _exit(lane, pod)
        restarts = _restarts(lane, pod)

        def abort() -> str:
            return ("container restarted and was Ready again before the IP left the rules"
                    if _ready_again(lane, pod, restarts) else "")

        return "container exit (agnhost /exit)", abort

    def bring_back(self, cycle: Cycle, t_removed: int) -> tuple[int, str]:
        # the kubelet restarts the container: the trigger was the crash
        return t_removed, "container exit; kubelet restarts it"


def _exit(lane: Lane, pod: str) -> None:
    try:
        lane.api.request("GET", f"{lane.pods}/{pod}:8080/proxy/exit", timeout=5)
    except ClusterError:  # the connection dies with the process, as intended
        pass


def _restart_count(pod: dict[str, Any]) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(c.get("restartCount", 0)) for c in statuses)


def _restarts(lane: Lane, pod: str) -> int:
    return _restart_count(lane.read_pod(pod))


def _ready_again(lane: Lane, pod: str, restarts_before: int) -> bool:
    st = lane.read_pod(pod)
    return _restart_count(st) > restarts_before and is_ready(st)


register(Crash())
