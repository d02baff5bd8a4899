"""Summary table from hand-written hop rows with known quantiles."""

from __future__ import annotations

import io
import math
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from bench.results.schema import ALL_NODES, CLUSTER, HOP_DTYPES
from bench.summary import SUMMARY_DTYPES, render, summary_table
from bench.timeline import coerce


def hop(latency: float | None, *, hop: str = "slice_to_sync", node: str = "a",
        trial: int = 1, direction: str = "add", mode: str = "iptables",
        flag: str = "") -> dict[str, Any]:
    censored = latency is None
    return {
        "run_id": "r1", "trial": trial, "service": "s", "scenario": "scale-up",
        "proxy_mode": mode, "direction": direction, "node": node, "hop": hop,
        "start_event": "x", "end_event": "y",
        "latency_ms": math.nan if censored else latency, "censored": censored,
        "censor_reason": "missing y" if censored else "", "flag": flag,
        "resolution_ms": 1.0, "value": math.nan,
    }


def table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return summary_table(coerce(pd.DataFrame(rows, columns=list(HOP_DTYPES)), HOP_DTYPES))


def test_known_quantiles_nearest_rank() -> None:
    # 100 samples 1..100 ms spread over two nodes, shuffled
    rows = [hop(float(v), node="ab"[v % 2], trial=v) for v in (37, *range(1, 37), *range(38, 101))]
    line = table(rows).iloc[0]
    assert (line["n"], line["censored"], line["negative"]) == (100, 0, 0)
    assert (line["p50_ms"], line["p90_ms"], line["p99_ms"], line["max_ms"]) == (
        50.0, 90.0, 99.0, 100.0)


def test_small_sample_quantiles_are_measured_values() -> None:
    line = table([hop(v) for v in (10.0, 30.0, 20.0)]).iloc[0]
    assert (line["p50_ms"], line["p90_ms"], line["p99_ms"], line["max_ms"]) == (
        20.0, 30.0, 30.0, 30.0)


def test_censored_samples_count_as_infinite_not_dropped() -> None:
    one_censored = table([hop(float(v)) for v in range(1, 100)] + [hop(None)]).iloc[0]
    assert (one_censored["n"], one_censored["censored"]) == (100, 1)
    assert (one_censored["p50_ms"], one_censored["p99_ms"]) == (50.0, 99.0)
    assert math.isinf(one_censored["max_ms"])
    two_censored = table([hop(float(v)) for v in range(1, 99)] + [hop(None), hop(None)]).iloc[0]
    assert two_censored["p90_ms"] == 90.0 and math.isinf(two_censored["p99_ms"])


def test_nan_latency_not_flagged_censored_is_not_taken_as_small() -> None:
    row = {**hop(1.0), "latency_ms": math.nan}
    line = table([hop(2.0), row]).iloc[0]
    assert line["p50_ms"] == 2.0 and math.isinf(line["max_ms"]) and line["censored"] == 0


def test_negative_samples_are_kept_and_counted() -> None:
    line = table([hop(-3.0, flag="negative"), hop(1.0), hop(2.0)]).iloc[0]
    assert line["negative"] == 1 and line["p50_ms"] == 1.0
    assert table([hop(-3.0, flag="negative")]).iloc[0]["max_ms"] == -3.0


