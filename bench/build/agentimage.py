"""Build the node agent's container image as an OCI archive, without Docker or a registry.

The agent DaemonSet (workloads/agent/) needs an image holding python3, the nft,
iptables and ipvsadm binaries its rule watcher runs, and the agent package. Users with
Docker build workloads/agent/Dockerfile; this machine has no Docker engine, so here the
same image is made from Debian packages: `debootstrap --variant=minbase` lays out a
bookworm rootfs (cached as one layer tarball, keyed by its recipe), and the agent code
goes on top as a second, small layer (bench.build.images). The archive is imported into a
cluster's containerd with `ctr images import` (bench.cluster.local.cluster.import_images).

With `mesh=True` (`--mesh`) the agent layer also carries the proxyless gRPC mesh client
(meshclient, built through the Go module proxy by bench.build.meshbuild) at MESH_CLIENT,
for `run --kubeconfig --mesh istio`; its bytes are part of the tag, so a rebuilt client
is a new image. Without it the image is the same as before, and no Go build is needed.

debootstrap talks only to the Debian mirror this machine's apt is configured with.

    python -m bench.build.agentimage [--force] [--mesh] [--import-into CLUSTER]
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import __version__
from bench.build.images import ImageSpec, dir_layer, write_archive
from bench.errors import BuildError, HopbenchError, PrerequisiteError, UserError
from bench.paths import cache_dir, shipped

Say = Callable[[str], None]
REPO = "localhost/hopbench/agent"
PKG_ROOT = Path(__file__).resolve().parents[1]  # bench/
ENTRYPOINT = shipped("workloads") / "agent" / "entrypoint.sh"
IN_IMAGE = "/opt/hopbench"
MESH_CLIENT = f"{IN_IMAGE}/bin/meshclient"  # bench.providers.kubeconfig.deploy passes it
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: what the rootfs layer holds left out: docs, manuals, translations and apt's caches
PRUNE = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
         "usr/share/lintian", "var/cache/apt", "var/lib/apt/lists", "var/log",
         "var/cache/debconf")
ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       f"PYTHONPATH={IN_IMAGE}", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1")


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the rootfs layer's content; its hash names the cache entry."""

    suite: str = "bookworm"
    variant: str = "minbase"
    packages: tuple[str, ...] = ("python3", "nftables", "iptables", "ipvsadm")
    prune: tuple[str, ...] = PRUNE
    revision: int = 1  # bump when the steps below change what lands in the rootfs

    def key(self) -> str:
        raw = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(raw).hexdigest()[:16]


RECIPE = Recipe()


@dataclass(frozen=True)
class AgentImage:
    ref: str
    archive: Path
    seconds: float       # wall time of this call
    rootfs_cached: bool  # the Debian layer came from the cache


def work_dir() -> Path:
    return cache_dir() / "agent-image"


def agent_files(mesh_client: Path | None = None) -> dict[str, Path]:
    """In-image path -> host file: the agent package (stdlib only) and the entrypoint;
    the mesh client binary too when given."""
    files = {f"{IN_IMAGE}/bench/__init__.py": PKG_ROOT / "__init__.py",
             f"{IN_IMAGE}/entrypoint.sh": ENTRYPOINT}
    for py in sorted((PKG_ROOT / "agent").glob("*.py")):
        files[f"{IN_IMAGE}/bench/agent/{py.name}"] = py
    if mesh_client is not None:
        files[MESH_CLIENT] = mesh_client
    return files


def image_tag(recipe: Recipe = RECIPE, mesh_client: Path | None = None) -> str:
    """`<harness version>-<hash of rootfs recipe and agent files>`: a changed agent (or mesh
    client binary) is a new tag, so a node never runs a stale image that happens to be
    present."""
    h = hashlib.sha256(recipe.key().encode())
    for inside, host in sorted(agent_files(mesh_client).items()):
        h.update(inside.encode() + b"\0" + host.read_bytes() + b"\0")
    return f"{__version__}-{h.hexdigest()[:12]}"


def mesh_client_binary() -> Path:
    """The meshclient the mesh image carries (built through the module proxy once)."""
    from bench.build.meshbuild import require_mesh

    return require_mesh().path("meshclient")


