"""The run directory survives kills: journal, atomic snapshots, run.json status, resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from bench.errors import UserError
from bench.results.schema import (
    EVENT_COLUMNS,
    EVENT_DTYPES,
    HOP_COLUMNS,
    HOP_DTYPES,
    SCHEMA_VERSION,
    Ev,
)
from bench.results.store import (
    DISCARDED,
    EVENTS,
    HOPS,
    JOURNAL,
    RUN_JSON,
    RunStore,
    load_events,
    load_hops,
    load_meta,
)
from bench.timeline import assemble

MS = 1_000_000
META = {"provider": "local", "proxy_mode": "nftables", "nodes": 2}


def ev(event: str, t_ms: int, node: str = "", trial: int = 1,
       value: float = math.nan) -> dict[str, Any]:
    return {
        "run_id": "r1", "trial": trial, "service": "svc-1", "scenario": "scale-up",
        "proxy_mode": "nftables", "point": "", "direction": "add" if trial >= 0 else "",
        "node": node,
        "event": event, "t_ns": t_ms * MS, "clock": "harness", "offset_ns": 0,
        "uncertainty_ns": 0, "resolution_ns": MS, "source": "test", "pod": "web-1",
        "pod_ip": "10.1.0.7", "value": value, "detail": "",
    }


def trial_events(trial: int, *, done: bool = True) -> list[dict[str, Any]]:
    t0 = trial * 1000
    events = [ev(Ev.TRIGGER, t0, trial=trial), ev(Ev.POD_READY, t0 + 100, trial=trial),
              ev(Ev.SLICE_READY, t0 + 130, trial=trial),
              ev(Ev.PROXY_SYNC, t0 + 180, "a", trial), ev(Ev.RULE_PRESENT, t0 + 182, "a", trial),
              ev(Ev.FIRST_SUCCESS, t0 + 190, "a", trial)]
    return events + ([ev(Ev.TRIAL_END, t0 + 500, trial=trial)] if done else [])


def read_all(run: Path) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """What a reader (analysis, `show`) sees: must work at every moment of a run."""
    meta = load_meta(run)
    events, hops = pq.read_table(run / EVENTS).to_pandas(), pq.read_table(run / HOPS).to_pandas()
    assert list(events.columns) == EVENT_COLUMNS and list(hops.columns) == HOP_COLUMNS
    assert {c: str(t) for c, t in events.dtypes.items()} == EVENT_DTYPES
    assert {c: str(t) for c, t in hops.dtypes.items()} == HOP_DTYPES
    assert not list(run.glob(".*.tmp-*"))
    return meta, events, hops


def journal_lines(run: Path, name: str = JOURNAL) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / name).read_text().splitlines()]


def test_create_writes_valid_empty_files(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r1"
    store = RunStore.create(run, META)
    meta, events, hops = read_all(run)
    assert meta == {"schema_version": SCHEMA_VERSION, "status": "running", **META}
    assert len(events) == 0 and len(hops) == 0
    assert (run / JOURNAL).read_bytes() == b""
    store.close()


def test_files_are_readable_at_every_step(tmp_path: Path) -> None:
    run = tmp_path / "r1"
    store = RunStore.create(run, META)
    store.append_events(trial_events(1))
    _, events, _ = read_all(run)
    assert len(events) == 0  # snapshot not refreshed yet, but the journal has it all
    assert len(journal_lines(run)) == 7
    store.flush()
    _, events, hops = read_all(run)
    assert len(events) == 7
    assert hops.loc[hops["hop"] == "ready_to_traffic", "latency_ms"].tolist() == [90.0, 90.0]
    store.append_events(trial_events(2))
    store.finish({"kubernetes": "v1.35.0"})
    meta, events, hops = read_all(run)
    assert meta["status"] == "finished" and meta["kubernetes"] == "v1.35.0"
    assert "finished_at" in meta and meta["provider"] == "local"
    assert len(events) == 14 and sorted(set(hops["trial"])) == [1, 2]
    tags = pq.read_schema(run / EVENTS).metadata
    assert tags[b"hopbench.schema_version"] == str(SCHEMA_VERSION).encode()
    pd.testing.assert_frame_equal(load_events(run), events)
    pd.testing.assert_frame_equal(load_hops(run), hops)
    pd.testing.assert_frame_equal(assemble(load_events(run)), hops)  # hops derive from events
    with pytest.raises(RuntimeError, match="closed"):
        store.append_events(trial_events(3))


def test_missing_value_is_null_in_the_journal_and_nan_in_parquet(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "r", META)
    store.append_events([ev(Ev.FAIL_LAST, 5, "a", value=3.0), ev(Ev.FAIL_FIRST, 1, "a")])
    store.finish()
    assert [line["value"] for line in journal_lines(tmp_path / "r")] == [3.0, None]
    values = load_events(tmp_path / "r")["value"].tolist()
    assert values[0] == 3.0 and math.isnan(values[1])


def test_bad_event_row_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "r", META)
    bad = {k: v for k, v in ev(Ev.TRIGGER, 0).items() if k != "clock"}
    with pytest.raises(ValueError, match="missing \\['clock'\\]"):
        store.append_events([ev(Ev.TRIGGER, 0), bad])
    with pytest.raises(ValueError, match="unknown \\['extra'\\]"):
        store.append_events([{**ev(Ev.TRIGGER, 0), "extra": 1}])
    assert (tmp_path / "r" / JOURNAL).read_bytes() == b""
    store.close()


def test_torn_last_line_after_a_kill_is_dropped(tmp_path: Path) -> None:
    run = tmp_path / "r"
    store = RunStore.create(run, META)
    store.append_events(trial_events(1))
    store.close()  # as after kill -9: run.json still says "running"
    with open(run / JOURNAL, "ab") as journal:
        journal.write(json.dumps(ev(Ev.TRIGGER, 2000, trial=2)).encode()[:40])
    store = RunStore.open(run)
    meta, events, _ = read_all(run)
    assert meta["status"] == "running"
    assert meta["resumes"][0]["previous_status"] == "running"
    assert len(events) == 7 and store.complete_trials == {("", "nftables", "scale-up", 1)}
    assert len(journal_lines(run)) == 7  # the torn tail is gone, appends start clean
    store.append_events(trial_events(2))
    store.finish()
    assert len(journal_lines(run)) == 14


def test_corrupt_line_inside_the_journal_is_an_error(tmp_path: Path) -> None:
    run = tmp_path / "r"
    RunStore.create(run, META).close()
    lines = [json.dumps(e) for e in trial_events(1)]
    lines[2] = "{garbage"
    (run / JOURNAL).write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"events\.jsonl:3: corrupt journal line"):
        RunStore.open(run)


def test_resume_continues_after_the_complete_trials(tmp_path: Path) -> None:
    run = tmp_path / "r"
    store = RunStore.create(run, META)
    store.append_events([ev("agent_hello", 0, "a", trial=-1)])
    store.append_events(trial_events(1))
    store.append_events(trial_events(2, done=False))  # stopped in the middle of trial 2
    store.interrupt("SIGTERM")
    meta, events, _ = read_all(run)
    assert meta["status"] == "interrupted" and meta["interrupt_reason"] == "SIGTERM"
    assert len(events) == 14  # the snapshot keeps all that was measured

    store = RunStore.open(run)
    assert store.complete_trials == {("", "nftables", "scale-up", 1)}
    assert store.discarded == 6
    assert [e["trial"] for e in journal_lines(run, DISCARDED)] == [2] * 6
    meta, events, _ = read_all(run)
    assert meta["status"] == "running"
    assert meta["resumes"] == [{"at": meta["resumes"][0]["at"],
                                "previous_status": "interrupted", "discarded_events": 6}]
    assert sorted(set(events["trial"])) == [-1, 1]

    store.append_events(trial_events(2))
    assert ("", "nftables", "scale-up", 2) in store.complete_trials
    store.finish()
    meta, events, hops = read_all(run)
    assert meta["status"] == "finished"
    assert (events["trial"] == 2).sum() == 7
    e2e = hops[(hops["hop"] == "ready_to_traffic") & (hops["node"] == "a")]
    assert e2e["trial"].tolist() == [1, 2] and e2e["latency_ms"].tolist() == [90.0, 90.0]


def test_context_manager_marks_an_exception_as_interrupted(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), RunStore.create(tmp_path / "r", META) as store:
        store.append_events(trial_events(1))
        raise KeyboardInterrupt
    meta, events, _ = read_all(tmp_path / "r")
    assert meta["status"] == "interrupted" and meta["interrupt_reason"] == "KeyboardInterrupt: "
    assert len(events) == 7


def test_stale_tmp_file_of_a_killed_writer_is_cleaned(tmp_path: Path) -> None:
    run = tmp_path / "r"
    RunStore.create(run, META).close()
    (run / ".events.parquet.tmp-99999").write_bytes(b"PAR1 half")
    RunStore.open(run).close()
    read_all(run)


def test_refusals(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("")
    with pytest.raises(UserError, match="not empty"):
        RunStore.create(tmp_path / "busy", META)
    with pytest.raises(ValueError, match="may not set status"):
        RunStore.create(tmp_path / "bad", {"status": "finished"})
    with pytest.raises(TypeError):
        RunStore.create(tmp_path / "bad", {"when": object()})
    assert not (tmp_path / "bad").exists()  # nothing half-created
    with pytest.raises(UserError, match="not a hopbench run directory"):
        RunStore.open(tmp_path / "busy")

    held = RunStore.create(tmp_path / "held", META)
    with pytest.raises(UserError, match=f"in use by another hopbench process \\(pid {os.getpid()}"):
        RunStore.open(tmp_path / "held")
    held.finish()
    with pytest.raises(UserError, match="already finished"):
        RunStore.open(tmp_path / "held")

    meta = json.loads((tmp_path / "held" / RUN_JSON).read_text())
    (tmp_path / "held" / RUN_JSON).write_text(json.dumps({**meta, "schema_version": 999}))
    with pytest.raises(UserError, match="schema_version 999"):
        load_meta(tmp_path / "held")


WRITER = textwrap.dedent("""
    import math, sys
    from bench.results.store import RunStore
    run, trial = RunStore.create(sys.argv[1], {"provider": "test"}), 0
    def ev(event, node, trial):
        return {"run_id": "r1", "trial": trial, "service": "s", "scenario": "sc",
                "proxy_mode": "iptables", "point": "", "direction": "add", "node": node,
                "event": event,
                "t_ns": trial * 10**9, "clock": "harness", "offset_ns": 0,
                "uncertainty_ns": 0, "resolution_ns": 1, "source": "t", "pod": "p",
                "pod_ip": "", "value": math.nan, "detail": "x" * 200}
    while True:
        trial += 1
        for name in ("trigger", "pod_ready", "slice_ready"):
            run.append_events([ev(name, "", trial)])
        run.append_events([ev(n, "a", trial) for n in ("proxy_sync", "rule_present")] * 20)
        run.append_events([ev("trial_end", "", trial)])
        run.flush()
        print(trial, flush=True)
""")


def test_kill_9_at_a_random_moment_leaves_a_resumable_run(tmp_path: Path) -> None:
    run = tmp_path / "r"
    with subprocess.Popen([sys.executable, "-c", WRITER, str(run)],
                          stdout=subprocess.PIPE, text=True) as writer:
        assert writer.stdout is not None
        try:
            while int(writer.stdout.readline() or "0") < 3:
                assert writer.poll() is None, "writer died on its own"
        finally:
            writer.send_signal(signal.SIGKILL)
    meta, events, _ = read_all(run)  # whatever snapshot was last replaced
    assert meta["status"] == "running" and len(events) >= 3 * 44
    store = RunStore.open(run)
    done = {t for _, _, _, t in store.complete_trials}
    assert {1, 2, 3} <= done
    _, events, _ = read_all(run)
    assert set(events["trial"]) == done
    assert (events.groupby("trial").size() == 44).all()
    store.finish()
