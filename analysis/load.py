"""Load run directories into tidy DataFrames, migrating old schemas and guarding merges.

A run directory (docs/design.md §8) holds run.json, events.parquet and hops.parquet, and the
journal events.jsonl; `bench.results.reader.read_run` reads it (journal included, so a killed
run shows every trial it completed), and analysis reads nothing else. Analysis
works on one or many runs at once, but pooling runs from different clusters silently mixes
populations, so `load_runs` refuses to merge runs whose key provenance differs unless told
to (pyperf/asv do the same), and says which field differs in which run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.errors import DuplicateRun, ProvenanceMismatch, RunDirError, SchemaError
from analysis.frame import with_scope
from analysis.migrations import RawRun, migrate
from bench.errors import UserError
from bench.results.provenance import Provenance
from bench.results.reader import RunFileError, read_run
from bench.results.schema import EVENT_DTYPES, HOP_DTYPES

__all__ = ["DuplicateRun", "ProvenanceMismatch", "RunData", "RunDirError", "SchemaError",
           "check_provenance", "load_run", "load_runs", "run_dirs_from_env"]

HOPS_FILE = "hops.parquet"
EVENTS_FILE = "events.parquet"
#: provenance that must agree for runs to be pooled
KEY_PROVENANCE: tuple[str, ...] = ("kubernetes_version", "provider", "node_count")
RUN_ENV = "HOPBENCH_RUN_DIR"
#: one trial of a run (docs/design.md §1: one endpoint transition of one Service)
_TRIAL_KEY = ["point", "proxy_mode", "scenario", "direction", "trial", "service"]
DEFAULT_RUN = "results/sample"


@dataclass(frozen=True)
class RunData:
    """Runs loaded together: hops and events (schema columns first) and one row per run.

    `hops` carries one derived column after the schema's: `scope` (analysis.frame).
    """

    hops: pd.DataFrame
    events: pd.DataFrame
    runs: pd.DataFrame
    meta: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # run_id -> run.json

    def select(self, **equals: str | int | Sequence[str | int]) -> RunData:
        """The same runs with hops and events narrowed to rows matching every column given."""
        return RunData(_filter(self.hops, equals), _filter(self.events, equals),
                       self.runs, self.meta)


def load_run(run_dir: Path | str) -> RunData:
    """Read one run directory (migrated to the current schema)."""
    return load_runs([run_dir])


def load_runs(run_dirs: Iterable[Path | str], *, allow_mixed: bool = False) -> RunData:
    """Read and pool run directories; raise ProvenanceMismatch if their key provenance differs.

    `allow_mixed=True` pools them anyway; `runs` keeps each run's provenance so the mix
    stays visible.
    """
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise RunDirError("no run directory given")
    raws = [(path, _read(path)) for path in paths]
    loaded = [(path, migrate(raw)) for path, raw in raws]
    runs = pd.DataFrame([_run_row(path, new, old.version)
                         for (path, new), (_, old) in zip(loaded, raws)])
    _check_unique(runs)
    if not allow_mixed:
        check_provenance(runs)
    hops = with_scope(_concat([_tidy(raw.hops, HOP_DTYPES, run_id, path, HOPS_FILE)
                               for (path, raw), run_id in zip(loaded, runs["run_id"])],
                              HOP_DTYPES))
    events = _concat([_tidy(raw.events, EVENT_DTYPES, run_id, path, EVENTS_FILE)
                      for (path, raw), run_id in zip(loaded, runs["run_id"])], EVENT_DTYPES)
    runs["n_trials"] = [len(h[_TRIAL_KEY].drop_duplicates())
                        for h in _by_run(hops, runs["run_id"])]
    meta = {str(rid): raw.meta for (_, raw), rid in zip(loaded, runs["run_id"])}
    return RunData(hops=hops, events=events, runs=runs, meta=meta)


def check_provenance(runs: pd.DataFrame, keys: Sequence[str] = KEY_PROVENANCE) -> None:
    """Raise ProvenanceMismatch naming every key field on which the runs disagree."""
    problems = []
    for key in keys:
        groups = runs.groupby(runs[key].astype(str), sort=True)["run_id"].agg(list)
        if len(groups) > 1:
            parts = [f"{value!s} ({', '.join(ids)})" for value, ids in groups.items()]
            problems.append(f"{key}: " + " vs ".join(parts))
    if problems:
        raise ProvenanceMismatch(
            "runs differ in " + "; ".join(problems)
            + " — pass allow_mixed=True to pool them anyway"
        )


def run_dirs_from_env(var: str = RUN_ENV, default: str = DEFAULT_RUN) -> list[Path]:
    """Run directories named by `$var` (os.pathsep-separated), else `default`.

    Relative paths are tried against the working directory, then against the repository
    root (the nearest parent holding pyproject.toml), so a notebook finds results/sample
    whether it runs from the repo root or from analysis/notebooks.
    """
    raw = os.environ.get(var) or default
    return [_resolve(Path(p)) for p in raw.split(os.pathsep) if p]


def _resolve(path: Path) -> Path:
    if path.is_absolute() or path.exists():
        return path
    for parent in [Path.cwd(), *Path.cwd().parents]:
        if (parent / "pyproject.toml").exists() and (parent / path).exists():
            return parent / path
    return path


def _read(path: Path) -> RawRun:
    """The run as `bench.results.reader.read_run` sees it: parquet snapshots and, for a run that
    did not finish (killed), every complete trial of its journal."""
    try:
        run = read_run(path, any_version=True)
        return RawRun(meta=run.meta, hops=run.hops, events=run.events)
    except RunFileError as exc:
        raise SchemaError(str(exc)) from exc
    except UserError as exc:
        raise RunDirError(str(exc)) from exc


def _run_row(path: Path, raw: RawRun, version_on_disk: int) -> dict[str, Any]:
    """The run's provenance row; schema_version is the one on disk (before migration)."""
    meta, prov = raw.meta, Provenance.from_meta(raw.meta)  # the type the runner wrote
    return {
        "run_id": prov.run_id or path.resolve().name,
        "run_dir": str(path),
        "status": str(meta.get("status", "")),
        "provider": meta.get("provider"),
        "kubernetes_version": meta.get("kubernetes_version"),
        "node_count": meta.get("node_count"),
        "proxy_modes": ",".join(prov.proxy_modes),
        "scenarios": ",".join(prov.scenarios),
        "points": ",".join(p.label for p in prov.points),
        "schema_version": version_on_disk,
    }


