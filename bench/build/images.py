"""Build OCI image archives locally (no registry, no Docker) for containerd to import.

An image here is one uncompressed layer plus a config, written as an OCI layout
tarball whose index names the image (`io.containerd.image.name`), which
`ctr images import` understands. An image may also start from prebuilt layer
tarballs (`base_layers`, e.g. a Debian rootfs made by `dir_layer`), which are
streamed from disk rather than held in memory. The pause image is agnhost with its `pause`
subcommand as entrypoint, so one static Go binary serves both.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from bench.cluster.toolset import Toolset
from bench.imagenames import AGNHOST, PAUSE
from bench.paths import cache_dir


@dataclass(frozen=True)
class ImageSpec:
    ref: str
    files: dict[str, Path]  # path in image -> host file
    entrypoint: list[str]
    cmd: list[str]
    base_layers: tuple[Path, ...] = ()  # uncompressed layer tarballs applied below `files`
    env: tuple[str, ...] = ("PATH=/usr/local/bin:/usr/bin:/bin",)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(files: dict[str, Path]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("tmp", "etc"):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755, 0
            tar.addfile(info)
        for inside, host in sorted(files.items()):
            data = host.read_bytes()
            info = tarfile.TarInfo(inside.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def dir_layer(root: Path, out: Path) -> Path:
    """Write the tree under `root` as an uncompressed layer tarball (owners, modes,
    symlinks and hard links kept; device nodes, fifos and sockets left out, since the
    runtime provides /dev). Entries are sorted, so the same tree gives the same bytes."""
    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if info.ischr() or info.isblk() or info.isfifo():
            return None
        info.uname = info.gname = ""
        return info

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".partial")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                path = Path(dirpath) / name
                if stat.S_ISSOCK(path.lstat().st_mode):
                    continue
                tar.add(path, arcname=str(path.relative_to(root)), recursive=False,
                        filter=keep)
    tmp.rename(out)
    return out


def write_archive(spec: ImageSpec, out: Path) -> Path:
    """Write an OCI layout tarball for one linux/amd64 image."""
    layer = _layer(spec.files)
    base = [(path, _file_digest(path), path.stat().st_size) for path in spec.base_layers]
    diff_ids = [d for _, d, _ in base] + [_digest(layer)]
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": spec.entrypoint, "Cmd": spec.cmd, "Env": list(spec.env)},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": d, "size": size} for _, d, size in base]
        + [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": _digest(layer), "size": len(layer)}],
    }, sort_keys=True).encode()
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": _digest(manifest), "size": len(manifest),
                       "platform": {"architecture": "amd64", "os": "linux"},
                       "annotations": {"io.containerd.image.name": spec.ref,
                                       "org.opencontainers.image.ref.name": spec.ref}}],
    }).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".partial")
    with tarfile.open(tmp, "w") as tar:
        def put(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
        put("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        put("index.json", index)
        for path, digest, size in base:
            info = tarfile.TarInfo("blobs/sha256/" + digest.split(":")[1])
            info.size, info.mtime = size, 0
            with open(path, "rb") as f:
                tar.addfile(info, f)
        for blob in (layer, config, manifest):
            put("blobs/sha256/" + _digest(blob).split(":")[1], blob)
    tmp.rename(out)
    return out


def standard_images(tools: Toolset) -> dict[str, Path]:
    """The agnhost and pause archives for this toolset, built once and cached."""
    tag = tools.pins.kubernetes
    agnhost = tools.path("agnhost")
    specs = [
        ImageSpec(f"{AGNHOST}:{tag}", {"/agnhost": agnhost}, ["/agnhost"], ["netexec"]),
        ImageSpec(f"{PAUSE}:{tag}", {"/agnhost": agnhost}, ["/agnhost", "pause"], []),
    ]
    out_dir = cache_dir() / "images" / tools.bin_dir.parent.name
    result = {}
    for spec in specs:
        path = out_dir / (spec.ref.rsplit("/", 1)[1].replace(":", "_") + ".oci.tar")
        if not path.exists():
            write_archive(spec, path)
        result[spec.ref] = path
    return result
