"""The run's latency arithmetic (bench.latency, bench.runner.Progress, bench.summary) on
hand-written inputs: one quantile rule everywhere (analysis.quantiles), SLI deltas."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.quantiles import quantiles, sample
from bench.latency import SliBuckets, decumulate, sli_delta, watch_delay
from bench.results.schema import HOP_DTYPES, Ev
from bench.runner import Progress
from bench.sources.base import TrialRef, row
from bench.summary import QUANTILES, summary_table
from bench.timeline import coerce

MS = 1_000_000


def _event(event: str, t_ms: float, trial: int, mode: str = "iptables",
           service: str = "svc0", point: str = "") -> dict[str, object]:
    return {"proxy_mode": mode, "event": event, "trial": trial, "service": service,
            "scenario": "scale-up", "direction": "add", "t_ns": int(t_ms * MS),
            "point": point}


def test_watch_delay_uses_the_one_quantile_rule() -> None:
    delays = [4.0, 1.0, 3.0, 2.0, -0.5]  # watch receive minus audit stamp, ms
    rows = []
    for trial, d in enumerate(delays):
        rows += [_event(Ev.AUDIT_STATUS, 1000.0 + trial, trial),
                 _event(Ev.POD_READY, 1000.0 + trial + d, trial),
                 _event(Ev.POD_READY, 1000.0 + trial + d + 7, trial)]  # a later re-send
    rows += [_event(Ev.POD_READY, 5.0, 99),  # no audit entry matched: no delay
             _event(Ev.AUDIT_STATUS, 0.0, 0, mode="nftables"),  # another mode
             _event(Ev.POD_READY, 900.0, 0, mode="nftables")]
    out = watch_delay(pd.DataFrame(rows), "iptables")
    # inverted CDF over 5 values: p50 the 3rd smallest, p90 the 5th (pandas said 2.0 / 3.6)
    assert out["pod_ready_p50"] == 2.0 and out["pod_ready_p90"] == 4.0
    assert out["pod_ready_max"] == 4.0 and out["pod_ready_n"] == 5.0
    assert out["pod_ready_before_response"] == 1.0
    assert out["slice_ready_before_response"] == 0.0 and "slice_ready_p50" not in out
    expected = quantiles(sample(delays), [0.5, 0.9])
    assert [out["pod_ready_p50"], out["pod_ready_p90"]] == list(expected)


def test_watch_delay_keeps_sweep_points_apart() -> None:
    """Trial numbers repeat at every sweep point: trial 0 of one point is not trial 0 of
    the next (a 10,000-Service sweep read -35 min when they were matched across points)."""
    rows = [_event(Ev.AUDIT_STATUS, 1000.0, 0, point="bg0x2c0"),
            _event(Ev.POD_READY, 1003.0, 0, point="bg0x2c0"),
            _event(Ev.AUDIT_STATUS, 9_000_000.0, 0, point="bg1000x2c0"),
            _event(Ev.POD_READY, 9_000_001.0, 0, point="bg1000x2c0")]
    first = watch_delay(pd.DataFrame(rows), "iptables", "bg0x2c0")
    later = watch_delay(pd.DataFrame(rows), "iptables", "bg1000x2c0")
    assert (first["pod_ready_p50"], first["pod_ready_n"]) == (3.0, 1.0)
    assert (later["pod_ready_p50"], later["pod_ready_n"]) == (1.0, 1.0)


def test_decumulate() -> None:
    assert decumulate([1.0, 3.0, 3.0, 7.0]) == [1.0, 2.0, 0.0, 4.0]
    assert decumulate([]) == []


LAYOUT: list[float | str] = [0.25, 0.5, 1.0, "+Inf"]


def test_sli_delta_subtracts_the_start_snapshot_then_decumulates() -> None:
    before: dict[str, SliBuckets] = {"n1": {"buckets_s": LAYOUT, "counts": [1, 2, 4, 5]}}
    after: dict[str, SliBuckets] = {"n1": {"buckets_s": LAYOUT, "counts": [3, 6, 9, 12]}}
    assert sli_delta(before, after) == {
        "n1": {"buckets_s": LAYOUT, "counts": [2.0, 2.0, 1.0, 2.0], "cumulative": False}}


def test_sli_delta_takes_the_whole_end_snapshot_without_a_usable_base() -> None:
    after: dict[str, SliBuckets] = {"n1": {"buckets_s": LAYOUT, "counts": [1, 1, 3, 4]},
                                    "n2": {"buckets_s": LAYOUT, "counts": [0, 2, 2, 2]},
                                    "n3": {"buckets_s": LAYOUT, "counts": [1, 2, 2, 3]}}
    before: dict[str, SliBuckets] = {
        "n1": {"buckets_s": [0.5, 1.0, "+Inf"], "counts": [1, 1, 1]},  # layout changed
        # n2 absent: kube-proxy came up after the start snapshot
        "n3": {"buckets_s": LAYOUT, "counts": [5, 6, 7, 9]},  # restarted: counters reset
        "gone": {"buckets_s": LAYOUT, "counts": [1, 1, 1, 1]},  # not in `after`: dropped
    }
    out = sli_delta(before, after)
    assert set(out) == {"n1", "n2", "n3"}
    assert out["n1"]["counts"] == [1.0, 0.0, 2.0, 1.0]
    assert out["n2"]["counts"] == [0.0, 2.0, 0.0, 0.0]
    assert out["n3"]["counts"] == [1.0, 1.0, 0.0, 1.0]
    assert all(c >= 0 for o in out.values() for c in o["counts"])


def _ref(trial: int, direction: str = "add") -> TrialRef:
    return TrialRef("r", trial, "svc0", "scale-up", "iptables", direction)


def _add_trial(p: Progress, trial: int, e2e_ms: float | None) -> None:
    ref = _ref(trial)
    batch = [row(ref, Ev.POD_READY, 1_000 * MS, source="api-watch")]
    if e2e_ms is None:
        batch.append(row(ref, Ev.CENSOR, 31_000 * MS, source="harness", node="n1"))
    else:
        batch += [row(ref, Ev.FIRST_SUCCESS, int((1_000 + e2e_ms) * MS), source="agent-prober",
                      node="n1"),
                  row(ref, Ev.FIRST_SUCCESS, int((1_000 + e2e_ms / 2) * MS),
                      source="agent-prober", node="n2")]
    p.note(ref, batch)


def test_progress_quantiles_are_the_one_rule_with_censored_trials_at_inf() -> None:
    p = Progress(total=10)
    assert math.isnan(p.quantile(0.5))
    _add_trial(p, 0, 100.0)
    _add_trial(p, 1, 300.0)
    assert p.quantile(0.5) == 100.0  # inverted CDF: the lower of two (was the upper)
    _add_trial(p, 2, None)
    _add_trial(p, 3, None)
    p.note(_ref(4, "remove"), [row(_ref(4, "remove"), Ev.CENSOR, 0, source="harness")])
    assert p.censored == 3
    assert p.quantile(0.5) == 300.0
    assert p.quantile(0.99) == math.inf  # among the censored add trials
    assert p.quantile(0.99) == quantiles(sample([100.0, 300.0, None, None]), [0.99])[0]  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [7, 40, 101])
def test_summary_quantiles_match_analysis_on_a_censored_sample(n: int) -> None:
    rng = np.random.default_rng(n)
    values = rng.lognormal(5, 1, n)
    censored = rng.random(n) < 0.1
    censored[-1] = True
    rows = pd.DataFrame({
        "run_id": "r", "trial": np.arange(n), "service": "s", "scenario": "scale-up",
        "proxy_mode": "iptables", "point": "", "direction": "add", "node": "n1",
        "hop": "slice_to_sync",
        "start_event": "", "end_event": "", "latency_ms": np.where(censored, np.nan, values),
        "censored": censored, "censor_reason": "", "flag": "", "resolution_ms": 1.0,
        "value": np.nan})
    line = summary_table(coerce(rows, HOP_DTYPES)).iloc[0]
    expected = quantiles(sample(values, censored), [*QUANTILES.values(), 1.0])
    assert [line[c] for c in [*QUANTILES, "max_ms"]] == list(expected)
    assert line["max_ms"] == math.inf and line["censored"] == censored.sum()
