"""Each node agent's clock against the harness's, before a kubeconfig run starts.

Hops that cross from the harness clock to a node clock are only as good as the offset
estimated for that node (bench.sources.agents.estimate_offset, round trips through the
API server's pod proxy). A run warns when an offset is less certain than the prober
interval, and refuses with --max-skew MS when it is less certain than MS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from bench.errors import UserError
from bench.sources.agents import ClockOffset, Transport, estimate_offset

Say = Callable[[str], None]
SAMPLES = 20  # round trips per node


def check_clocks(transports: Iterable[Transport], max_skew_ms: float | None,
                 probe_interval_ms: float, say: Say) -> dict[str, ClockOffset]:
    """node -> offset; warn (or, with `max_skew_ms`, refuse) when one is too uncertain."""
    offsets = {t.node: estimate_offset(t, samples=SAMPLES) for t in transports}
    limit = max_skew_ms if max_skew_ms is not None else probe_interval_ms
    problems = skew_problems(offsets, limit)
    if not problems:
        return offsets
    message = skew_message(problems, limit, refuse=max_skew_ms is not None)
    if max_skew_ms is not None:
        raise UserError(message)
    say("warning: " + message)
    return offsets


def skew_problems(offsets: dict[str, ClockOffset], limit_ms: float) -> list[str]:
    """Nodes whose offset uncertainty exceeds `limit_ms`, described for one line."""
    return [f"{node} ±{o.uncertainty_ns / 1e6:.2f} ms"
            for node, o in sorted(offsets.items()) if o.uncertainty_ns > limit_ms * 1e6]


def skew_message(problems: list[str], limit_ms: float, refuse: bool) -> str:
    what = ("clock offset uncertainty above --max-skew " if refuse
            else "clock offset uncertainty above the prober interval ")
    return (f"{what}{limit_ms:g} ms on {', '.join(problems)}: hops that cross from the "
            "harness clock to a node clock (slice→sync, Ready→first answer, unready→rule "
            "gone, unready→last answer) can be off by that much; node-local hops are not"
            + ("" if refuse else " (--max-skew MS refuses such a run)"))


def provenance(offsets: dict[str, ClockOffset]) -> dict[str, Any]:
    """run.json's `clock` (what the node stamps are on) and `clock_check` (per node)."""
    shared = bool(offsets) and all(o.shared for o in offsets.values())
    return {
        "clock": ("one kernel clock, the harness's (every agent reports its boot id)"
                  if shared
                  else "one clock per node; offsets to the harness estimated by round "
                       "trips through the API server's pod proxy, 0 on nodes that share "
                       "the harness's kernel"),
        "clock_check": {n: {"offset_ns": o.offset_ns, "uncertainty_ns": o.uncertainty_ns,
                            "shared": o.shared}
                        for n, o in offsets.items()},
    }
