"""The main job: for each sweep point and kube-proxy mode, run the trials and write the run.

provider -> scenario lanes drive the cluster -> sources record events -> the run store
journals them (and snapshots parquet) as the run goes -> timeline assembly -> summary.
A sweep runs its points outer, in ascending order of background Services (bench.sweep
fills the cluster to each), and the modes inner; a run without a sweep has one point,
no background.
"""

from __future__ import annotations

import math
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analysis.quantiles import quantiles, sample
from bench import __version__, apierrors
from bench.providers.base import Provider
from bench.results.point import Point
from bench.results.provenance import Provenance, point_meta, provider_facts
from bench.results.schema import Ev, EventRow
from bench.results.store import RunStore
from bench.scenarios import ScenarioConfig
from bench.scenarios import registry as scenario_registry
from bench.sources.base import TrialRef
from bench.sweep import Background, FillProgress, program_from, program_from_switch


@dataclass(frozen=True)
class RunConfig:
    modes: tuple[str, ...]
    scenario: ScenarioConfig
    out_dir: Path
    resume: bool = False
    namespace: str = ""
    target_image: str = ""  # agnhost image of the measured pods; "" = the locally built one
    points: tuple[Point, ...] = (Point(),)  # the sweep, ascending background Services


@dataclass
class Progress:
    """What the CLI shows live: done trials and end-to-end add latencies (ms)."""

    total: int
    done: int = 0
    mode: str = ""
    point: str = ""  # label of the sweep point being measured
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


def provenance(provider: Provider, cfg: RunConfig, run_id: str) -> Provenance:
    """The run's provenance record, as run.json keeps it (bench.results.provenance)."""
    return Provenance(
        run_id=run_id, created_at=datetime.now(UTC).isoformat(),
        harness_version=__version__, git_commit=git_commit(), host_kernel=platform.release(),
        proxy_modes=tuple(cfg.modes), scenarios=tuple(cfg.scenario.scenarios),
        scenario_config=asdict(cfg.scenario), points=cfg.points,
        facts=provider_facts(provider.provenance()))


def run(provider: Provider, cfg: RunConfig, say: Callable[[str], None] = print,
        on_progress: OnProgress = lambda p: None,
        on_fill: FillProgress = lambda label, done, total: None) -> Path:
    scenario_registry.check_provider(cfg.scenario.scenarios, provider)  # before anything
    run_id = uuid.uuid4().hex[:12]
    meta = provenance(provider, cfg, run_id).to_meta()
    if cfg.resume:
        store = RunStore.open(cfg.out_dir)
        run_id = store.meta.get("run_id", run_id)
        say(f"resuming {cfg.out_dir}: {len(store.complete_trials)} trials already complete")
    else:
        store = RunStore.create(cfg.out_dir, meta)
    progress = Progress(total=len(cfg.points) * len(cfg.modes) * cfg.scenario.trials_per_mode)
    sys.setswitchinterval(0.0005)  # watch threads get the GIL back fast: stamps stay sharp
    background = Background(provider, run_id, any(p.services for p in cfg.points), say,
                            on_fill)
    try:
        for i, point in enumerate(cfg.points):
            _run_point(provider, store, cfg, run_id, point, i == 0, background, progress,
                       say, on_progress)
        store.finish({"finished_ok": True})
    except KeyboardInterrupt:
        store.interrupt("interrupted by the user (Ctrl-C)")
        say(f"interrupted: {len(store.complete_trials)} trials recorded in {cfg.out_dir}; "
            f"continue with `hopbench run --resume {cfg.out_dir}`")
        raise
    except BaseException as exc:
        store.interrupt(f"{type(exc).__name__}: {exc}")
        hint = (f"{len(store.complete_trials)} trials kept in {cfg.out_dir}; continue with "
                f"`hopbench run --resume {cfg.out_dir}` once the cluster answers again")
        if (lost := apierrors.lost_cluster(exc, hint)) is not None:
            raise lost from exc
        raise
    finally:
        background.close()
    return cfg.out_dir


def _run_point(provider: Provider, store: RunStore, cfg: RunConfig, run_id: str,
               point: Point, top: bool, background: Background, progress: Progress,
               say: Callable[[str], None], on_progress: OnProgress) -> None:
    """One sweep point: the background filled to its size (re-measured on --resume), then
    each mode with trials still to run; run.json `points[label]` records both."""
    from bench.moderun import ModeRun

    progress.point = point.label if len(cfg.points) > 1 else ""
    runs = [ModeRun(provider, store, cfg, run_id, mode, progress, say, on_progress,
                    point=point, top=top) for mode in cfg.modes]
    todo = [m for m in runs if m.plan()]
    if not todo:
        return
    fill_started = time.monotonic()
    fill = background.ensure(point)
    _record_point(store, point, fill)
    since_what = program_from(str(store.meta.get("provider") or ""))
    for m in todo:
        progress.mode = m.mode
        switched = time.monotonic()  # kube-proxy restarts in the mode: it programs from nothing
        m.switch()
        since = switched if since_what == "kube-proxy start" else fill_started
        stamps_of = getattr(provider, "switch_stamps", None)
        stamps = stamps_of() if stamps_of is not None else None
        exact = program_from_switch(stamps) if stamps else None
        m.fit_timeout(exact[0] if exact else None)
        churner = m.churner = background.churner(point)
        try:
            m.start()
            m.extra.update(background.programmed(m.agents, point, since, since_what, stamps))
            if churner is not None:
                churner.start()
            try:
                m.run_lanes()
            finally:
                if churner is not None:
                    churner.stop()
            m.finish()
        finally:
            m.close()


def _record_point(store: RunStore, point: Point, fill: dict[str, Any] | None) -> None:
    """run.json `points[label]`: the point, and the fill that brought the cluster to it."""
    points = store.meta.get("points") or {}
    here = {**points.get(point.label, {}), **point_meta(point)}
    if fill is not None:
        here["fill"] = fill
    store.update_meta({"points": {**points, point.label: here}})
