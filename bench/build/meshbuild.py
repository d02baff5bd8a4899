"""Build the mesh tools (`pilot-discovery`, `meshclient`) through the Go module proxy.

The mesh path (docs/plans/mesh.md, issue 11) needs istiod and hopbench's own proxyless
gRPC client. Neither comes prebuilt: `pilot-discovery` is built from istio.io/istio at
its pin in a wrapper module, as gobuild.py builds etcd, and `meshclient` from the
repository's `meshclient/*.go` in a module written here (no go.mod is checked in: the
grpc pin lives in pins.toml). Istio's CRDs are copied from the module cache beside the
binaries. The output has a cache key of its own (pins, Go version, the meshclient
sources), so the Kubernetes toolset's key and cache are left alone.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import time
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bench.build.gobuild import Progress, _build, _run, _write_module, go_env
from bench.cluster.toolset import find_go, go_version
from bench.errors import BuildError
from bench.paths import cache_dir, shipped

ISTIO_MODULE = "istio.io/istio"
ISTIO_GO = "1.26.0"      # istio.io/istio's go.mod at the pin asks for it
MESHCLIENT_GO = "1.25.0"  # google.golang.org/grpc v1.85.0's go line
CRDS = "crd-all.gen.yaml"


@dataclass(frozen=True)
class MeshPins:
    istio: str
    istio_binaries: tuple[str, ...]
    istio_crds: str  # path inside the istio module
    grpc: str


@dataclass(frozen=True)
class MeshToolset:
    bin_dir: Path

    def path(self, name: str) -> Path:
        return self.bin_dir / name

    @property
    def crds(self) -> Path:
        return self.bin_dir / CRDS

    def as_dict(self) -> dict[str, object]:
        manifest = self.bin_dir / "BUILD.json"
        built = json.loads(manifest.read_text()) if manifest.exists() else {}
        return {"bin_dir": str(self.bin_dir), "crds": str(self.crds), **built}


def load_mesh_pins() -> MeshPins:
    data = tomllib.loads(resources.files("bench").joinpath("pins.toml").read_text())
    try:
        istio, grpc = data["istio"], data["grpc"]
        return MeshPins(istio=istio["version"], istio_binaries=tuple(istio["binaries"]),
                        istio_crds=istio["crds"], grpc=grpc["version"])
    except KeyError as exc:
        raise BuildError(f"bench/pins.toml has no mesh pin {exc}") from None


def binary_names(pins: MeshPins) -> list[str]:
    return [Path(p).name for p in pins.istio_binaries] + ["meshclient"]


def meshclient_sources() -> Path:
    return shipped("meshclient")


def sources_digest(src: Path) -> str:
    """sha256 over meshclient's .go files (names and contents, in name order)."""
    files = sorted(src.glob("*.go"))
    if not files:
        raise BuildError(f"meshclient sources not found: no .go files in {src}")
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def mesh_key(pins: MeshPins, gover: str, digest: str) -> str:
    raw = json.dumps([pins.istio, pins.istio_binaries, pins.istio_crds, pins.grpc, gover,
                      digest]).encode()
    return (f"istio-{pins.istio.rsplit('-', 1)[-1]}_grpc-{pins.grpc}_"
            f"{hashlib.sha256(raw).hexdigest()[:10]}")


def meshclient_gomod(grpc_version: str) -> str:
    return (f"module hopbench.local/meshclient\n\ngo {MESHCLIENT_GO}\n\n"
            f"require google.golang.org/grpc {grpc_version}\n")


def _current() -> tuple[MeshPins, str, Path]:
    """Pins, Go binary and the output directory for the current pins and sources."""
    pins = load_mesh_pins()
    go = find_go()
    key = mesh_key(pins, go_version(go), sources_digest(meshclient_sources()))
    return pins, go, cache_dir() / "mesh" / key / "bin"


def _complete(bin_dir: Path, pins: MeshPins) -> bool:
    return all((bin_dir / n).exists() for n in [*binary_names(pins), CRDS, "BUILD.json"])


