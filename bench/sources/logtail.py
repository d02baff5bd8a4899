"""Follow a log file another process writes: the complete lines added since last time.

The audit log and istiod's log are read the same way, after each trial: from the size
they had when the mode began, whole lines only, starting over when the file shrank (a
rotation, or a new process writing a new log).
"""

from __future__ import annotations

from pathlib import Path


def new_lines(path: Path | None, offset: int) -> tuple[list[bytes], int]:
    """The complete lines of `path` after `offset`, and the offset after them."""
    if path is None or not path.exists():
        return [], offset
    if path.stat().st_size < offset:
        offset = 0
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), offset + end
