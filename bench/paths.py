"""Where hopbench keeps things outside the repo: build cache, cluster state, run dirs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Per-user cache: Go module/build caches, built binaries, image archives."""
    base = os.environ.get("HOPBENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hopbench"
    )
    return Path(base)


def state_root() -> Path:
    """Cluster state (certs, data dirs, logs, pids). One directory per cluster name."""
    return Path(os.environ.get("HOPBENCH_STATE", "/var/lib/hopbench/clusters"))


def run_root() -> Path:
    """Sockets and other runtime files; short paths because unix sockets are limited."""
    return Path(os.environ.get("HOPBENCH_RUN", "/run/hopbench"))
