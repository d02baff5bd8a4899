"""One kube-proxy mode of a run: switch kube-proxy, start the sources and the lanes, run
the cycles, and write the mode's block of run.json, the whole run's after a --resume.

The runner (bench.runner) calls the steps in order; each step is one method here, and
the latency arithmetic they record lives in bench.latency (pure)."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bench import proxycollect, workloads
from bench.errors import ClusterError
from bench.latency import watch_delay
from bench.providers.base import Provider
from bench.results.modeblock import ModeBlock, accumulate, rate
from bench.results.point import Point
from bench.results.schema import Ev, EventRow
from bench.results.store import RunStore, load_events
from bench.scenarios import Lane
from bench.sources import registry as sources
from bench.sources.agents import AgentStore
from bench.sources.apiwatch import WATCH_RESOLUTION_NS, ApiWatch
from bench.sources.base import Registry, TrialRef, row
from bench.sweep import fitted_timeout

if TYPE_CHECKING:
    from bench.runner import OnProgress, Progress, RunConfig

FLUSH_EVERY_S = 60.0  # parquet snapshots; the journal is written every trial
CHECKPOINT_EVERY_S = 5.0  # run.json's block of the mode so far (its trials, elapsed time)


class ModeRun:
    def __init__(self, provider: Provider, store: RunStore, cfg: RunConfig, run_id: str,
                 mode: str, progress: Progress, say: Callable[[str], None],
                 on_progress: OnProgress, point: Point | None = None, top: bool = True
                 ) -> None:
        self.provider, self.store, self.cfg, self.run_id, self.mode = (
            provider, store, cfg, run_id, mode)
        self.point = point or Point()  # the sweep point (bench.sweep): its label on every row
        self.label, self.top = self.point.label, top  # top: run.json's `modes` is this point's
        self.extra = ModeBlock()  # keys the runner adds to the block (program_s, ...)
        self.churner: Any = None  # the point's background churn (bench.sweep), if any
        self.progress, self.say, self.on_progress = progress, say, on_progress
        self.sc = cfg.scenario
        self.lock = threading.Lock()
        self.pending: list[EventRow] = []
        self.lanes: list[Lane] = []
        self.todo: list[int] = []
        self.switch_s = 0.0
        self.started = self.last_flush = self.last_checkpoint = time.monotonic()
        self.before = mode_block(store.meta, self.label, mode)  # earlier segments (--resume)
        self.seg_trials = 0  # trials this segment recorded; none once its block is final
        self.ns = cfg.namespace or f"hopbench-{run_id[:6]}-{mode[:3]}" + (
            f"-bg{self.point.services}" if self.point.services else "")
        self.api: Any = None
        self.opened: sources.Opened | None = None  # every registered source that applies
        self.agents: AgentStore | None = None  # two of them the lanes and the block use
        self.watch: ApiWatch | None = None
        self.stats: proxycollect.ModeStats | None = None  # kube-proxy, connect times, RSS

    # --- steps, in order -----------------------------------------------------------------
    def recorded(self, t: int) -> frozenset[str]:
        done = self.store.complete_trials
        return frozenset(n for n in self.sc.scenarios if (self.label, self.mode, n, t) in done)

    def plan(self) -> bool:
        """The cycles still to run (all, or those a --resume lacks); False if none."""
        self.todo = [t for t in range(self.sc.trials)
                     if len(self.recorded(t)) < len(self.sc.selected(t))]
        self.progress.mode = self.mode
        self.progress.done += self.sc.trials_per_mode - self.sc.transitions_in(self.todo)
        if not self.todo:
            self.say(f"{self.mode}: all {self.sc.trials} trials already recorded")
        return bool(self.todo)

    def switch(self) -> None:
        t = time.monotonic()
        self.provider.set_proxy_mode(self.mode)
        self.switch_s = time.monotonic() - t
        self.say(f"{self.mode}: kube-proxy ready ({self.switch_s:.1f}s); {len(self.todo)} "
                 f"cycles ({self.sc.transitions_in(self.todo)} trials) to run")

    def fit_timeout(self, program_s: float | None) -> None:
        """Raise the trial timeout to this point's syncs (bench.sweep.fitted_timeout), before
        the lanes and the agents' budget are made from it."""
        fitted = fitted_timeout(self.sc.trial_timeout_s, program_s)
        if fitted > self.sc.trial_timeout_s:
            self.say(f"{self.mode}: trial timeout {fitted:.0f}s at this point (kube-proxy "
                     f"programmed it from nothing in {program_s:.0f}s)")
            self.sc = replace(self.sc, trial_timeout_s=fitted)
            self.extra["trial_timeout_s"] = fitted

    def start(self) -> None:
        """Namespace, the sources (bench.sources.registry), lanes with their baseline pods;
        arm the agents."""
        self.api = self.provider.kube()
        if self.cfg.resume and not self.cfg.namespace:  # a killed segment left it behind
            workloads.delete_namespace(self.api, self.ns, wait=120)
        workloads.ensure_namespace(self.api, self.ns)
        registry = Registry()
        token = secrets.token_hex(16)
        churn: dict[str, Any] = {"churner": self.churner} if self.churner is not None else {}
        self.opened = sources.open_all(sources.SourceContext(
            provider=self.provider, namespace=self.ns, trials=registry, sink=self.sink,
            token=token, probe_interval_ms=self.sc.probe_interval_ms, **churn))
        self.agents = self.opened.of(AgentStore)
        self.watch = self.opened.of(ApiWatch)
        self.started = time.monotonic()
        self.opened.start()
        tag = str(self.store.meta.get("kubernetes_version", "latest"))  # provenance
        image = self.cfg.target_image or workloads.target_image(tag)
        mesh = getattr(self.provider, "mesh", lambda: None)()  # optional Provider method
        self.lanes = [Lane(api=self.api, namespace=self.ns, service=f"svc{k}", image=image,
                           agents=self.agents, registry=registry, run_id=self.run_id,
                           mode=self.mode, cfg=self.sc, on_trial=self.on_trial,
                           point=self.label, provider=self.provider,
                           on_proxy_restart=self._proxy_restarting, mesh=bool(mesh))
                      for k in range(self.sc.parallel)]
        targets = [{"name": ln.service, "ip": ln.setup(), "port": 80} for ln in self.lanes]
        if mesh:  # the mesh clients call the same Services through xDS
            for t in targets:
                t["mesh"] = {"host": f"{t['name']}.{self.ns}.svc.cluster.local",
                             "port": workloads.GRPC_PORT}
            self.extra["mesh"] = mesh["name"]
        for ln in self.lanes:
            ln.wait_base()
        if not self.watch.synced.wait(30):
            raise ClusterError("the API watch did not start within 30s")
        self.sli_before = self.agents.kube_proxy_metrics()
        self.stats = proxycollect.ModeStats(self.provider, self.agents, self.sli_before)
        self._arm(targets)

    def _proxy_restarting(self, node: str) -> None:
        if self.stats is not None:
            self.stats.cut(node)

    def _arm(self, targets: list[dict[str, Any]]) -> None:
        sc, budget = self.sc, self.sc.budget_s(self.todo)
        assert self.agents is not None
        self.agents.arm(targets, sc.probe_interval_ms,
                        max_seconds=budget + len(self.todo) * 5 + 60,
                        max_requests=int(budget * 1000 / sc.probe_interval_ms) + 10_000,
                        idle_interval_ms=sc.probe_idle_interval_ms, mesh_namespace=self.ns)
        time.sleep(0.5)  # the baseline answers before the first trial starts

    def run_lanes(self) -> None:
        """Every lane its share of the cycles, in parallel, then the solo cycles (a
        kube-proxy restart) alone on the first lane; Ctrl-C finishes the cycles in flight
        and starts no other."""
        assigned = self.sc.lane_cycles()
        stop = threading.Event()

        def lane_work(k: int) -> None:
            for t in assigned[k]:
                if stop.is_set():
                    return
                if t in self.todo:
                    self.lanes[k].run_cycle(t, done=self.recorded(t))

        pool = ThreadPoolExecutor(max_workers=self.sc.parallel)
        try:
            for f in [pool.submit(lane_work, k) for k in range(self.sc.parallel)]:
                f.result()
            for t in self.sc.solo_cycles():
                if t in self.todo:
                    self.lanes[0].run_cycle(t, done=self.recorded(t))
        except BaseException as exc:
            stop.set()
            if isinstance(exc, KeyboardInterrupt):
                self.say("Ctrl-C: finishing the cycle in flight, then removing what this run "
                         "created (the run directory stays valid)")
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()

    def finish(self) -> None:
        """Last events in, parquet flushed, the mode's block written (whole run)."""
        assert self.agents is not None and self.watch is not None
        elapsed = time.monotonic() - self.started
        sli_after = self.agents.kube_proxy_metrics()
        self.agents.collect_once()
        with self.lock:
            if self.pending:
                self.store.append_events(self.pending[:])
                self.pending.clear()
        self.store.flush()
        block = self._block(elapsed, sli_after)
        self.seg_trials = 0
        whole = record_mode(self.store, self.mode, self.before, block, self.label, self.top)
        cpu = block["agent_cpu_fraction"]
        mesh_cpu = block.get("mesh_client_cpu_fraction") or {}
        self.say(f"{self.mode}: {block['trials']} trials in {elapsed:.0f}s "
                 f"({block['trials_per_minute']}/min), agent CPU "
                 + ", ".join(f"{n} {c * 100:.1f}%" for n, c in cpu.items())
                 + ("; mesh client CPU " + ", ".join(f"{n} {c * 100:.1f}%"
                                                   for n, c in mesh_cpu.items())
                    if mesh_cpu else ""))
        for line in proxycollect.lines(block, elapsed):
            self.say(line)
        if len(whole["segments"]) > 1:
            self.say(f"{self.mode}, whole run ({len(whole['segments'])} segments): "
                     f"{whole['trials']} trials in {whole['elapsed_s']:.0f}s "
                     f"({whole['trials_per_minute']}/min)")

    def _block(self, elapsed: float, sli_after: dict[str, str]) -> ModeBlock:
        assert self.agents is not None and self.watch is not None
        agents, n = self.agents, self.sc.transitions_in(self.todo)
        block = ModeBlock({
            "watch_delay_ms": watch_delay(load_events(self.store.path), self.mode,
                                          self.label),
            "resolution": {"api_watch_ns": WATCH_RESOLUTION_NS, "audit_ns": 1_000,
                           "agents": agents.resolutions()},
            "clock_offsets": agents.offsets(),
            "agent_cpu_fraction": {node: agents.cpu_fraction(node) for node in agents.nodes},
            "trials": n, "elapsed_s": round(elapsed, 1),
            "trials_per_minute": round(n / elapsed * 60, 1),
            "proxy_switch_s": round(self.switch_s, 2),
            "watch_restarts": self.watch.restarts, "agent_errors": dict(agents.errors),
        })
        mesh_cpu = {node: agents.cpu_fraction(node, mesh=True) for node in agents.nodes}
        if any(c == c for c in mesh_cpu.values()):  # NaN where no mesh client ran
            block["mesh_client_cpu_fraction"] = mesh_cpu
        if self.stats is not None:
            block.update(self.stats.block(sli_after))
        kpc = getattr(self.provider, "kube_proxy_config", None)
        if kpc:
            block["kube_proxy_config"] = kpc()
        block.update(self.extra)
        return block

    def close(self) -> None:
        """Record what an interrupted segment did, then remove what this mode created."""
        try:
            with self.lock:
                self.checkpoint()
        except Exception as exc:  # noqa: BLE001 - the cleanup below must run; trials are in the journal
            self.say(f"{self.mode}: could not record this segment in run.json ({exc})")
        if self.agents is not None:
            self.agents.disarm()
        if self.opened is not None:
            self.opened.stop()
        self.provider.stop_agents()
        if self.api is not None:
            try:
                workloads.delete_namespace(self.api, self.ns, wait=30)
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass

    # --- callbacks from the sources and the lanes ----------------------------------------
    def sink(self, r: EventRow) -> None:
        for ln in self.lanes:  # a lane focuses the probers on its pod's Ready
            if ln.service == r["service"]:
                ln.on_watch_row(r)
        if r["scenario"] not in self.sc.scenarios:  # setup or cleanup of a cycle
            return
        with self.lock:
            self.pending.append(r)

    def on_trial(self, ref: TrialRef, rows: list[EventRow]) -> None:
        with self.lock:
            batch = self.pending[:] + rows
            self.pending.clear()
            if self.opened is not None:
                batch += self.opened.events_for(ref, batch)
            batch.append(row(ref, Ev.TRIAL_END, time.time_ns(), source="harness"))
            self.store.append_events(batch)
            self.seg_trials += 1
            self._periodic()
            self.progress.done += 1
            self.progress.note(ref, batch)
        self.on_progress(self.progress)

    def _periodic(self) -> None:
        now = time.monotonic()
        if now - self.last_flush > FLUSH_EVERY_S:
            self.store.flush()
            self.last_flush = now
        if now - self.last_checkpoint > CHECKPOINT_EVERY_S:
            self.checkpoint()
            self.last_checkpoint = now

    def checkpoint(self) -> None:
        """This segment's block so far, so an interrupted or killed segment still counts."""
        if self.seg_trials:
            elapsed = time.monotonic() - self.started
            record_mode(self.store, self.mode, self.before, ModeBlock(
                trials=self.seg_trials, elapsed_s=round(elapsed, 1),
                trials_per_minute=rate(self.seg_trials, elapsed),
                proxy_switch_s=round(self.switch_s, 2), **self.extra), self.label, self.top)


