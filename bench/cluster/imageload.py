"""Put an image archive into every node of a cluster hopbench created, as a user would.

`hopbench cluster load-image NAME ARCHIVE` (like `kind load image-archive`) and
`hopbench run --kubeconfig PATH` without `--agent-image` both come here. A local
cluster's nodes each run their own containerd, whose socket only root reaches under the
cluster's run dir (`hopbench cluster exec` enters the node's network namespace, not its
mount of that socket), so the archive goes in with `ctr images import` through that
socket (bench.cluster.local.cluster.import_images); a kind cluster's nodes get it with
`kind load image-archive`.

A cluster hopbench created is recognised from its kubeconfig's path: the local cluster's
is `<state root>/NAME/kubeconfig` (`hopbench cluster kubeconfig NAME`), kind's is the one
`hopbench cluster up --provider kind` wrote (bench.cluster.kind.kubeconfig_path). A copy of either
file elsewhere is just some cluster's kubeconfig.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.cluster.local.spec import ClusterSpec
from bench.errors import ClusterError, UserError
from bench.paths import state_root

Say = Callable[[str], None]
PROVIDERS = ("local", "kind")
CONTAINERD_NAMESPACE = "k8s.io"  # the one the kubelet's CRI uses


@dataclass(frozen=True)
class OwnCluster:
    """A cluster hopbench created: which provider made it, and its name."""

    provider: str
    name: str

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise UserError(f"unknown provider {self.provider!r} (local or kind)")

    def __str__(self) -> str:
        return f"{self.provider} cluster {self.name!r}"


def recognise(kubeconfig: str | Path) -> OwnCluster | None:
    """The hopbench cluster whose kubeconfig this is (by its path), else None."""
    from bench.cluster import kind

    path = Path(kubeconfig).expanduser().resolve()
    if path.name != "kubeconfig":
        return None
    name = path.parent.name
    if path.parent.parent == state_root().resolve() and (path.parent / "spec.json").exists():
        return OwnCluster("local", name)
    if kind.NAME_RE.match(name) and path == kind.kubeconfig_path(name).resolve():
        return OwnCluster("kind", name)
    return None


def archive_refs(archive: Path) -> list[str]:
    """The image names an OCI layout or `docker save` tarball carries; one line if it is
    not such an archive."""
    if not archive.is_file():
        raise UserError(f"image archive {archive} does not exist" if not archive.exists()
                        else f"image archive {archive} is not a file")
    try:
        with tarfile.open(archive) as tar:
            names = set(tar.getnames())
            if "index.json" in names:
                index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
                refs = [str(a.get("io.containerd.image.name")
                            or a.get("org.opencontainers.image.ref.name") or "")
                        for m in index.get("manifests", [])
                        for a in [m.get("annotations") or {}]]
            elif "manifest.json" in names:
                manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
                refs = [str(t) for m in manifest for t in m.get("RepoTags") or []]
            else:
                raise UserError(f"{archive} is neither an OCI image layout nor a "
                                "`docker save` archive (no index.json or manifest.json)")
    except tarfile.ReadError:
        raise UserError(f"{archive} is not a tar archive (OCI layout or `docker save`)"
                        ) from None
    except (tarfile.TarError, OSError, ValueError, AttributeError, TypeError) as exc:
        why = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{archive} is not a readable image archive: {why}") from None
    refs = [r for r in refs if r]
    if not refs:
        raise UserError(f"{archive} names no image (tag it when you build or save it)")
    return refs


# --- the local cluster -------------------------------------------------------------------


def _local_spec(name: str) -> ClusterSpec:
    """The running local cluster's spec; one line if there is none or its nodes' containerd
    are not running."""
    from bench.cluster.local import live, procs

    spec = ClusterSpec.load(name)
    pids = live.read_state(spec).get("pids", {})
    down = [n for n in spec.node_names()
            if not procs.alive(int(pids.get(f"containerd-{n}", 0)))]
    if down:
        raise UserError(f"local cluster {name!r} is not running (containerd down on "
                        f"{', '.join(down)}; see `hopbench cluster status`)")
    return spec


def node_images(spec: ClusterSpec, node: str) -> set[str]:
    """The image names a local node's containerd holds for the kubelet."""
    proc = subprocess.run(["ctr", "-a", str(spec.containerd_sock(node)), "-n",
                           CONTAINERD_NAMESPACE, "images", "ls", "-q"],
                          capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise ClusterError(f"listing the images on {node}: {proc.stderr.strip()}")
    return set(proc.stdout.split())


def _load_local(name: str, archive: Path, refs: list[str], say: Say) -> list[str]:
    from bench.cluster.local import cluster

    spec = _local_spec(name)
    missing = [n for n in spec.node_names() if not set(refs) <= node_images(spec, n)]
    if have := [n for n in spec.node_names() if n not in missing]:
        say(f"{', '.join(refs)} already on {', '.join(have)}")
    if missing:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(missing)) as pool:
            for f in [pool.submit(cluster.import_images, spec, n, {refs[0]: archive})
                      for n in missing]:
                f.result()
        say(f"imported {', '.join(refs)} into {', '.join(missing)} of local cluster "
            f"{name!r} in {time.monotonic() - started:.1f}s")
    return spec.node_names()


# --- kind --------------------------------------------------------------------------------


def _kind_binary(name: str) -> str:
    from bench.cluster import kind

    kind.check_name(name)
    kind.require_docker()
    binary = kind.require_kind()
    if name not in kind.cluster_names(binary):
        raise UserError(f"no kind cluster named {name!r} (see `kind get clusters`)")
    return binary


def _load_kind(name: str, archive: Path, refs: list[str], say: Say) -> list[str]:
    binary = _kind_binary(name)
    started = time.monotonic()
    proc = subprocess.run([binary, "load", "image-archive", str(archive), "--name", name],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise ClusterError(f"kind load image-archive into {name!r} failed: "
                           f"{(lines or [f'exit status {proc.returncode}'])[-1]}")
    nodes = subprocess.run([binary, "get", "nodes", "--name", name], capture_output=True,
                           text=True, check=False).stdout.split()
    say(f"loaded {', '.join(refs)} into kind cluster {name!r} "
        f"({', '.join(nodes) or 'its nodes'}) in {time.monotonic() - started:.1f}s")
    return nodes


# --- the entry points ------------------------------------------------------------------


def check(target: OwnCluster) -> None:
    """Refuse, with one line, a cluster that cannot take an image now."""
    if target.provider == "local":
        _local_spec(target.name)
    else:
        _kind_binary(target.name)


def load_archive(target: OwnCluster, archive: Path, say: Say = print) -> list[str]:
    """Import `archive` into every node of `target`; returns the node names."""
    refs = archive_refs(archive)
    load = _load_local if target.provider == "local" else _load_kind
    return load(target.name, archive, refs, say)


def agent_image_for(target: OwnCluster, say: Say = print) -> str:
    """Build the agent image for the current sources (cached) and load it into `target`'s
    nodes; returns its reference for the agent DaemonSet."""
    from bench.build import agentimage

    check(target)  # before a build that may take minutes
    say(f"agent image: none given (--agent-image), building and loading it into {target}")
    image = agentimage.build(say=say)
    say(f"agent image {image.ref}: archive ready in {image.seconds:.1f}s "
        f"({'cached' if image.rootfs_cached else 'new'} Debian layer)")
    load_archive(target, image.archive, say)
    return image.ref
