"""`crash` (a removal, then an add): the pod's container exits and the kubelet restarts it.

The removal ends early if the restarted container is Ready again before the IP has left
every node's rules (recorded as censored, with that reason).
"""

from __future__ import annotations

from kubernetes import client

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
        lane.core.connect_get_namespaced_pod_proxy_with_path(
            f"{pod}:8080", lane.namespace, "exit", _request_timeout=5)
    except Exception:  # noqa: BLE001 - the connection dies with the process, as intended
        pass


def _restarts(lane: Lane, pod: str) -> int:
    try:
        st = lane.core.read_namespaced_pod(pod, lane.namespace).status
    except client.ApiException:
        return 0
    return sum(int(c.restart_count) for c in (st.container_statuses if st else None) or [])


def _ready_again(lane: Lane, pod: str, restarts_before: int) -> bool:
    try:
        obj = lane.core.read_namespaced_pod(pod, lane.namespace)
    except client.ApiException:
        return False
    st = obj.status
    if st is None:
        return False
    restarted = sum(int(c.restart_count) for c in st.container_statuses or []) > restarts_before
    return restarted and is_ready(obj)


register(Crash())