def default_ref(mesh: bool = False) -> str:
    """The locally built image's reference. With `mesh`, from the cached mesh client only
    (never builds: a cluster hopbench did not create cannot hold an image of a client
    never built here), else one line saying what to do."""
    if not mesh:
        return f"{REPO}:{image_tag()}"
    from bench.build.meshbuild import mesh_toolset

    try:
        tools = mesh_toolset()
    except HopbenchError:  # no Go: nothing was built here either
        tools = None
    if tools is None:
        raise UserError("--mesh with --kubeconfig: the agent image must carry the mesh "
                        "client; pass --agent-image REF (an image built with `python -m "
                        "bench.build.agentimage --mesh` and pushed where the nodes pull)")
    return f"{REPO}:{image_tag(mesh_client=tools.path('meshclient'))}"


def debian_mirror(sources: tuple[Path, ...] = (Path("/etc/apt/sources.list"),
                                              Path("/etc/apt/sources.list.d"))) -> str:
    """The Debian archive this machine's apt uses (HOPBENCH_DEBIAN_MIRROR overrides)."""
    if env := os.environ.get("HOPBENCH_DEBIAN_MIRROR"):
        return env
    files: list[Path] = []
    for s in sources:
        files += sorted(s.glob("*.list")) + sorted(s.glob("*.sources")) if s.is_dir() else [s]
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        if uri := parse_mirror(text, deb822=f.suffix == ".sources"):
            return uri
    return DEFAULT_MIRROR


def parse_mirror(text: str, deb822: bool) -> str | None:
    """First `deb` source serving Debian's main archive (not security, not third party)."""
    def debian(uri: str, suites: list[str]) -> bool:
        return ("debian" in uri and "security" not in uri
                and any(re.fullmatch(r"[a-z]+(-updates)?", s) for s in suites)
                and not any(s.endswith("-security") for s in suites))

    if deb822:
        for block in re.split(r"\n\s*\n", text):
            fields = {}
            for line in block.splitlines():
                if ":" in line and not line.startswith(("#", " ")):
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.split()
            uris, suites = fields.get("uris", []), fields.get("suites", [])
            if "deb" in fields.get("types", []) and uris and debian(uris[0], suites):
                return uris[0]
        return None
    for line in text.splitlines():
        parts = re.sub(r"\[[^]]*\]", "", line).split()
        if len(parts) >= 3 and parts[0] == "deb" and debian(parts[1], [parts[2]]):
            return parts[1]
    return None