def _check_unique(runs: pd.DataFrame) -> None:
    dup = runs[runs["run_id"].duplicated(keep=False)]
    if not dup.empty:
        first = dup["run_id"].iloc[0]
        dirs = ", ".join(dup.loc[dup["run_id"] == first, "run_dir"])
        raise DuplicateRun(f"run {first} given more than once ({dirs})")


def _tidy(df: pd.DataFrame, dtypes: Mapping[str, str], run_id: str, path: Path,
          name: str) -> pd.DataFrame:
    """Schema columns first with the schema's dtypes (missing text -> ""), extras after."""
    if df.empty and not len(df.columns):
        return _empty(dtypes)
    missing = [c for c in dtypes if c not in df.columns]
    if missing:
        raise SchemaError(f"{path / name}: missing columns {', '.join(missing)}")
    out = {col: _as(df[col], dtype) for col, dtype in dtypes.items()}
    tidy = pd.DataFrame(out, index=pd.RangeIndex(len(df)))
    extras = [c for c in df.columns if c not in dtypes]
    if extras:
        tidy = pd.concat([tidy, df[extras].reset_index(drop=True)], axis=1)
    if "run_id" in tidy.columns:
        tidy.loc[tidy["run_id"] == "", "run_id"] = run_id
    return tidy


def _as(series: pd.Series, dtype: str) -> pd.Series:
    """`series` as `dtype`; text columns get "" for missing values."""
    if dtype != "str":
        return series.astype(dtype)
    if not isinstance(series.dtype, pd.StringDtype):
        series = series.astype(object).where(series.notna(), "")
    elif series.hasnans:
        series = series.fillna("")
    return series.astype(dtype)


def _empty(dtypes: Mapping[str, str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()})


def _concat(frames: list[pd.DataFrame], dtypes: Mapping[str, str]) -> pd.DataFrame:
    nonempty = [f for f in frames if len(f)]
    if not nonempty:
        return _empty(dtypes)
    if len(nonempty) == 1:
        return nonempty[0]
    return pd.concat(nonempty, ignore_index=True)


def _by_run(hops: pd.DataFrame, run_ids: Iterable[str]) -> list[pd.DataFrame]:
    groups = dict(tuple(hops.groupby("run_id", sort=False))) if len(hops) else {}
    return [groups.get(rid, hops.iloc[0:0]) for rid in run_ids]


def _filter(df: pd.DataFrame, equals: Mapping[str, Any]) -> pd.DataFrame:
    mask = pd.Series(True, index=df.index)
    for col, want in equals.items():
        values = [want] if isinstance(want, (str, int)) else list(want)
        mask &= df[col].isin(values)
    return df.loc[mask].reset_index(drop=True)
