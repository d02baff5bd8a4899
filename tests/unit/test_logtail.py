"""Following a log file: whole lines only, and from the start again when it shrank."""

from __future__ import annotations

from pathlib import Path

from bench.sources.logtail import new_lines


def test_whole_lines_then_the_rest_then_a_new_file(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    assert new_lines(log, 0) == ([], 0)  # not there yet
    log.write_bytes(b"a\nb\npart")
    lines, off = new_lines(log, 0)
    assert lines == [b"a", b"b"] and off == 4  # the half-written line waits
    log.write_bytes(b"a\nb\npartial\n")
    assert new_lines(log, off) == ([b"partial"], 12)
    log.write_bytes(b"z\n")  # shrank: a rotation or a new writer
    assert new_lines(log, 12) == ([b"z"], 2)
    assert new_lines(None, 5) == ([], 5)