def test_lines_per_scope_in_schema_order() -> None:
    rows = [
        hop(5.0, hop="ready_to_traffic", node="a"), hop(9.0, hop="ready_to_traffic", node="b"),
        hop(9.0, hop="ready_to_traffic", node=ALL_NODES),
        hop(2.0, hop="slice_to_sync", node="a"), hop(4.0, hop="slice_to_sync", node="b"),
        hop(4.0, hop="slice_to_sync", node=ALL_NODES),
        hop(30.0, hop="ready_to_slice", node=CLUSTER),
        hop(7.0, hop="slice_to_sync", node="a", direction="remove"),
        hop(1.0, hop="slice_to_sync", node="a", mode="nftables"),
    ]
    df = table(rows)
    got = list(zip(df["proxy_mode"], df["direction"], df["hop"], df["scope"], df["n"],
                   df["max_ms"], strict=True))
    assert got == [
        ("iptables", "add", "ready_to_slice", "cluster", 1, 30.0),
        ("iptables", "add", "slice_to_sync", "node", 2, 4.0),
        ("iptables", "add", "slice_to_sync", "all-nodes", 1, 4.0),
        ("iptables", "add", "ready_to_traffic", "node", 2, 9.0),
        ("iptables", "add", "ready_to_traffic", "all-nodes", 1, 9.0),
        ("iptables", "remove", "slice_to_sync", "node", 1, 7.0),
        ("nftables", "add", "slice_to_sync", "node", 1, 1.0),
    ]


def test_empty_input_gives_typed_empty_table() -> None:
    df = table([])
    assert len(df) == 0
    assert {c: str(t) for c, t in df.dtypes.items()} == SUMMARY_DTYPES


def test_render_shows_every_line_and_marks_censored() -> None:
    df = table([hop(12.5), hop(None), hop(30.0, hop="ready_to_slice", node=CLUSTER)])
    rendered = render(df)
    assert isinstance(rendered, Table) and rendered.row_count == 3  # a group line + 2
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(rendered)
    text = out.getvalue()
    assert "censored" in text and "12.5" in text and "30.0" in text
    assert "slice_to_sync" in text and "ready_to_slice" in text


def _text(t: Table, width: int) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False).print(t)
    return buf.getvalue()


def test_narrow_terminal_keeps_every_shown_column_readable() -> None:
    rows = [hop(float(v), trial=v) for v in range(1, 11)] + [hop(None, trial=11)]
    wide = _text(render(table(rows), width=160), 160)
    narrow = _text(render(table(rows), width=80), 80)
    assert "max" in wide and " neg " in wide
    assert " max " not in narrow and " neg " not in narrow
    assert max(len(line) for line in narrow.splitlines()) <= 80
    line = next(ln for ln in narrow.splitlines() if "slice_to_sync" in ln)
    assert line.split()[1:5] == ["node", "11", "1", "6.0"]  # over, n, cens, p50: whole


META = {"modes": {"iptables": {
    "trials_per_minute": 41.8, "trials": 40, "elapsed_s": 57.4,
    "agent_cpu_fraction": {"n1": 0.0413, "n2": 0.0387},
    "agent_errors": {"n1": 0, "n2": 2},
    "watch_delay_ms": {"pod_ready_p50": 1.75, "pod_ready_p90": 3.63,
                       "slice_ready_p50": 1.12, "slice_ready_p90": 1.75},
    "resolution": {"agents": {
        "n1": {"probe_focused_s": 12.6, "early_rule_changes": 0, "rule_method": "nft-monitor",
               "rule_resolution_ns": 5_000_000, "probe_interval_ns": 5_000_000,
               "probe_idle_interval_ns": 100_000_000},
        "n2": {"probe_focused_s": 13.7, "early_rule_changes": 3}}}}}}


def test_instruments_table_shows_the_runs_self_checks() -> None:
    from bench.summary import instruments_table

    t = instruments_table(META)
    assert t is not None
    text = _text(t, 160)
    assert "41.8 (40 in 57 s)" in text
    assert "n1 4.1 %, n2 3.9 %" in text
    assert "n1 22 %, n2 24 %" in text          # 12.6 s and 13.7 s of 57.4 s
    assert "n1 0, n2 3" in text                # rule changes that beat the focus
    assert "nft-monitor, 5 ms" in text and "5 ms (idle 100 ms)" in text
    assert "pod 1.75 / 3.63, slice 1.12 / 1.75 ms" in text
    assert "n1 0, n2 2" in text
    assert instruments_table({}) is None
