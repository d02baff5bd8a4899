"""The run directory (docs/design.md §8): journal, parquet snapshots, run.json; kill -9 safe.

A run takes hours and may be stopped at any moment; what it measured must survive. Events
go to `events.jsonl`, an append-only journal fsynced per batch: it is the source of truth.
`events.parquet`, `hops.parquet` (always `timeline.assemble` of `events.parquet`) and
`run.json` are snapshots replaced atomically (tmp file, fsync, os.replace), so a reader sees
the old file or the new one, never half of one. The two parquet files are replaced one after
the other, so a reader racing a flush may see events one flush ahead of hops.

A trial is complete once the harness has appended its `trial_end` event (schema.Ev.TRIAL_END,
same point, proxy_mode, scenario and trial). `RunStore.open` (for --resume) sets the events of
incomplete trials aside in `events.discarded.jsonl`, so the trial can be run again cleanly.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, cast

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.errors import UserError
from bench.results.provenance import Provenance
from bench.results.schema import (
    EVENT_COLUMNS,
    EVENT_DTYPES,
    HOP_DTYPES,
    READS_AS_CURRENT,
    SCHEMA_VERSION,
    Ev,
    EventRow,
)
from bench.timeline import assemble, coerce, events_frame

RUN_JSON = "run.json"
JOURNAL = "events.jsonl"
DISCARDED = "events.discarded.jsonl"
EVENTS = "events.parquet"
HOPS = "hops.parquet"
_LOCK = ".lock"
_RESERVED = frozenset({"schema_version", "status"})

TrialKey = tuple[str, str, str, int]  # (point, proxy_mode, scenario, trial)


class RunStore:
    """One run directory, held open (and locked) by one process. Build with create/open."""

    def __init__(self, path: Path, meta: dict[str, Any], events: list[EventRow],
                 lock: IO[str], discarded: int = 0) -> None:
        self.path = path
        self.discarded = discarded  # events set aside by open() (incomplete trials)
        self._meta = meta
        self._events = events
        self._complete = {_trial_key(e) for e in events if e["event"] == Ev.TRIAL_END}
        self._lock = lock
        # held open for the store's lifetime, closed by close()
        self._journal: IO[str] | None = open(path / JOURNAL, "a", encoding="utf-8")  # noqa: SIM115

    @classmethod
    def create(cls, out_dir: Path | str, run_meta: Mapping[str, Any]) -> RunStore:
        """Start a new run in `out_dir` (absent or empty); run.json says "running"."""
        path = Path(out_dir)
        meta = {"schema_version": SCHEMA_VERSION, "status": "running",
                **_checked_meta(run_meta)}
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UserError(f"{path} already exists and is not empty; resume it or pick another")
        path.mkdir(parents=True, exist_ok=True)
        lock = _lock(path)
        try:
            _write_json(path / RUN_JSON, meta)
            _atomic(path / JOURNAL, lambda tmp: tmp.write_bytes(b""))
            store = cls(path, meta, [], lock)
        except BaseException:
            lock.close()
            raise
        store.flush()
        return store

    @classmethod
    def open(cls, existing_dir: Path | str) -> RunStore:
        """Reopen an interrupted or killed run to resume it; see `complete_trials`."""
        path = Path(existing_dir)
        meta = load_meta(path)
        if meta.get("status") == "finished":
            raise UserError(f"{path}: run already finished, nothing to resume")
        lock = _lock(path)
        try:
            kept, dropped = _recover(path)
            resumed = {"at": _now(), "previous_status": meta.get("status", ""),
                       "discarded_events": len(dropped)}
            meta = {**meta, "status": "running", "resumes": [*meta.get("resumes", []), resumed]}
            _write_json(path / RUN_JSON, meta)
            store = cls(path, meta, kept, lock, discarded=len(dropped))
        except BaseException:
            lock.close()
            raise
        store.flush()
        return store

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of what run.json holds."""
        return cast(dict[str, Any], json.loads(json.dumps(self._meta)))

    @property
    def complete_trials(self) -> frozenset[TrialKey]:
        """(point, proxy_mode, scenario, trial) of every trial whose trial_end is recorded."""
        return frozenset(self._complete)

    def append_events(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Journal a batch of EventRows durably (one write, flush, fsync)."""
        checked = [_checked_event(r) for r in rows]
        if not checked:
            return
        _append_lines(self._open_journal(), checked)
        self._events.extend(checked)
        self._complete.update(_trial_key(e) for e in checked if e["event"] == Ev.TRIAL_END)

    def flush(self) -> None:
        """Rewrite events.parquet and hops.parquet (atomically) from all events so far."""
        self._open_journal()  # a closed store must not overwrite a run someone reopened
        events = events_frame(self._events)
        _write_parquet(self.path / EVENTS, events)
        _write_parquet(self.path / HOPS, assemble(events))

    def update_meta(self, extra_meta: Mapping[str, Any]) -> None:
        """Merge `extra_meta` into run.json now (atomically), e.g. per-mode provenance."""
        self._open_journal()
        self._meta = {**self._meta, **_checked_meta(extra_meta)}
        _write_json(self.path / RUN_JSON, self._meta)

    def finish(self, extra_meta: Mapping[str, Any] | None = None) -> None:
        """Flush, mark run.json "finished" with `extra_meta` merged in, and release the run."""
        self._end("finished", {**_checked_meta(extra_meta or {}), "finished_at": _now()})

    def interrupt(self, reason: str) -> None:
        """Flush, mark run.json "interrupted" with the reason, and release the run."""
        self._end("interrupted", {"interrupted_at": _now(), "interrupt_reason": reason})

    def close(self) -> None:
        """Release the journal and the lock; run.json is left as is (as after a kill)."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
            self._lock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._journal is not None:
            self.interrupt(f"{kind.__name__}: {exc}" if kind else "closed before finish")

    def _end(self, status: str, extra: dict[str, Any]) -> None:
        self._open_journal()
        self.flush()
        self._meta = {**self._meta, **extra, "status": status}
        _write_json(self.path / RUN_JSON, self._meta)
        self.close()

    def _open_journal(self) -> IO[str]:
        if self._journal is None:
            raise RuntimeError(f"{self.path}: run store is closed")
        return self._journal


def _recover(path: Path) -> tuple[list[EventRow], list[EventRow]]:
    """Clean up after a killed writer: drop stale tmp files and the journal's torn tail, and
    set the events of incomplete trials aside. Returns (kept, set aside).

    The side file is written before the journal is replaced: a kill in between leaves the
    events in both (set aside twice on the next open), never in neither.
    """
    for stale in path.glob(".*.tmp-*"):
        stale.unlink()
    rows = _read_journal(path / JOURNAL)
    complete = {_trial_key(e) for e in rows if e["event"] == Ev.TRIAL_END}
    kept = [e for e in rows if e["trial"] < 0 or _trial_key(e) in complete]
    dropped = [e for e in rows if not (e["trial"] < 0 or _trial_key(e) in complete)]
    if dropped:
        with open(path / DISCARDED, "a", encoding="utf-8") as side:
            _append_lines(side, dropped)
    _atomic(path / JOURNAL, lambda tmp: tmp.write_text(_lines(kept), encoding="utf-8"))
    return kept, dropped


def write_hops(run_dir: Path | str, hops: pd.DataFrame) -> None:
    """Replace a run's hops.parquet atomically (e.g. re-derived by a newer timeline)."""
    _write_parquet(Path(run_dir) / HOPS, hops)


def load_meta(run_dir: Path | str, *, older: bool = False) -> dict[str, Any]:
    """run.json of a run directory, checked to be one this code can read (and, with
    `older`, one of an older schema version it reads as its own: READS_AS_CURRENT)."""
    path = Path(run_dir) / RUN_JSON
    meta = read_meta(run_dir)
    if not (meta.get("schema_version") == SCHEMA_VERSION
            or (older and meta.get("schema_version") in READS_AS_CURRENT)):
        raise UserError(f"{path}: schema_version {meta.get('schema_version')!r}, "
                        f"this hopbench reads {SCHEMA_VERSION}")
    return meta


def read_meta(run_dir: Path | str) -> dict[str, Any]:
    """run.json of a run directory as stored, whatever its schema_version."""
    path = Path(run_dir) / RUN_JSON
    if not path.is_file():
        raise UserError(f"{path.parent}: not a hopbench run directory (no {RUN_JSON})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a hopbench run directory: not valid JSON ({exc})"
                        ) from exc
    if not isinstance(meta, dict):
        raise UserError(f"{path}: not a hopbench run directory: expected a JSON object")
    return dict(meta)


def read_provenance(run_dir: Path | str) -> Provenance:
    """run.json's provenance as the runner wrote it (bench.results.provenance), any version."""
    return Provenance.from_meta(read_meta(run_dir))


def read_journal(run_dir: Path | str) -> list[EventRow]:
    """The events of the run's journal (events.jsonl), a torn last line dropped; [] if absent.

    Read-only: unlike `RunStore.open`, nothing is set aside or rewritten.
    """
    return _read_journal(Path(run_dir) / JOURNAL)


def write_events(run_dir: Path | str, events: pd.DataFrame) -> None:
    """Replace a run's events.parquet atomically (e.g. caught up with its journal)."""
    _write_parquet(Path(run_dir) / EVENTS, events)


def load_events(run_dir: Path | str) -> pd.DataFrame:
    """events.parquet with the schema's dtypes."""
    path = Path(run_dir) / EVENTS
    return coerce(with_point(_read_parquet(path, f"its events are in the journal {JOURNAL}")),
                  EVENT_DTYPES)


def load_hops(run_dir: Path | str) -> pd.DataFrame:
    """hops.parquet with the schema's dtypes."""
    path = Path(run_dir) / HOPS
    return coerce(with_point(_read_parquet(path, f"run `hopbench reassemble {path.parent}`, "
                                                 "which rebuilds it from the run's events")),
                  HOP_DTYPES)


def _read_parquet(path: Path, remedy: str) -> pd.DataFrame:
    """A parquet snapshot, or one line saying it is missing or unreadable and what to do."""
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise UserError(f"{path}: missing; {remedy}") from None
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path}: unreadable ({type(exc).__name__}: "
                        f"{_words(exc, path)}); {remedy}") from None


