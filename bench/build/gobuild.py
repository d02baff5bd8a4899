"""Build the pinned upstream binaries (Kubernetes, agnhost, etcd) through the Go module proxy.

`go install k8s.io/kubernetes/cmd/...@vX` is refused because the kubernetes module
carries `replace` directives for its staging repos. We generate a small wrapper module
per upstream project that requires it and replaces each `k8s.io/<staging>` module with
its published `v0.<minor>.<patch>` tag, then `go build` the main packages. Everything
lands in a cache outside the repo, keyed by the pins and the Go version, so clean
clones and CI reuse it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bench.cluster.toolset import (
    Pins,
    Toolset,
    bin_names,
    cache_key,
    find_go,
    go_version,
    load_pins,
    toolset,
)
from bench.errors import BuildError
from bench.paths import cache_dir

Progress = Callable[[str, int, int], None]  # (stage, done, total)


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
                  imports: list[str], go_line: str = "1.25.0") -> None:
    work.mkdir(parents=True, exist_ok=True)
    lines = [f"module {module}", "", f"go {go_line}", "", "require ("]
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
