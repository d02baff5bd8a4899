"""Build the pinned upstream binaries (Kubernetes, agnhost, etcd) through the Go module proxy.

`go install k8s.io/kubernetes/cmd/...@vX` is refused because the kubernetes module
carries `replace` directives for its staging repos. We generate a small wrapper module
per upstream project that requires it and replaces each `k8s.io/<staging>` module with
its published `v0.<minor>.<patch>` tag, then `go build` the main packages. Everything
lands in a cache outside the repo, keyed by the pins and the Go version, so clean
clones and CI reuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bench.errors import BuildError, PrerequisiteError
from bench.paths import cache_dir

Progress = Callable[[str, int, int], None]  # (stage, done, total)


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


def go_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOMODCACHE=str(root / "go" / "mod"),
        GOCACHE=str(root / "go" / "build"),
        GOFLAGS="-mod=mod",
        CGO_ENABLED="0",
        GOTOOLCHAIN="local",
        GOWORK="off",
    )
    return env


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


def _run(cmd: list[str], cwd: Path, env: dict[str, str], what: str) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise BuildError(f"{what} failed ({' '.join(cmd[:3])} ...):\n{tail}")
    return proc.stdout


def _staging_modules(go: str, pins: Pins, env: dict[str, str], work: Path) -> list[str]:
    out = _run(
        [go, "mod", "download", "-json", f"k8s.io/kubernetes@{pins.kubernetes}"],
        work, env, "downloading k8s.io/kubernetes",
    )
    gomod = Path(json.loads(out)["GoMod"]).read_text()
    return sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", gomod, re.M)))


def _write_module(work: Path, module: str, requires: list[str], replaces: list[str],
                  imports: list[str]) -> None:
    work.mkdir(parents=True, exist_ok=True)
    lines = [f"module {module}", "", "go 1.25.0", "", "require ("]
    lines += [f"\t{r}" for r in requires] + [")", ""]
    if replaces:
        lines += ["replace ("] + [f"\t{r}" for r in replaces] + [")", ""]
    (work / "go.mod").write_text("\n".join(lines))
    body = "\n".join(f'\t_ "{i}"' for i in imports)
    (work / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{body}\n)\n")


def _build(go: str, work: Path, env: dict[str, str], pkgs: list[str], out: Path,
           ldflags: str, stage: str, progress: Progress) -> None:
    _run([go, "mod", "tidy"], work, env, f"{stage}: go mod tidy")
    deps = _run([go, "list", "-deps", *pkgs], work, env, f"{stage}: go list").split()
    total = len(deps)
    progress(stage, 0, total)
    cmd = [go, "build", "-v", "-trimpath", "-ldflags", ldflags, "-o", str(out) + "/", *pkgs]
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    done, tail = 0, list[str]()
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-20:]
        if not line.startswith((" ", "#")) and " " not in line.strip():
            done += 1
            progress(stage, min(done, total), total)
    if proc.wait() != 0:
        raise BuildError(f"{stage}: go build failed:\n" + "\n".join(tail))
    progress(stage, total, total)


def build(progress: Progress | None = None, force: bool = False) -> Toolset:
    """Build (or reuse) every pinned binary and return where they are."""
    progress = progress or (lambda stage, done, total: None)
    pins = load_pins()
    go = find_go()
    gover = go_version(go)
    root = cache_dir()
    key = cache_key(pins, gover)
    bin_dir = root / "upstream" / key / "bin"
    if not force and all((bin_dir / n).exists() for n in bin_names(pins)):
        return Toolset(bin_dir, pins, gover)
    env = go_env(root)
    tmp_bin = bin_dir.with_name("bin.partial")
    tmp_bin.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    k8s_work = root / "src" / key / "kubernetes"
    k8s_work.mkdir(parents=True, exist_ok=True)
    staging = _staging_modules(go, pins, env, k8s_work)
    k8s_pkgs = [f"k8s.io/kubernetes/{b}" for b in pins.k8s_binaries]
    _write_module(k8s_work, "hopbench.local/kubernetes",
                  [f"k8s.io/kubernetes {pins.kubernetes}"],
                  [f"{m} => {m} {pins.staging}" for m in staging], k8s_pkgs)
    major, minor = pins.kubernetes.removeprefix("v").split(".")[:2]
    ver = "k8s.io/component-base/version"
    ldflags = (f"-s -w -X {ver}.gitVersion={pins.kubernetes} -X {ver}.gitMajor={major} "
               f"-X {ver}.gitMinor={minor} -X {ver}.gitTreeState=clean")
    _build(go, k8s_work, env, k8s_pkgs, tmp_bin, ldflags, "kubernetes", progress)

    etcd_work = root / "src" / key / "etcd"
    _write_module(etcd_work, "hopbench.local/etcd",
                  [f"go.etcd.io/etcd/server/v3 {pins.etcd}"], [], ["go.etcd.io/etcd/server/v3"])
    _build(go, etcd_work, env, ["go.etcd.io/etcd/server/v3"], tmp_bin, "-s -w", "etcd", progress)
    for produced in ("server", "v3"):  # go names a /vN main after the element before it
        if (tmp_bin / produced).exists():
            (tmp_bin / produced).rename(tmp_bin / "etcd")

    manifest = {"pins": {"kubernetes": pins.kubernetes, "etcd": pins.etcd},
                "go": gover, "build_seconds": round(time.monotonic() - started, 1)}
    (tmp_bin / "BUILD.json").write_text(json.dumps(manifest, indent=2))
    if bin_dir.exists():
        shutil.rmtree(bin_dir)
    tmp_bin.rename(bin_dir)
    return Toolset(bin_dir, pins, gover)


def require_toolset(progress: Progress | None = None) -> Toolset:
    """Cached toolset, building it first when the cache is empty."""
    return toolset() or build(progress)
