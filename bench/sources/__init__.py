"""Event sources. Each records raw, timestamped observations as schema.EventRow and
computes nothing: latencies are derived later by bench.timeline.

Each source module registers itself by name (bench.sources.registry); the imports below
register the built-in ones, in the order the runner opens them.
"""

from bench.sources import agents, apiwatch, audit, churn, istiod  # noqa: F401 - in this order
