"""The main job: for each kube-proxy mode, run the trials and write the run directory.

provider -> scenario lanes drive the cluster -> sources record events -> the run store
journals them (and snapshots parquet) as the run goes -> timeline assembly -> summary.
"""

from __future__ import annotations

import math
import platform
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from analysis.quantiles import quantiles, sample
from bench import __version__, apierrors
from bench.providers.base import Provider
from bench.results.schema import Ev, EventRow
from bench.results.store import RunStore
from bench.scenarios import ScenarioConfig
from bench.scenarios import registry as scenario_registry
from bench.sources.base import TrialRef


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
    scenario_registry.check_provider(cfg.scenario.scenarios, provider)  # before anything
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
        hint = (f"{len(store.complete_trials)} trials kept in {cfg.out_dir}; continue with "
                f"`hopbench run --resume {cfg.out_dir}` once the cluster answers again")
        if (lost := apierrors.lost_cluster(exc, hint)) is not None:
            raise lost from exc
        raise
    return cfg.out_dir


def _run_mode(provider: Provider, store: RunStore, cfg: RunConfig, run_id: str, mode: str,
              progress: Progress, say: Callable[[str], None], on_progress: OnProgress) -> None:
    """One kube-proxy mode: switch to it, run its trials, record its block (bench.moderun)."""
    from bench.moderun import ModeRun

    m = ModeRun(provider, store, cfg, run_id, mode, progress, say, on_progress)
    if not m.plan():
        return
    m.switch()
    try:
        m.start()
        m.run_lanes()
        m.finish()
    finally:
        m.close()
