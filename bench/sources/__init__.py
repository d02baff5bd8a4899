"""Event sources. Each records raw, timestamped observations as schema.EventRow and
computes nothing: latencies are derived later by bench.timeline."""
