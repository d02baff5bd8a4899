"""Which kubeconfigs name a cluster hopbench created, and which image names an archive
carries (what `hopbench cluster load-image` imports and then reports)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from bench.build.images import ImageSpec, write_archive
from bench.cluster import imageload, kind
from bench.errors import UserError


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOPBENCH_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("HOPBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _local(roots: Path, name: str) -> Path:
    d = roots / "state" / name
    d.mkdir(parents=True)
    (d / "spec.json").write_text("{}")
    (d / "kubeconfig").write_text("apiVersion: v1\n")
    return d / "kubeconfig"


def test_local_cluster_kubeconfig_is_recognised(roots: Path) -> None:
    path = _local(roots, "lab1")
    assert imageload.recognise(path) == imageload.OwnCluster("local", "lab1")
    link = roots / "mine.kubeconfig"
    link.symlink_to(path)  # a symlink still names the cluster's own file
    assert imageload.recognise(link) == imageload.OwnCluster("local", "lab1")


def test_copies_and_other_files_are_not_recognised(roots: Path) -> None:
    path = _local(roots, "lab1")
    copy = roots / "copy" / "kubeconfig"
    copy.parent.mkdir()
    copy.write_text(path.read_text())
    assert imageload.recognise(copy) is None
    (roots / "state" / "gone").mkdir()  # a state dir without spec.json is no cluster
    (roots / "state" / "gone" / "kubeconfig").write_text("")
    assert imageload.recognise(roots / "state" / "gone" / "kubeconfig") is None
    assert imageload.recognise(roots / "state" / "lab1" / "admin-inside.kubeconfig") is None


def test_kind_cluster_kubeconfig_is_recognised(roots: Path) -> None:
    path = kind.kubeconfig_path("hb-kind")
    assert path.is_relative_to(roots / "cache")
    assert imageload.recognise(path) == imageload.OwnCluster("kind", "hb-kind")


def test_unknown_provider_is_refused() -> None:
    with pytest.raises(UserError, match="unknown provider 'docker' \\(local or kind\\)"):
        imageload.OwnCluster("docker", "x")


def test_oci_archive_names(tmp_path: Path) -> None:
    f = tmp_path / "hello"
    f.write_text("hi\n")
    archive = write_archive(ImageSpec("localhost/test/hello:1", {"/hello": f}, ["/hello"], []),
                            tmp_path / "hello.oci.tar")
    assert imageload.archive_refs(archive) == ["localhost/test/hello:1"]


def test_docker_save_archive_names(tmp_path: Path) -> None:
    archive = tmp_path / "saved.tar"
    manifest = json.dumps([{"Config": "c.json", "RepoTags": ["example/a:1", "example/a:2"],
                            "Layers": []}]).encode()
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    assert imageload.archive_refs(archive) == ["example/a:1", "example/a:2"]


def test_not_an_archive_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"image archive {tmp_path}/nope.tar does not exist"):
        imageload.archive_refs(tmp_path / "nope.tar")
    with pytest.raises(UserError, match="is not a file"):
        imageload.archive_refs(tmp_path)
    (tmp_path / "text.tar").write_text("not a tarball\n")
    with pytest.raises(UserError, match="text.tar is not a tar archive") as err:
        imageload.archive_refs(tmp_path / "text.tar")
    assert "\n" not in str(err.value)
    with tarfile.open(tmp_path / "other.tar", "w") as tar:
        tar.addfile(tarfile.TarInfo("README"), io.BytesIO(b""))
    with pytest.raises(UserError, match="neither an OCI image layout nor a `docker save`"):
        imageload.archive_refs(tmp_path / "other.tar")
