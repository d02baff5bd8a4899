"""Fixtures owning the real local cluster. One 2-node cluster per session."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from bench.build.gobuild import require_toolset
from bench.cluster.local import cluster, teardown
from bench.cluster.local.spec import ClusterSpec

NAME = "hbtest"


def hopbench(*args: str, env: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real CLI as a user would."""
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


@pytest.fixture(scope="session")
def tools():  # type: ignore[no-untyped-def]
    return require_toolset()


@pytest.fixture(scope="session")
def local_cluster(tools) -> Iterator[ClusterSpec]:  # type: ignore[no-untyped-def]
    spec = cluster.up(ClusterSpec(name=NAME, nodes=2, proxy_mode="iptables"),
                      say=lambda m: None, tools=tools)
    try:
        yield spec
    finally:
        teardown.teardown(spec)
