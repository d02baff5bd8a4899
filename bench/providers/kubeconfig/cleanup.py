"""Remove everything a kubeconfig run created: the agents' DaemonSet and Secret, the
agent namespace when the run created it, and the runner's per-mode trial namespaces
that appeared while the run was open (the runner deletes them itself; this catches an
interrupted cleanup). Each step is tried even when one before it failed; a failure is
said as a warning, never raised.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from bench.kube import Kube, first_line
from bench.poll import WaitTimeout, wait_until
from bench.providers.kubeconfig.deploy import (
    AGENT_NAME,
    PART_OF,
    RUN_NAMESPACE,
    AgentOptions,
    Footprint,
    agent_pods,
)

Say = Callable[[str], None]
DELETE_WAIT_S = 90.0
#: what a signal during cleanup says (both steps may wait DELETE_WAIT_S)
BUSY = f"hopbench: removing the agents and namespaces first (at most {2 * DELETE_WAIT_S:.0f}s)"


def remove_all(api: Kube, options: AgentOptions, footprint: Footprint, say: Say) -> None:
    """The agents, then the namespaces; keep cleaning past a failed step, then tell."""
    steps: tuple[Callable[[], None], ...] = (
        lambda: remove_agents(api, options, footprint),
        lambda: delete_namespaces(api, options, footprint, say))
    for step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - keep cleaning, then tell
            say(f"warning: cleanup step failed: {first_line(exc)}")


def remove_agents(api: Kube, options: AgentOptions, footprint: Footprint) -> None:
    """Delete the DaemonSet and its Secret; wait until the agent pods are gone, so the
    node port is free again."""
    ns = options.namespace
    if not footprint.namespace_created:
        return
    api.delete(f"/apis/apps/v1/namespaces/{ns}/daemonsets/{AGENT_NAME}",
               propagationPolicy="Background")
    api.delete(f"/api/v1/namespaces/{ns}/secrets/{AGENT_NAME}-token")
    with contextlib.suppress(WaitTimeout):  # the next deploy says so if pods linger
        wait_until(lambda: not agent_pods(api, ns), DELETE_WAIT_S, 0.5, "agent pods to go")


def delete_namespaces(api: Kube, options: AgentOptions, footprint: Footprint,
                      say: Say) -> None:
    """The run's namespaces and, when ours, the agent's; wait until they are gone."""
    names = run_namespaces(api, footprint.namespaces_before)
    if footprint.namespace_created:
        names.append(options.namespace)
    for name in names:
        api.delete(f"/api/v1/namespaces/{name}")
    left = names

    def all_gone() -> bool:
        nonlocal left
        left = [n for n in left if api.get(f"/api/v1/namespaces/{n}") is not None]
        return not left

    with contextlib.suppress(WaitTimeout):  # said below
        wait_until(all_gone, DELETE_WAIT_S, 0.5, "namespaces to be deleted")
    if left:
        say(f"warning: namespaces still terminating after {DELETE_WAIT_S:.0f}s: "
            f"{', '.join(left)} (kubectl get namespace {' '.join(left)})")
    else:
        footprint.namespace_created = False


def run_namespaces(api: Kube, before: set[str]) -> list[str]:
    """The runner's trial namespaces that are there now and were not at the start."""
    listed = api.get("/api/v1/namespaces", labelSelector=PART_OF) or {}
    return sorted(i["metadata"]["name"] for i in listed.get("items", [])
                  if RUN_NAMESPACE.match(i["metadata"]["name"])
                  and i["metadata"]["name"] not in before)
