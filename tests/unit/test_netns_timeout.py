"""A command run in a network namespace that does not finish in time is one ClusterError
line (the run's one-line error and resume hint), not a subprocess traceback: a
`kube-proxy --cleanup` past 60 s ended a scale job with 60 lines of traceback."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from bench.cluster.local import netns
from bench.errors import ClusterError


def test_a_timeout_is_one_cluster_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(cmd, kw.get("timeout") or 0)

    monkeypatch.setattr(subprocess, "run", slow)
    with pytest.raises(ClusterError, match=r"kube-proxy --cleanup: no answer within 60"):
        netns.run_in("hb-x-n1", ["kube-proxy", "--cleanup"], check=False)


def test_the_cleanup_gets_minutes() -> None:
    from bench.cluster.local import live
    assert live.CLEANUP_TIMEOUT_S >= 300
