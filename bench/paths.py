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


def shipped(name: str) -> Path:
    """A data directory that ships with the package (`workloads`, `kind-configs`, `meshclient`).

    A wheel carries them inside the package (bench/_shipped/, see pyproject.toml); a source
    checkout or an editable install reads them at the repository root.
    """
    here = Path(__file__).resolve().parent
    inside = here / "_shipped" / name
    return inside if inside.is_dir() else here.parent / name
