"""The main job: for each kube-proxy mode, run the trials and write the run directory.

provider -> scenario lanes drive the cluster -> sources record events -> the run store
journals them (and snapshots parquet) as the run goes -> timeline assembly -> summary.
"""

from __future__ import annotations

import math
import platform
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analysis.quantiles import quantiles, sample
from bench import __version__, prom, workloads
from bench.errors import ClusterError
from bench.latency import sli_delta, watch_delay
from bench.providers.base import Provider
from bench.results.schema import Ev, EventRow
from bench.results.store import RunStore, load_events
from bench.scenarios import Lane, ScenarioConfig, split_trials
from bench.sources import registry as sources
from bench.sources.agents import AgentStore
from bench.sources.apiwatch import WATCH_RESOLUTION_NS, ApiWatch
from bench.sources.base import Registry, TrialRef, row

FLUSH_EVERY_S = 60.0  # parquet snapshots; the journal is written every trial


@dataclass(frozen=True)
class RunConfig:
    modes: tuple[str, ...]
    scenario: ScenarioConfig
    out_dir: Path
    resume: bool = False
    namespace: str = ""
    target_image: str = ""  # agnhost image of the measured pods; "" = the locally built one


@dataclass
class Progress:
    """What the CLI shows live: done trials and end-to-end add latencies (ms)."""

    total: int
    done: int = 0
    mode: str = ""
    e2e_ms: list[float] = field(default_factory=list)
    censored: int = 0      # trials of either direction with a censored event
    e2e_censored: int = 0  # add trials among them: their end to end counts as +inf

    def note(self, ref: TrialRef, batch: list[EventRow]) -> None:
        """Display only: Ready -> slowest node's first answer (the stored hops come from
        bench.timeline, not from this)."""
        mine = [r for r in batch if r["trial"] == ref.trial and r["service"] == ref.service
                and r["direction"] == ref.direction]
        censored = any(r["event"] == Ev.CENSOR for r in mine)
        self.censored += censored
        if ref.direction != "add":
            return
        ready = [r["t_ns"] for r in mine if r["event"] == Ev.POD_READY]
        first = [r["t_ns"] + r["offset_ns"] for r in mine if r["event"] == Ev.FIRST_SUCCESS]
        if censored:
            self.e2e_censored += 1
        elif ready and first:
            self.e2e_ms.append((max(first) - ready[0]) / 1e6)

    def quantile(self, q: float) -> float:
        """analysis.quantiles' estimate over the add trials so far: +inf when it falls
        among censored trials, NaN before the first."""
        s = sample([*self.e2e_ms, *[math.inf] * self.e2e_censored])
        return float(quantiles(s, [q])[0])


OnProgress = Callable[[Progress], None]


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def default_out_dir() -> Path:
    return Path("results") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def run(provider: Provider, cfg: RunConfig, say: Callable[[str], None] = print,
        on_progress: OnProgress = lambda p: None) -> Path:
    run_id = uuid.uuid4().hex[:12]
    meta = {
        "run_id": run_id, "created_at": datetime.now(UTC).isoformat(),
        "harness_version": __version__, "git_commit": git_commit(),
        "proxy_modes": list(cfg.modes), "scenarios": list(cfg.scenario.scenarios),
        "scenario_config": asdict(cfg.scenario), "host_kernel": platform.release(),
        **provider.provenance(),
    }
    if cfg.resume:
        store = RunStore.open(cfg.out_dir)
        run_id = store.meta.get("run_id", run_id)
        say(f"resuming {cfg.out_dir}: {len(store.complete_trials)} trials already complete")
    else:
        store = RunStore.create(cfg.out_dir, meta)
    per_cycle = len(cfg.scenario.transitions)
    progress = Progress(total=len(cfg.modes) * cfg.scenario.trials * per_cycle)
    sys.setswitchinterval(0.0005)  # watch threads get the GIL back fast: stamps stay sharp
    try:
        for mode in cfg.modes:
            _run_mode(provider, store, cfg, run_id, mode, progress, say, on_progress)
        store.finish({"finished_ok": True})
    except KeyboardInterrupt:
        store.interrupt("interrupted by the user (Ctrl-C)")
        say(f"interrupted: {len(store.complete_trials)} trials recorded in {cfg.out_dir}; "
            f"continue with `hopbench run --resume {cfg.out_dir}`")
        raise
    except BaseException as exc:
        store.interrupt(f"{type(exc).__name__}: {exc}")
        raise
    return cfg.out_dir


