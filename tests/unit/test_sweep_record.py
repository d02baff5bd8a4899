"""run.json of a sweep: each point's block under `points[label]`, the top-level `modes` the
first point's (as a single-point run always had it), and a resumed point continues its
own block; a point without background touches no background package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.moderun import mode_block, record_mode
from bench.results.modeblock import ModeBlock
from bench.results.point import Point
from bench.results.store import RunStore
from bench.runner import _record_point
from bench.sweep import Background, program_from

A, B = Point(0, 2, 0.0), Point(1000, 2, 0.0)


def block(trials: int) -> ModeBlock:
    return ModeBlock(trials=trials, elapsed_s=float(trials), trials_per_minute=60.0,
                     proxy_switch_s=1.0)


def test_points_and_top_level_modes(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run", {"provider": "test"})
    _record_point(store, A, None)
    record_mode(store, "iptables", None, block(4), A.label, top=True)
    _record_point(store, B, {"created": 2000, "deleted": 0, "seconds": 4.0,
                             "objects_per_s": 500.0})
    record_mode(store, "iptables", None, ModeBlock(**block(6), program_s=2.5), B.label,
                top=False)
    meta = store.meta
    assert meta["modes"]["iptables"]["trials"] == 4  # the first point's, as before sweeps
    assert meta["points"][A.label]["modes"]["iptables"]["trials"] == 4
    at_b = meta["points"][B.label]
    assert at_b["services"] == 1000 and at_b["fill"]["created"] == 2000
    assert at_b["modes"]["iptables"]["program_s"] == 2.5
    assert "fill" not in meta["points"][A.label]
    # --resume: a point's earlier segment is its own, never another point's
    assert mode_block(meta, B.label, "iptables")["trials"] == 6  # type: ignore[index]
    assert mode_block(meta, Point(5000).label, "iptables") is None
    whole = record_mode(store, "iptables", mode_block(meta, B.label, "iptables"), block(2),
                        B.label, top=False)
    assert whole["trials"] == 8 and len(whole["segments"]) == 2
    assert store.meta["modes"]["iptables"]["trials"] == 4
    _record_point(store, B, {"created": 0, "deleted": 0, "seconds": 0.1,
                             "objects_per_s": 0.0})  # re-measured fill keeps the modes
    assert store.meta["points"][B.label]["modes"]["iptables"]["trials"] == 8
    store.finish()


def test_no_background_touches_nothing() -> None:
    said: list[str] = []

    class NoProvider:
        def kube(self) -> Any:
            raise AssertionError("no background: the cluster is not touched")

    bg = Background(NoProvider(), "run123456789", False, said.append,  # type: ignore[arg-type]
                    lambda *a: None)
    assert bg.ensure(A) is None
    assert bg.programmed(None, A, 0.0, "kube-proxy start") == {}
    assert bg.churner(Point(0, 2, 0.0)) is None
    bg.close()
    assert said == []
    assert program_from("kubeconfig") == "creation" and program_from("local") == \
        "kube-proxy start"
