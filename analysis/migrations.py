"""Schema migrations: bring a run written by an older hopbench up to `schema.SCHEMA_VERSION`.

Stored runs outlive the code that wrote them (pyperf/asv do the same): every change to the
results schema bumps `schema.SCHEMA_VERSION` and registers here one function that turns a run
of the previous version into the next one. `migrate` chains them, so a run of any known
version loads as the current one. A run.json without "schema_version" predates versioning
and is read as version 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from analysis.errors import SchemaError
from bench.results.schema import SCHEMA_VERSION


@dataclass(frozen=True)
class RawRun:
    """One run as read from disk, before validation: run.json and the two tables."""

    meta: dict[str, Any]
    hops: pd.DataFrame
    events: pd.DataFrame

    @property
    def version(self) -> int:
        value = self.meta.get("schema_version", 0)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SchemaError(f"schema_version {value!r} is not an integer") from None


Migration = Callable[[RawRun], RawRun]

#: from-version -> function returning the run at from-version + 1
MIGRATIONS: dict[int, Migration] = {}


def migration(from_version: int) -> Callable[[Migration], Migration]:
    """Register `fn` as the step from `from_version` to `from_version + 1`."""

    def register(fn: Migration) -> Migration:
        if from_version in MIGRATIONS:
            raise ValueError(f"two migrations from schema {from_version}")
        MIGRATIONS[from_version] = fn
        return fn

    return register


def migrate(run: RawRun, target: int = SCHEMA_VERSION) -> RawRun:
    """Apply the registered steps until the run is at `target`; refuse newer runs."""
    if run.version > target:
        raise SchemaError(
            f"schema_version {run.version} is newer than this hopbench reads ({target}); "
            "upgrade hopbench"
        )
    while run.version < target:
        step = MIGRATIONS.get(run.version)
        if step is None:
            raise SchemaError(f"no migration from schema_version {run.version}")
        before = run.version
        run = step(run)
        if run.version != before + 1:
            raise SchemaError(f"migration from {before} produced schema_version {run.version}")
    return run


def _bumped(meta: dict[str, Any], version: int) -> dict[str, Any]:
    return {**meta, "schema_version": version}


@migration(0)
def _v0_latency_in_seconds(run: RawRun) -> RawRun:
    """Schema 0 stored hop latencies in seconds (`latency_s`); 1 stores `latency_ms`."""
    hops = run.hops
    if "latency_s" in hops.columns:
        hops = hops.assign(latency_ms=hops["latency_s"].astype("float64") * 1000.0)
        hops = hops.drop(columns=["latency_s"])
    return replace(run, meta=_bumped(run.meta, 1), hops=hops)


@migration(1)
def _v1_point_column(run: RawRun) -> RawRun:
    """Schema 2 adds the sweep point (`point`) to events and hops; a run of schema 1 had no
    background: the point "" (bench.results.point)."""
    hops, events = run.hops, run.events
    if len(hops.columns) and "point" not in hops.columns:
        hops = hops.assign(point="")
    if len(events.columns) and "point" not in events.columns:
        events = events.assign(point="")
    return replace(run, meta=_bumped(run.meta, 2), hops=hops, events=events)