def _run_mode(provider: Provider, store: RunStore, cfg: RunConfig, run_id: str, mode: str,
              progress: Progress, say: Callable[[str], None], on_progress: OnProgress) -> None:
    sc = cfg.scenario
    done = store.complete_trials
    per_cycle = len(sc.transitions)

    def recorded(t: int) -> frozenset[str]:
        return frozenset(name for name in sc.scenarios if (mode, name, t) in done)

    todo = [t for t in range(sc.trials) if len(recorded(t)) < len(sc.scenarios)]
    progress.mode = mode
    progress.done += per_cycle * (sc.trials - len(todo))
    if not todo:
        say(f"{mode}: all {sc.trials} trials already recorded")
        return
    t_switch = time.monotonic()
    provider.set_proxy_mode(mode)
    switch_s = time.monotonic() - t_switch
    say(f"{mode}: kube-proxy ready ({switch_s:.1f}s); {len(todo)} cycles of "
        f"{per_cycle} trials to run")
    api = workloads.api_client(provider.kubeconfig)
    ns = cfg.namespace or f"hopbench-{run_id[:6]}-{mode[:3]}"
    workloads.ensure_namespace(api, ns)
    token = secrets.token_hex(16)
    lock = threading.Lock()
    pending: list[EventRow] = []
    last_flush = [time.monotonic()]

    def sink(r: EventRow) -> None:
        for ln in lanes:  # a lane focuses the probers on its pod's Ready
            if ln.service == r["service"]:
                ln.on_watch_row(r)
        if r["scenario"] not in sc.scenarios:  # setup or cleanup of a cycle: not a trial
            return
        with lock:
            pending.append(r)

    registry = Registry()
    opened = sources.open_all(sources.SourceContext(
        provider=provider, namespace=ns, trials=registry, sink=sink, token=token,
        probe_interval_ms=sc.probe_interval_ms))
    agents = opened.of(AgentStore)
    watch = opened.of(ApiWatch)
    lanes: list[Lane] = []

    def on_trial(ref: TrialRef, rows: list[EventRow]) -> None:
        with lock:
            batch = pending[:] + rows
            pending.clear()
            batch += opened.events_for(ref, batch)
            batch.append(row(ref, Ev.TRIAL_END, time.time_ns(), source="harness"))
            store.append_events(batch)
            if time.monotonic() - last_flush[0] > FLUSH_EVERY_S:
                store.flush()
                last_flush[0] = time.monotonic()
            progress.done += 1
            progress.note(ref, batch)
        on_progress(progress)

    started = time.monotonic()
    try:
        opened.start()
        tag = str(store.meta.get("kubernetes_version", "latest"))  # provenance, read once
        image = cfg.target_image or workloads.target_image(tag)
        lanes = [Lane(api=api, namespace=ns, service=f"svc{k}", image=image, agents=agents,
                      registry=registry, run_id=run_id, mode=mode, cfg=sc, on_trial=on_trial)
                 for k in range(sc.parallel)]
        targets = [{"name": ln.service, "ip": ln.setup(), "port": 80} for ln in lanes]
        for ln in lanes:
            ln.wait_base()
        if not watch.synced.wait(30):
            raise ClusterError("the API watch did not start within 30s")
        sli_before = agents.kube_proxy_metrics()
        agents.arm(targets, sc.probe_interval_ms,
                   max_seconds=len(todo) * (per_cycle * sc.trial_timeout_s + 5) + 60,
                   max_requests=int(len(todo) * per_cycle * (sc.trial_timeout_s * 1000 /
                                                     sc.probe_interval_ms)) + 10_000,
                   idle_interval_ms=sc.probe_idle_interval_ms)
        time.sleep(0.5)  # the baseline answers before the first trial starts
        assigned = split_trials(sc.trials, sc.parallel)

        stop = threading.Event()

        def lane_work(k: int) -> None:
            for t in assigned[k]:
                if stop.is_set():  # Ctrl-C: finish the cycle in flight, start no other
                    return
                if t in todo:
                    lanes[k].run_cycle(t, done=recorded(t))

        pool = ThreadPoolExecutor(max_workers=sc.parallel)
        try:
            futures = [pool.submit(lane_work, k) for k in range(sc.parallel)]
            for f in futures:
                f.result()
        except BaseException as exc:
            stop.set()
            if isinstance(exc, KeyboardInterrupt):
                say("Ctrl-C: finishing the cycle in flight, then removing what this run "
                    "created (the run directory stays valid)")
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()
        elapsed = time.monotonic() - started
        sli_after = agents.kube_proxy_metrics()
        agents.collect_once()
        with lock:
            if pending:
                store.append_events(pending[:])
                pending.clear()
        store.flush()
        cpu = {n: agents.cpu_fraction(n) for n in agents.nodes}
        mode_meta = {
            "watch_delay_ms": watch_delay(load_events(store.path), mode),
            "resolution": {"api_watch_ns": WATCH_RESOLUTION_NS, "audit_ns": 1_000,
                           "agents": agents.resolutions()},
            "clock_offsets": agents.offsets(),
            "agent_cpu_fraction": cpu,
            "trials": len(todo) * per_cycle, "elapsed_s": round(elapsed, 1),
            "trials_per_minute": round(len(todo) * per_cycle / elapsed * 60, 1),
            "proxy_switch_s": round(switch_s, 2),
            "watch_restarts": watch.restarts, "agent_errors": dict(agents.errors),
            "sli": sli_delta(_sli(sli_before), _sli(sli_after)),
        }
        kpc = getattr(provider, "kube_proxy_config", None)
        if kpc:
            mode_meta["kube_proxy_config"] = kpc()
        modes = {**store.meta.get("modes", {}), mode: mode_meta}
        sli = {**store.meta.get("sli", {}), mode: mode_meta["sli"]}  # analysis reads it here
        store.update_meta({"modes": modes, "sli": sli})
        say(f"{mode}: {len(todo) * per_cycle} trials in {elapsed:.0f}s "
            f"({mode_meta['trials_per_minute']}/min), agent CPU "
            + ", ".join(f"{n} {c * 100:.1f}%" for n, c in cpu.items()))
    finally:
        agents.disarm()
        opened.stop()
        provider.stop_agents()
        try:
            workloads.delete_namespace(api, ns, wait=30)
        except Exception:  # noqa: BLE001 - best effort cleanup
            pass


def _sli(metrics: dict[str, str]) -> dict[str, Any]:
    """kubeproxy_network_programming_duration_seconds buckets per node (cumulative)."""
    out: dict[str, Any] = {}
    for node, text in metrics.items():
        h = prom.histogram(prom.parse(text), prom.NETWORK_PROGRAMMING)
        out[node] = {"buckets_s": [prom.bound_label(b) for b in h.upper_bounds_s],
                     "counts": h.counts}
    return out
