"""Every `hopbench run` option checked before anything is created.

A bad option found late costs a cluster bring-up and ends in a traceback (a negative
`--spacing-ms` failed in `time.sleep` after the first trial; `--out /proc/foo` after the
cluster was up). So every option is checked here, in one place, before the provider is
touched, and each message names the option it is about and the value it got.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.cluster.local.spec import MAX_NODES, NAME_RE, SERVICE_CIDR
from bench.errors import UserError
from bench.results.point import Point
from bench.scenarios import ScenarioConfig
from bench.scenarios import registry as scenario_registry


@dataclass(frozen=True)
class Limit:
    """A lower bound on one ScenarioConfig field, expressed in its CLI option's unit."""

    field: str
    option: str
    scale: float  # option value = field value * scale
    low: float
    inclusive: bool  # True: value >= low; False: value > low


LIMITS = (
    Limit("trials", "--trials", 1, 1, True),
    Limit("parallel", "--parallel", 1, 1, True),
    Limit("spacing_s", "--spacing-ms", 1000, 0, True),
    Limit("trial_timeout_s", "--trial-timeout", 1, 0, False),
    Limit("probe_interval_ms", "--probe-interval-ms", 1, 0, False),
    Limit("probe_idle_interval_ms", "--probe-idle-interval-ms", 1, 0, False),
)


def check_number(option: str, value: float, low: float, inclusive: bool) -> None:
    """Refuse a value below the bound, NaN or infinite, naming the option."""
    if not math.isfinite(value):
        raise UserError(f"{option} {value:g}: must be a finite number")
    if not (value >= low if inclusive else value > low):
        raise UserError(f"{option} {value:g}: must be {'>=' if inclusive else '>'} {low:g}")


def check_scenario(sc: ScenarioConfig) -> None:
    """The scenario options, from this command line or from a resumed run's run.json."""
    for lim in LIMITS:
        value = getattr(sc, lim.field)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UserError(f"{lim.option}: expected a number, got {value!r}")
        check_number(lim.option, value * lim.scale, lim.low, lim.inclusive)
    scenario_registry.check(sc)  # what a selected scenario itself refuses


def check_nodes(nodes: int) -> None:
    if not 1 <= nodes <= MAX_NODES:
        raise UserError(f"--nodes {nodes}: choose 1 to {MAX_NODES}")


def check_cluster_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise UserError(f"--cluster {name!r}: use 1-12 lowercase letters/digits, "
                        "starting with a letter")


def check_max_skew(max_skew_ms: float | None) -> None:
    if max_skew_ms is not None:
        check_number("--max-skew", max_skew_ms, 0, False)


def check_out_dir(path: Path) -> None:
    """The run directory can be created: it is new or empty, and its nearest existing
    parent is a directory where we can make one (probed by making and removing one)."""
    if path.exists():
        if not path.is_dir():
            raise UserError(f"--out {path}: exists and is not a directory")
        if any(path.iterdir()):
            raise UserError(f"--out {path}: exists and is not empty; pick another, or "
                            f"continue that run with --resume {path}")
        return
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"--out {path}: {parent} is not a directory")
    try:
        probe = tempfile.mkdtemp(prefix=".hopbench-probe-", dir=parent)
    except OSError as exc:
        raise UserError(f"--out {path}: cannot create a directory in {parent} "
                        f"({exc.strerror or exc})") from None
    os.rmdir(probe)


def check_resume_dir(path: Path) -> None:
    if not (path / "run.json").is_file():
        raise UserError(f"--resume {path}: not a hopbench run directory (no run.json)")


_COUNT = re.compile(r"\+?\d+")
MEMINFO = Path("/proc/meminfo")  # the local cluster runs on this machine


def parse_points(services: str, endpoints: str, churn: str) -> tuple[Point, ...]:
    """The sweep points of `--background-services N[,N...] --endpoints-per-service M
    --churn R`, ascending in N, each refused with one line naming the option. A point
    without background Services has no churn (there is nothing to change)."""
    items = [s.strip() for s in services.split(",")]
    counts = []
    for item in items:
        if not _COUNT.fullmatch(item):
            what = ("must be 0 or more" if re.fullmatch(r"-\d+", item)
                    else "is not a whole number")
            raise UserError(f"--background-services {services}: {item!r} {what} "
                            "(give counts separated by commas, e.g. 0,1000,5000)")
        counts.append(int(item))
    if len(set(counts)) != len(counts):
        raise UserError(f"--background-services {services}: a count is given twice")
    if not _COUNT.fullmatch(endpoints.strip()):
        raise UserError(f"--endpoints-per-service {endpoints}: not a whole number")
    m = int(endpoints)
    check_number("--endpoints-per-service", m, 1, True)
    try:
        rate = float(churn)
    except ValueError:
        raise UserError(f"--churn {churn}: not a number") from None
    check_number("--churn", rate, 0, True)
    if rate > 0 and max(counts) == 0:
        raise UserError(f"--churn {rate:g}: churn changes background endpoints; give "
                        "--background-services above 0 too")
    return tuple(Point(n, m, rate if n else 0.0) for n in sorted(counts))


def check_fits(points: tuple[Point, ...], *, local: bool, parallel: int = 1) -> None:
    """The largest point fits the cluster (service CIDR, memory, the fake endpoint range),
    or one line says why, with the estimate: bench.background.plan.check_fits.

    Local cluster: its service CIDR (less the kubernetes Service and the trial Services)
    and this machine's MemAvailable; any other cluster: neither is known here, only the
    fake range is checked.
    """
    big = max(points, key=lambda p: p.services, default=Point())
    if big.services == 0:
        return
    from bench.background import plan  # lazily: a run without a sweep never loads it
    cidr_free = mem = None
    if local:
        cidr_free = plan.cidr_free(SERVICE_CIDR, 1 + parallel)
        try:
            mem = plan.mem_available(MEMINFO.read_text(encoding="ascii"))
        except OSError:
            mem = None
    plan.check_fits(big.services, big.endpoints, cidr_free, mem)
