"""The background of a sweep point, as the runner drives it: fill, wait, churn, remove.

The runner (bench.runner) runs the points of a sweep in ascending order of background
Services and the kube-proxy modes inside each; this module is the one place it touches the
background population (bench.background): `ensure` brings the population to the point's
size (objects reused from the previous point), `programmed` waits after a mode switch until
every node's rules hold all of them (the mode's `program_s`), `churner` makes the point's
churn, `close` removes every background object at the end of the run (after Ctrl-C and
errors too). A point without background Services touches nothing, so a run without a
sweep never loads bench.background.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench.providers.base import Provider
from bench.results.modeblock import ModeBlock
from bench.results.point import Point

FillProgress = Callable[[str, int, int], None]  # (point label, objects done, total)
PROGRAM_TIMEOUT_S = 1800.0  # nftables full syncs of 13-16 min at scale are reported upstream
REMOVE_WAIT_S = 300.0
#: program_from of an exact program_s (the local provider's switch stamps)
FROM_SPAWN = "kube-proxy spawn -> first sync end (its metrics)"


class Background:
    """The run's background population, created on the first point that needs one."""

    def __init__(self, provider: Provider, run_id: str, needed: bool,
                 say: Callable[[str], None], on_fill: FillProgress) -> None:
        self.provider, self.run_id, self.say, self.on_fill = provider, run_id, say, on_fill
        self.needed = needed  # some point of the run has background Services
        self.population: Any = None
        self.label = ""

    def _pop(self) -> Any:
        if self.population is None:
            from bench.background import populate  # lazily: a run without a sweep
            self.population = populate.Population(
                self.provider.kube(), self.run_id,
                on_progress=lambda done, total: self.on_fill(self.label, done, total))
        return self.population

    @property
    def namespace(self) -> str:
        return str(self._pop().namespace) if self.needed else ""

    def ensure(self, point: Point) -> dict[str, Any] | None:
        """Bring the population to the point's size; its `fill` record, or None (nothing
        to do: no background at this point and none made before)."""
        if not point.services and self.population is None:
            return None
        self.label = point.label
        pause = getattr(self.provider, "stop_kube_proxy", None)
        if pause is not None and point.services != self._pop().services:
            pause()  # every mode restarts it from nothing after the fill
        fill = dict(self._pop().ensure(point.services, point.endpoints))
        self.say(f"{point.label}: background of {point.services} Services x "
                 f"{point.endpoints} endpoints ready ({fill.get('created', 0)} created, "
                 f"{fill.get('deleted', 0)} deleted in {float(fill.get('seconds', 0)):.1f}s,"
                 f" {float(fill.get('objects_per_s', 0)):.0f} objects/s)")
        return fill

    def programmed(self, agents: Any, point: Point, since: float, since_what: str,
                   switch: dict[str, Any] | None = None) -> ModeBlock:
        """Wait until every node routes the point's background Services; the mode block's
        `program_s`, `program_from`, `program_upper_bound`, `rules` and `bg_routed`. Empty
        at a point without background.

        With the provider's `switch` stamps (the local cluster restarts kube-proxy at each
        mode), `program_s` is exact: from the new kube-proxy's spawn to the end of its first
        sync on the slowest node (kube-proxy's own last-sync metric, read while that sync
        was its only one). Without them it counts from `since` (a time.monotonic() value)
        to the agents' first complete look: an upper bound."""
        if not point.services:
            return ModeBlock()
        from bench.background import wait
        got = wait.wait_programmed(agents, self.namespace, point.services, PROGRAM_TIMEOUT_S)
        waited = round(time.monotonic() - since, 3)
        block = ModeBlock(program_s=waited, program_from=since_what,
                          program_upper_bound=got.polls == 1,
                          rules=dict(got.rules), bg_routed=dict(got.routed))
        exact = program_from_switch(switch or {})
        if exact is not None:
            block["program_s"], block["program_upper_bound"] = exact[0], not exact[1]
            block["program_from"] = FROM_SPAWN
            block["program_seen_s"] = waited
        return block

    def churner(self, point: Point) -> Any:
        """The point's churner (not started), or None without churn."""
        if not point.services or point.churn_per_s <= 0:
            return None
        from bench.background import churn
        return churn.Churner(self.provider.kube(), self._pop(), point.churn_per_s)

    def close(self) -> None:
        """Remove every background object of the run (also after Ctrl-C and errors)."""
        if not self.needed:
            return
        try:
            removed = int(self._pop().remove_all(REMOVE_WAIT_S))
        except Exception as exc:  # noqa: BLE001 - say what is left, never mask the run's error
            self.say(f"background: could not remove the background objects ({exc}); "
                     f"delete the namespace hopbench-bg-{self.run_id[:6]} by hand")
            return
        self.say(f"background: removed {removed} objects")


def program_from(provider_name: str) -> str:
    """What a mode's `program_s` counts from: the local cluster restarts kube-proxy at each
    mode switch, so it programs every Service from nothing; on a cluster reached through a
    kubeconfig kube-proxy keeps running and programs the Services as they are created."""
    return "creation" if provider_name == "kubeconfig" else "kube-proxy start"


def fitted_timeout(trial_timeout_s: float, program_s: float | None) -> float:
    """A change's trial timeout at a point where kube-proxy's syncs are long: the change may
    wait out the sync in progress and then its own, each at most a sync from nothing
    (`program_s`), plus 10 s for the pod, the slice and the first answer; never below
    --trial-timeout (10,000 Services in nftables mode: partial syncs of 16-30 s, so 30 s
    censored a quarter of the adds)."""
    if program_s is None:
        return trial_timeout_s
    return max(trial_timeout_s, round(2 * program_s + 10, 1))


def program_from_switch(switch: dict[str, Any]) -> tuple[float, bool] | None:
    """(seconds from kube-proxy's spawn to its first sync's end on the slowest node, whether
    every node's stamp was its first sync's), or None without those stamps."""
    firsts: dict[str, float] = dict(switch.get("first_sync_s") or {})
    started = switch.get("started_ns")
    if not firsts or not started or min(firsts.values()) <= 0:
        return None
    exact = all(dict(switch.get("first_sync_exact") or {}).get(n, False) for n in firsts)
    return round(max(firsts.values()) - int(started) / 1e9, 3), exact
