"""Where the built upstream binaries are: the pins, the cache key and the lookup.

Building them is bench.build.gobuild's job; the run path only looks them up here, so a
run never imports the build (docs/design.md §4).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bench.errors import PrerequisiteError
from bench.paths import cache_dir


@dataclass(frozen=True)
class Pins:
    kubernetes: str
    k8s_binaries: tuple[str, ...]
    etcd: str

    @property
    def staging(self) -> str:
        """v1.35.4 -> v0.35.4, the tag of every k8s.io staging module."""
        return "v0." + self.kubernetes.removeprefix("v1.")


@dataclass(frozen=True)
class Toolset:
    """Paths of the built binaries plus what built them."""

    bin_dir: Path
    pins: Pins
    go_version: str

    def path(self, name: str) -> Path:
        return self.bin_dir / name

    def as_dict(self) -> dict[str, str]:
        return {
            "kubernetes": self.pins.kubernetes,
            "etcd": self.pins.etcd,
            "go": self.go_version,
            "bin_dir": str(self.bin_dir),
        }


def load_pins() -> Pins:
    data = tomllib.loads(resources.files("bench").joinpath("pins.toml").read_text())
    return Pins(
        kubernetes=data["kubernetes"]["version"],
        k8s_binaries=tuple(data["kubernetes"]["binaries"]),
        etcd=data["etcd"]["version"],
    )


def find_go() -> str:
    for candidate in (shutil.which("go"), "/usr/local/go/bin/go", "/usr/lib/go/bin/go"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise PrerequisiteError("Go is not installed (need go >= 1.25 on PATH or in /usr/local/go)")


def go_version(go: str) -> str:
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def cache_key(pins: Pins, gover: str) -> str:
    raw = json.dumps([pins.kubernetes, pins.k8s_binaries, pins.etcd, gover]).encode()
    return f"k8s-{pins.kubernetes}_etcd-{pins.etcd}_{hashlib.sha256(raw).hexdigest()[:10]}"


def bin_names(pins: Pins) -> list[str]:
    return [Path(p).name for p in pins.k8s_binaries] + ["etcd"]


def toolset(pins: Pins | None = None) -> Toolset | None:
    """The cached build for the current pins, or None when it is not complete."""
    pins = pins or load_pins()
    gover = go_version(find_go())
    bin_dir = cache_dir() / "upstream" / cache_key(pins, gover) / "bin"
    if all((bin_dir / n).exists() for n in bin_names(pins)):
        return Toolset(bin_dir, pins, gover)
    return None




def find_toolset() -> Toolset:
    """The cached build, or one line saying how to make it."""
    found = toolset()
    if found is None:
        raise PrerequisiteError("the upstream binaries are not built yet: run `hopbench build`")
    return found
