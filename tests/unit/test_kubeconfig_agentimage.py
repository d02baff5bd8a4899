"""The agent image without Docker: mirror discovery, the rootfs layer writer, archives
with base layers (and unchanged single-layer archives), and the content-derived tag."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest

from bench.build import agentimage
from bench.build.images import ImageSpec, dir_layer, write_archive

DEB822 = """\
Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
"""


def test_mirror_from_deb822() -> None:
    assert agentimage.parse_mirror(DEB822, deb822=True) == "http://mirror.example/debian"


def test_mirror_from_one_line_format() -> None:
    text = ("deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n"
            "deb http://security.debian.org/debian-security bookworm-security main\n"
            "deb [arch=amd64 signed-by=/k.gpg] http://ftp.example/debian bookworm main\n")
    assert agentimage.parse_mirror(text, deb822=False) == "http://ftp.example/debian"
    assert agentimage.parse_mirror("# nothing\n", deb822=False) is None


def test_mirror_override_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOPBENCH_DEBIAN_MIRROR", raising=False)
    assert agentimage.debian_mirror((tmp_path / "none",)) == agentimage.DEFAULT_MIRROR
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "debian.sources").write_text(DEB822)
    assert agentimage.debian_mirror((tmp_path / "d",)) == "http://mirror.example/debian"
    monkeypatch.setenv("HOPBENCH_DEBIAN_MIRROR", "http://local/debian")
    assert agentimage.debian_mirror((tmp_path / "d",)) == "http://local/debian"


def _tree(root: Path) -> None:
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    (root / "usr" / "bin" / "tool").chmod(0o750)
    os.link(root / "usr" / "bin" / "tool", root / "usr" / "bin" / "tool2")
    (root / "bin").symlink_to("usr/bin")
    (root / "dev").mkdir()
    os.mkfifo(root / "dev" / "fifo")


def test_dir_layer_keeps_links_drops_special_files(tmp_path: Path) -> None:
    _tree(tmp_path / "root")
    out = dir_layer(tmp_path / "root", tmp_path / "layer.tar")
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"bin", "dev", "usr", "usr/bin", "usr/bin/tool", "usr/bin/tool2"}
    assert members["bin"].issym() and members["bin"].linkname == "usr/bin"
    assert members["usr/bin/tool"].mode == 0o750 and members["usr/bin/tool"].uname == ""
    assert members["usr/bin/tool2"].islnk()
    again = dir_layer(tmp_path / "root", tmp_path / "layer2.tar")
    assert again.read_bytes() == out.read_bytes()


def _blobs(archive: Path) -> tuple[dict[str, bytes], dict[str, object]]:
    with tarfile.open(archive) as tar:
        blobs = {m.name: tar.extractfile(m).read() for m in tar.getmembers()  # type: ignore[union-attr]
                 if m.isfile()}
    index = json.loads(blobs["index.json"])
    manifest = json.loads(blobs["blobs/sha256/" + index["manifests"][0]["digest"][7:]])
    return blobs, manifest


def test_archive_with_base_layer(tmp_path: Path) -> None:
    _tree(tmp_path / "root")
    base = dir_layer(tmp_path / "root", tmp_path / "base.tar")
    (tmp_path / "app.py").write_text("print('hi')\n")
    spec = ImageSpec("localhost/x/y:t", {"/opt/app.py": tmp_path / "app.py"}, ["/e"], [],
                     base_layers=(base,), env=("PATH=/usr/sbin:/usr/bin", "A=1"))
    blobs, manifest = _blobs(write_archive(spec, tmp_path / "img.oci.tar"))
    layers = manifest["layers"]
    assert isinstance(layers, list) and len(layers) == 2
    assert layers[0]["digest"] == "sha256:" + hashlib.sha256(base.read_bytes()).hexdigest()
    for layer in layers:
        data = blobs["blobs/sha256/" + layer["digest"][7:]]
        assert len(data) == layer["size"]
        assert hashlib.sha256(data).hexdigest() == layer["digest"][7:]
    config = json.loads(blobs["blobs/sha256/" + manifest["config"]["digest"][7:]])  # type: ignore[index]
    assert config["rootfs"]["diff_ids"] == [la["digest"] for la in layers]
    assert config["config"]["Env"] == ["PATH=/usr/sbin:/usr/bin", "A=1"]


def test_single_layer_archives_are_unchanged(tmp_path: Path) -> None:
    """The agnhost and pause images keep one layer and the old PATH."""
    (tmp_path / "bin").write_bytes(b"x")
    spec = ImageSpec("localhost/hopbench/pause:t", {"/agnhost": tmp_path / "bin"},
                     ["/agnhost", "pause"], [])
    blobs, manifest = _blobs(write_archive(spec, tmp_path / "p.oci.tar"))
    assert len(manifest["layers"]) == 1  # type: ignore[arg-type]
    config = json.loads(blobs["blobs/sha256/" + manifest["config"]["digest"][7:]])  # type: ignore[index]
    assert config["config"]["Env"] == ["PATH=/usr/local/bin:/usr/bin:/bin"]


def test_agent_files_and_tag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = agentimage.agent_files()
    assert "/opt/hopbench/bench/agent/server.py" in files
    assert "/opt/hopbench/bench/__init__.py" in files
    assert os.access(files["/opt/hopbench/entrypoint.sh"], os.X_OK)
    tag = agentimage.image_tag()
    assert tag.startswith("0.") and tag == agentimage.image_tag()
    assert agentimage.default_ref() == f"{agentimage.REPO}:{tag}"
    fake = tmp_path / "server.py"
    fake.write_text("changed")
    monkeypatch.setattr(agentimage, "agent_files", lambda mesh_client=None: {**files,
                        "/opt/hopbench/bench/agent/server.py": fake})
    assert agentimage.image_tag() != tag
    other = agentimage.Recipe(packages=("python3",))
    assert agentimage.image_tag(other) != agentimage.image_tag()
