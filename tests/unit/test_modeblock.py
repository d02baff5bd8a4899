"""After --resume, run.json's per-mode block and the instruments table describe the whole run."""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console

from bench.moderun import record_mode
from bench.results.modeblock import ModeBlock, accumulate
from bench.results.schema import instruments
from bench.results.store import RunStore, load_meta
from bench.summary import instruments_table

BUCKETS = [0.001, 0.01, "+Inf"]


def segment(trials: int, elapsed_s: float, cpu: float, errors: int, focused_s: float,
            sli: list[float]) -> ModeBlock:
    """A block as `bench.moderun.ModeRun` writes it at the end of one segment."""
    return ModeBlock(
        trials=trials, elapsed_s=elapsed_s, trials_per_minute=round(trials / elapsed_s * 60, 1),
        proxy_switch_s=1.5, watch_restarts=1, watch_delay_ms={"pod_ready_p50": 1.5},
        agent_cpu_fraction={"n1": cpu}, agent_errors={"n1": errors},
        resolution={"api_watch_ns": 1000, "agents": {"n1": {
            "probe_focused_s": focused_s, "early_rule_changes": 1, "rule_method": "nft-monitor"}}},
        sli={"n1": {"buckets_s": BUCKETS, "counts": sli, "cumulative": False}})


FIRST = segment(40, 57.4, 0.04, 2, 12.0, [10.0, 30.0, 0.0])
SECOND = segment(54, 78.0, 0.02, 1, 20.0, [20.0, 33.0, 1.0])


def text(meta: dict[str, object]) -> str:
    table = instruments_table(meta, width=160)
    assert table is not None
    console = Console(width=160, record=True)
    console.print(table)
    return " ".join(console.export_text().split())


def test_resumed_run_block_and_table_describe_the_whole_run(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "r", {"proxy_modes": ["nftables"]})
    record_mode(store, "nftables", store.meta.get("modes", {}).get("nftables"), FIRST)
    store.close()  # killed after the first segment's block was written
    store = RunStore.open(tmp_path / "r")  # --resume
    record_mode(store, "nftables", store.meta["modes"]["nftables"], SECOND)
    store.finish()
    meta = load_meta(tmp_path / "r")
    block = meta["modes"]["nftables"]
    assert block["trials"] == 94 and block["elapsed_s"] == 135.4
    assert block["trials_per_minute"] == round(94 / 135.4 * 60, 1)
    assert [s["trials"] for s in block["segments"]] == [40, 54]
    assert math.isclose(block["agent_cpu_fraction"]["n1"],
                        (0.04 * 57.4 + 0.02 * 78.0) / 135.4)
    assert block["agent_errors"] == {"n1": 3} and block["watch_restarts"] == 2
    assert block["resolution"]["agents"]["n1"]["probe_focused_s"] == 32.0
    assert block["sli"]["n1"]["counts"] == [30.0, 63.0, 1.0]
    assert meta["sli"]["nftables"] == block["sli"]  # where analysis reads the SLI
    ins = instruments("nftables", block)
    assert ins.trials == 94 and ins.segments == 2
    assert math.isclose(ins.fine_share["n1"], 32.0 / 135.4)
    assert f"{block['trials_per_minute']} (94 in 135 s, 2 segments)" in text(meta)


def test_a_checkpoint_of_a_segment_is_replaced_by_its_final_block() -> None:
    partial = ModeBlock(trials=10, elapsed_s=15.0, trials_per_minute=40.0, proxy_switch_s=1.5)
    before = accumulate(None, FIRST)
    assert accumulate(before, partial)["trials"] == 50  # written at a flush, then killed...
    whole = accumulate(before, SECOND)  # ...or replaced when the segment ends
    assert whole["trials"] == 94 and len(whole["segments"]) == 2


def test_a_block_of_an_older_hopbench_counts_as_one_segment() -> None:
    old = ModeBlock(trials=40, elapsed_s=57.4, trials_per_minute=41.8)  # no "segments"
    whole = accumulate(old, SECOND)
    assert whole["trials"] == 94 and [s["trials"] for s in whole["segments"]] == [40, 54]
    assert whole["agent_cpu_fraction"] == {"n1": 0.02}  # the segment that measured it


def test_a_single_segment_reads_as_before() -> None:
    assert "41.8 (40 in 57 s)" in text({"modes": {"m": accumulate(None, FIRST)}})
