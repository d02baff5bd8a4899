"""The errors `analysis` raises on bad input, under one base the CLI can turn into one line.

They are ValueErrors (bad input, not bugs), so a notebook can catch them apart from bugs;
`analysis.load` turns the reader's `bench.errors.UserError` into `RunDirError`, and the CLI
maps `AnalysisError` to its own user error.
"""

from __future__ import annotations


class AnalysisError(ValueError):
    """Base of every input error of `analysis`."""


class RunDirError(AnalysisError):
    """Not a readable run directory (missing run.json or hops.parquet, bad JSON)."""


class SchemaError(AnalysisError):
    """A run this code cannot read: unknown schema version, or columns missing."""


class ProvenanceMismatch(AnalysisError):
    """Runs whose key provenance differs were asked to merge without allow_mixed=True."""


class DuplicateRun(AnalysisError):
    """The same run_id was given twice: pooling it would count every trial twice."""