def _trial_key(e: Mapping[str, Any]) -> TrialKey:
    return (str(e["point"]), str(e["proxy_mode"]), str(e["scenario"]), int(e["trial"]))


def with_point(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with a `point` column: a run written before sweeps (schema 1) lacks it, and
    its trials ran with no background, the point "" (bench.results.point)."""
    return df if "point" in df.columns else df.assign(point="")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _checked_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    clash = _RESERVED & set(meta)
    if clash:
        raise ValueError(f"run meta may not set {', '.join(sorted(clash))}")
    json.dumps(dict(meta), allow_nan=False)  # fail before anything is written
    return dict(meta)


def _checked_event(row: Mapping[str, Any]) -> EventRow:
    keys = set(row)
    if keys != set(EVENT_COLUMNS):
        missing, extra = set(EVENT_COLUMNS) - keys, keys - set(EVENT_COLUMNS)
        raise ValueError(f"event row: missing {sorted(missing)}, unknown {sorted(extra)}")
    return cast(EventRow, {col: _cast(dtype, row[col]) for col, dtype in EVENT_DTYPES.items()})


def _cast(dtype: str, value: Any) -> Any:
    if dtype == "int64":
        return int(value)
    if dtype == "float64":
        return math.nan if value is None else float(value)
    return "" if value is None else str(value)


def _lines(rows: Iterable[EventRow]) -> str:
    def plain(v: Any) -> Any:
        return None if isinstance(v, float) and math.isnan(v) else v
    return "".join(json.dumps({k: plain(v) for k, v in r.items()}) + "\n" for r in rows)


def _append_lines(journal: IO[str], rows: list[EventRow]) -> None:
    journal.write(_lines(rows))
    journal.flush()
    os.fsync(journal.fileno())


def _read_journal(path: Path) -> list[EventRow]:
    """Parse the journal; a torn last line (killed mid-write) is dropped, anything else fails."""
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return []
    rows: list[EventRow] = []
    last = len(lines) - 1  # after the final "\n": empty, or the torn tail
    for number, line in enumerate(lines):
        try:
            parsed = json.loads(line)
            if isinstance(parsed, dict):
                parsed.setdefault("point", "")  # a journal of schema 1 (no sweeps)
            rows.append(_checked_event(parsed))
        except (ValueError, TypeError, AttributeError) as exc:
            if number == last or (number == last - 1 and not lines[last]):
                break
            raise UserError(f"{path}:{number + 1}: corrupt journal line ({exc})") from exc
    return rows


def writer_pid(run_dir: Path | str) -> str | None:
    """The pid of the process that holds the run open now, or None (e.g. it was killed).

    Takes the lock shared for an instant: a writer opening the run at that very instant
    would be refused as if the run were in use.
    """
    path = Path(run_dir) / _LOCK
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return probe.read().strip() or "?"
        fcntl.flock(probe, fcntl.LOCK_UN)
    return None


def _lock(path: Path) -> IO[str]:
    lock = open(path / _LOCK, "a+", encoding="utf-8")  # noqa: SIM115  # the store holds it
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise UserError(f"{path} is in use by another hopbench process (pid {holder})") from None
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_json(path: Path, meta: Mapping[str, Any]) -> None:
    text = json.dumps(meta, indent=2, sort_keys=True, allow_nan=False) + "\n"
    _atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _write_parquet(path: Path, df: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    tagged = {**(table.schema.metadata or {}), b"hopbench.schema_version": b"%d" % SCHEMA_VERSION}
    _atomic(path, lambda tmp: pq.write_table(table.replace_schema_metadata(tagged), tmp))


def _words(exc: BaseException, path: Path) -> str:
    """The reader's complaint on one line, without the path it repeats."""
    return " ".join(str(exc).replace(f" {str(path)!r}", "").split())[:120]