@contextmanager
def _locked() -> Iterator[None]:
    work_dir().mkdir(parents=True, exist_ok=True)
    with open(work_dir() / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    return sorted((p for p in points if p.startswith(prefix) or p == prefix[:-1]),
                  key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """Delete a (possibly half-built) rootfs, never through a mount (a killed debootstrap
    leaves /proc and /sys mounted inside the target)."""
    if not path.exists():
        return
    for point in _mounts_under(path):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    if left := _mounts_under(path):
        raise BuildError(f"cannot remove {path}: still mounted: {', '.join(left)}")
    shutil.rmtree(path)


def _debootstrap(recipe: Recipe, target: Path, log: Path) -> None:
    if os.geteuid() != 0:
        raise PrerequisiteError("building the agent image without Docker needs root "
                                "(debootstrap); or build workloads/agent/Dockerfile")
    if not shutil.which("debootstrap"):
        raise PrerequisiteError("debootstrap is not installed: apt-get install debootstrap "
                                "(or build workloads/agent/Dockerfile with Docker)")
    debs = work_dir() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    cmd = ["debootstrap", f"--variant={recipe.variant}", "--components=main",
           f"--include={','.join(recipe.packages)}", f"--cache-dir={debs}",
           recipe.suite, str(target), debian_mirror()]
    with open(log, "w") as out:
        out.write(" ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        tail = [ln for ln in log.read_text().splitlines() if ln.strip()][-1:]
        raise BuildError(f"debootstrap {recipe.suite} failed (exit {proc.returncode}): "
                         f"{tail[0] if tail else 'no output'} (log: {log})")


def _prune(recipe: Recipe, root: Path) -> None:
    for rel in recipe.prune:
        d = root / rel
        if d.is_dir() and not d.is_symlink():
            for child in d.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    # host details debootstrap copied in; the runtime provides both in a pod
    (root / "etc" / "resolv.conf").unlink(missing_ok=True)
    (root / "etc" / "hostname").write_text("hopbench-agent\n")


def rootfs_layer(recipe: Recipe = RECIPE, say: Say = print, force: bool = False
                 ) -> tuple[Path, bool]:
    """The Debian rootfs as a layer tarball, built once per recipe. (path, was cached)."""
    out = work_dir() / f"rootfs-{recipe.suite}-{recipe.key()}.tar"
    if out.exists() and not force:
        return out, True
    target = work_dir() / f"rootfs-{recipe.key()}.partial"
    _remove_tree(target)
    started = time.monotonic()
    say(f"agent image: debootstrap {recipe.suite} ({', '.join(recipe.packages)}) "
        f"from {debian_mirror()}")
    try:
        _debootstrap(recipe, target, work_dir() / "debootstrap.log")
        if _mounts_under(target):
            raise BuildError(f"debootstrap left mounts under {target}")
        _prune(recipe, target)
        dir_layer(target, out)
    finally:
        _remove_tree(target)
    say(f"agent image: Debian layer {out.stat().st_size / 2**20:.0f} MiB in "
        f"{time.monotonic() - started:.0f}s")
    return out, False


def archive_name(tag: str, mesh: bool) -> str:
    """One cached archive per flavour: `agent_<tag>` and `agent-mesh_<tag>`."""
    return f"{'agent-mesh' if mesh else 'agent'}_{tag}.oci.tar"


def build(say: Say = print, force: bool = False, recipe: Recipe = RECIPE,
          mesh: bool = False) -> AgentImage:
    """The agent image archive for the current sources; cached under cache_dir().
    `mesh`: with the mesh client (built first if the mesh tools are not cached)."""
    started = time.monotonic()
    client = mesh_client_binary() if mesh else None
    ref = f"{REPO}:{image_tag(recipe, client)}"
    archive = work_dir() / archive_name(ref.rsplit(":", 1)[1], mesh)
    with _locked():
        layer, cached = rootfs_layer(recipe, say, force)
        if force or not archive.exists():
            write_archive(ImageSpec(ref=ref, files=agent_files(client),
                                    entrypoint=[f"{IN_IMAGE}/entrypoint.sh"], cmd=[],
                                    base_layers=(layer,), env=ENV), archive)
        _drop_stale(archive, layer, mesh)
    return AgentImage(ref, archive, round(time.monotonic() - started, 2), cached)


def _drop_stale(archive: Path, layer: Path, mesh: bool = False) -> None:
    """Keep the cache to the current archive of each flavour and the rootfs layer (each is
    100+ MiB)."""
    for old in work_dir().glob(archive_name("*", mesh)):
        if old != archive:
            old.unlink(missing_ok=True)
    for old in work_dir().glob("rootfs-*.tar"):
        if old != layer:
            old.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.build.agentimage",
                                 description="Build the hopbench agent image (OCI archive).")
    ap.add_argument("--force", action="store_true", help="rebuild the Debian layer too")
    ap.add_argument("--mesh", action="store_true",
                    help="carry the mesh client (meshclient), for --kubeconfig --mesh runs")
    ap.add_argument("--import-into", metavar="CLUSTER",
                    help="import it into every node of this running local cluster")
    args = ap.parse_args(argv)
    try:
        image = build(force=args.force, mesh=args.mesh)
        if args.import_into:
            from bench.cluster.local import cluster
            from bench.cluster.local.spec import ClusterSpec

            spec = ClusterSpec.load(args.import_into)
            for node in spec.node_names():
                cluster.import_images(spec, node, {image.ref: image.archive})
    except HopbenchError as exc:
        raise SystemExit(f"hopbench: error: {exc}") from None
    print(json.dumps({"ref": image.ref, "archive": str(image.archive),
                      "seconds": image.seconds, "rootfs_cached": image.rootfs_cached}))


if __name__ == "__main__":
    main()
