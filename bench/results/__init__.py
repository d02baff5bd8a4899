"""Results of a run: the typed event schema, and the run directory store (run.json, the
events journal, events.parquet, hops.parquet)."""