def record_mode(store: RunStore, mode: str, before: ModeBlock | None, segment: ModeBlock,
                point: str = "", top: bool = True) -> ModeBlock:
    """Write run.json's block of `mode`, the whole run's: this segment of its trials added
    to what earlier segments (`before`, as run.json held it when this segment began)
    recorded. Returns the block written. With a `point` label it goes to
    `points[point]["modes"]` too; `top`: to the top-level `modes` (the first point's)."""
    whole = accumulate(before, segment)
    meta, update = store.meta, {}
    if top:
        update["modes"] = {**meta.get("modes", {}), mode: whole}
        update["sli"] = {**meta.get("sli", {}), mode: whole.get("sli", {})}  # analysis reads it
    if point:
        points = meta.get("points", {})
        here = points.get(point, {})
        update["points"] = {**points, point: {**here, "modes": {**here.get("modes", {}),
                                                                mode: whole}}}
    store.update_meta(update)
    return whole


def mode_block(meta: dict[str, Any], point: str, mode: str) -> ModeBlock | None:
    """The block run.json holds for `mode` at `point` (the sweep's, else the top-level)."""
    at = ((meta.get("points") or {}).get(point) or {}).get("modes") or {}
    return at.get(mode) if at or point else (meta.get("modes") or {}).get(mode)
