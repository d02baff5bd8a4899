"""What an agent pod's status says, in one line: why it cannot run, or where it is stuck.

Pure functions on the pod as the API server returns it, kept apart from the deploy loop
so each verdict is tested with hand-written pods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IMAGE_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull",
                          "InvalidImageName", "ImageInspectError"})
# CreateContainerConfigError is left out: "failed to sync secret cache" is transient (the
# kubelet may read the token Secret only once the Node authorizer saw the pod bound);
# if it persists, the ready timeout reports the pod's state
START_ERRORS = frozenset({"CrashLoopBackOff", "CreateContainerError", "RunContainerError"})
RESTARTS_BROKEN = 2  # restarts after which an agent "keeps exiting"


@dataclass(frozen=True)
class Problem:
    """A container that will not come up by waiting: its image, or it keeps exiting."""

    image: bool      # True: the image cannot be used; False: the agent keeps exiting
    reason: str      # the waiting reason, e.g. ErrImageNeverPull, CrashLoopBackOff
    message: str     # the kubelet's message for it ("" when none)


def problem(pod: dict[str, Any]) -> Problem | None:
    """The first container of `pod` that is broken for good, else None."""
    for cs in pod.get("status", {}).get("containerStatuses", []):
        waiting = cs.get("state", {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        message = waiting.get("message", "")
        if reason in IMAGE_ERRORS:
            return Problem(True, reason, message)
        if reason in START_ERRORS or cs.get("restartCount", 0) >= RESTARTS_BROKEN:
            return Problem(False, reason, message)
    return None


def image_error(image: str, node: str, p: Problem) -> str:
    return (f"agent image {image} cannot be used on node {node}: "
            f"{p.reason} ({short(p.message)}); build it with "
            "`python -m bench.build.agentimage` (or workloads/agent/Dockerfile), "
            "load it (`hopbench cluster load-image NAME ARCHIVE`) or push it, and "
            "pass --agent-image REF")


def exit_error(node: str, port: int, log: str, p: Problem) -> str:
    """The agent keeps exiting: its last log line, and the port hint when it is taken."""
    last = short(([ln for ln in log.splitlines() if ln.strip()] or [""])[-1]
                 or p.message or p.reason)
    hint = f" (port {port} is taken on that node)" if "Address already in use" in log else ""
    return f"the agent on node {node} keeps exiting{hint}: {last}"


def pod_state(pod: dict[str, Any] | None) -> str:
    """Where a pod that is not Ready is stuck."""
    if pod is None:
        return "no agent pod"
    status = pod.get("status", {})
    for cs in status.get("containerStatuses", []):
        for state, detail in cs.get("state", {}).items():
            if state != "running":
                return f"{state} {detail.get('reason', '')} {short(detail.get('message', ''))}"
    for c in status.get("conditions", []):
        if c.get("status") != "True" and c.get("message"):
            return f"{c['type']}: {short(c['message'])}"
    return str(status.get("phase", "unknown"))


def short(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 1] + "…"