def mesh_toolset() -> MeshToolset | None:
    """The cached mesh build for the current pins and sources, or None (never builds)."""
    pins, _, bin_dir = _current()
    return MeshToolset(bin_dir) if _complete(bin_dir, pins) else None


def _build_istio(go: str, pins: MeshPins, env: dict[str, str], work: Path, out: Path,
                 progress: Progress) -> None:
    pkgs = [f"{ISTIO_MODULE}/{b}" for b in pins.istio_binaries]
    _write_module(work, "hopbench.local/istio", [f"{ISTIO_MODULE} {pins.istio}"], [], pkgs,
                  go_line=ISTIO_GO)
    ver = f"{ISTIO_MODULE}/pkg/version"
    rev = pins.istio.rsplit("-", 1)[-1]
    ldflags = (f"-s -w -X {ver}.buildVersion={pins.istio} -X {ver}.buildGitRevision={rev} "
               f"-X {ver}.buildStatus=Clean")
    _build(go, work, env, pkgs, out, ldflags, "istio", progress)
    info = json.loads(_run([go, "mod", "download", "-json", f"{ISTIO_MODULE}@{pins.istio}"],
                           work, env, "locating istio.io/istio in the module cache"))
    crds = Path(info["Dir"]) / pins.istio_crds
    if not crds.is_file():
        raise BuildError(f"istio CRDs not found at {crds} (pins.toml [istio] crds)")
    shutil.copyfile(crds, out / CRDS)


def _build_meshclient(go: str, pins: MeshPins, env: dict[str, str], src: Path, work: Path,
                      out: Path, progress: Progress) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for f in sorted(src.glob("*.go")):
        shutil.copyfile(f, work / f.name)
    (work / "go.mod").write_text(meshclient_gomod(pins.grpc))
    _build(go, work, env, ["."], out, "-s -w", "meshclient", progress)


def build_mesh(progress: Progress | None = None, force: bool = False) -> MeshToolset:
    """Build (or reuse) pilot-discovery, meshclient and istio's CRDs; where they are."""
    progress = progress or (lambda stage, done, total: None)
    pins, go, bin_dir = _current()
    if not force and _complete(bin_dir, pins):
        return MeshToolset(bin_dir)
    root, key_dir = cache_dir(), bin_dir.parent
    key_dir.mkdir(parents=True, exist_ok=True)
    with open(key_dir / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build per key (2 cores: never two at once)
        if not force and _complete(bin_dir, pins):  # built while we waited
            return MeshToolset(bin_dir)
        env = go_env(root)
        tmp_bin = bin_dir.with_name("bin.partial")
        if tmp_bin.exists():
            shutil.rmtree(tmp_bin)
        tmp_bin.mkdir(parents=True)
        seconds: dict[str, float] = {}
        started = time.monotonic()
        _build_istio(go, pins, env, key_dir / "src" / "istio", tmp_bin, progress)
        seconds["pilot-discovery"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        src = meshclient_sources()
        _build_meshclient(go, pins, env, src, key_dir / "src" / "meshclient", tmp_bin,
                          progress)
        seconds["meshclient"] = round(time.monotonic() - started, 1)
        missing = [n for n in binary_names(pins) if not (tmp_bin / n).exists()]
        if missing:
            raise BuildError(f"mesh build produced no {', '.join(missing)} in {tmp_bin}")
        manifest = {"pins": {"istio": pins.istio, "grpc": pins.grpc},
                    "go": go_version(go), "meshclient_sha256": sources_digest(src),
                    "build_seconds": seconds,
                    "bytes": {n: (tmp_bin / n).stat().st_size for n in binary_names(pins)}}
        (tmp_bin / "BUILD.json").write_text(json.dumps(manifest, indent=2))
        if bin_dir.exists():
            shutil.rmtree(bin_dir)
        tmp_bin.rename(bin_dir)
    return MeshToolset(bin_dir)


def require_mesh(progress: Progress | None = None) -> MeshToolset:
    """Cached mesh tools, building them first when the cache is empty."""
    return mesh_toolset() or build_mesh(progress)
