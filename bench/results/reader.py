"""The one reader of a run directory, whatever state its writer left it in.

`show`, `report`, `reassemble` and `analysis.load` all read a run through `read_run`, so they
all see the same trials. A run killed with SIGKILL leaves run.json saying "running" and
parquet snapshots up to a minute old (`runner.FLUSH_EVERY_S`), or still empty; its journal
(`events.jsonl`, written and fsynced after every trial) holds every trial that ended before
the kill. So the reader merges the two (bench/results/store.py says which file holds what):

- events: the rows of events.parquet, plus, from the journal, every complete trial (one
  with its `trial_end` event) that events.parquet lacks. A trial in flight at the kill has
  no `trial_end` and is left out, as `RunStore.open` sets it aside on --resume;
- hops: the rows of hops.parquet, plus the hops of every trial of those events that
  hops.parquet lacks, assembled from the events (`timeline.assemble`).

A finished run's parquet holds its whole journal (the writer flushes before it marks the
run finished), so its journal is not read: a long run's journal takes seconds to parse.
A run of an older schema version (read with `any_version=True`, for analysis.migrations)
comes back as its parquet files hold it: only this version's journal is read; except a
version in `schema.READS_AS_CURRENT` (1: no `point` column), read as this one with the
missing column filled with its default ("", no background).
Pure file reading: no Kubernetes client, so `analysis` may import this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import UserError
from bench.results.provenance import Provenance
from bench.results.schema import (
    EVENT_DTYPES,
    HOP_DTYPES,
    READS_AS_CURRENT,
    SCHEMA_VERSION,
    Ev,
)
from bench.results.store import (
    EVENTS,
    HOPS,
    JOURNAL,
    load_events,
    load_hops,
    load_meta,
    read_journal,
    read_meta,
)
from bench.timeline import assemble, coerce, events_frame

#: the columns that name one trial (as in timeline.TrialKey)
TRIAL_COLUMNS = ["run_id", "trial", "direction", "proxy_mode", "service", "scenario", "point"]


class RunFileError(UserError):
    """A run file of this schema version that lacks columns of it."""


@dataclass(frozen=True)
class RecordedRun:
    """What a run directory holds: run.json as stored, events, and (on first use) hops."""

    path: Path
    meta: dict[str, Any]
    events: pd.DataFrame
    from_journal: int  # trials whose events only the journal held (parquet not caught up)

    @property
    def status(self) -> str:
        """run.json's status: "finished", "interrupted", or "running" (also after a kill)."""
        return str(self.meta.get("status", ""))

    @property
    def provenance(self) -> Provenance:
        """What the run was, read through the type the runner wrote (any version)."""
        return Provenance.from_meta(self.meta)

    @property
    def trials(self) -> int:
        """Trials recorded (one transition of one Service, as the run counts them)."""
        return len(_trial_keys(self.events))

    @cached_property
    def hops(self) -> pd.DataFrame:
        """hops.parquet plus the hops assembled for every trial of `events` it lacks."""
        stored = (self.path / HOPS).is_file()
        if not _current(self.meta):
            if not stored:
                raise UserError(f"{self.path}: no {HOPS} (the run wrote no assembled hops)")
            return pd.read_parquet(self.path / HOPS)
        hops = _load(load_hops, self.path / HOPS) if stored else _empty(HOP_DTYPES)
        missing = _trial_keys(self.events) - _trial_keys(hops)
        if not missing:
            return hops
        new = assemble(self.events)
        new = new[[k in missing for k in _keys(new)]]
        both = pd.concat([hops, new], ignore_index=True) if len(hops) else new
        return both.sort_values(["run_id", "trial", "direction"], kind="stable",
                                ignore_index=True)


def read_run(run_dir: Path | str, *, any_version: bool = False) -> RecordedRun:
    """Read a run directory, journal included (see the module docstring).

    Raises UserError when it is not a run directory, or (unless `any_version`) when its
    schema_version is not this hopbench's.
    """
    path = Path(run_dir)
    meta = read_meta(path) if any_version else load_meta(path, older=True)
    stored = (path / EVENTS).is_file()
    if not _current(meta):
        return RecordedRun(path, meta, pd.read_parquet(path / EVENTS) if stored
                           else pd.DataFrame(), 0)
    events = _load(load_events, path / EVENTS) if stored else _empty(EVENT_DTYPES)
    if not stored and not (path / HOPS).is_file() and not (path / JOURNAL).is_file():
        raise UserError(f"{path}: no {HOPS}, {EVENTS} or {JOURNAL}: the run recorded nothing")
    if meta.get("status") == "finished":  # RunStore._end flushed every event before saying so
        return RecordedRun(path, meta, events, 0)
    journal = events_frame(read_journal(path))
    ended = _trial_keys(journal[journal["event"] == Ev.TRIAL_END])
    extra = ended - _trial_keys(events)
    if extra:
        rows = journal[[k in extra for k in _keys(journal)]]
        events = pd.concat([events, rows], ignore_index=True) if len(events) else rows
        events = events.reset_index(drop=True)
    return RecordedRun(path, meta, events, len(extra))


def _current(meta: dict[str, Any]) -> bool:
    """Read as this version: this version's runs, and older ones that lack only a column
    with a default (schema.READS_AS_CURRENT; e.g. 1, before the `point` column)."""
    version = meta.get("schema_version")
    return version == SCHEMA_VERSION or version in READS_AS_CURRENT


def _load(load: Callable[[Path], pd.DataFrame], file: Path) -> pd.DataFrame:
    try:
        return load(file.parent)
    except ValueError as exc:  # timeline.coerce: a column of the schema is missing
        raise RunFileError(f"{file}: {exc}") from exc


def _empty(dtypes: dict[str, str]) -> pd.DataFrame:
    return coerce(pd.DataFrame(columns=list(dtypes)), dtypes)


def _keys(df: pd.DataFrame) -> list[tuple[Any, ...]]:
    return list(zip(*(df[c].tolist() for c in TRIAL_COLUMNS), strict=True))


def _trial_keys(df: pd.DataFrame) -> set[tuple[Any, ...]]:
    """Keys of the trials in `df` (rows with trial >= 0 and a direction)."""
    if not len(df):
        return set()
    trials = df[(df["trial"] >= 0) & (df["direction"] != "")]
    return set(_keys(trials))
