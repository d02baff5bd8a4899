"""The mesh build's cache key and the go.mod files it writes (bench/build/meshbuild.py).
Pure: no Go, no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.build import meshbuild
from bench.build.gobuild import _write_module
from bench.cluster.toolset import cache_key, load_pins
from bench.errors import BuildError

PINS = meshbuild.MeshPins(istio="v0.0.0-20260827124520-eed52ebb66ad",
                          istio_binaries=("pilot/cmd/pilot-discovery",),
                          istio_crds="manifests/charts/base/files/crd-all.gen.yaml",
                          grpc="v1.85.0")


def sources(tmp_path: Path, main: str = "package main\n") -> Path:
    src = tmp_path / "meshclient"
    src.mkdir(exist_ok=True)
    (src / "main.go").write_text(main)
    (src / "probe.go").write_text("package main\n\nfunc probe() {}\n")
    return src


def test_key_changes_when_a_go_file_changes(tmp_path: Path) -> None:
    src = sources(tmp_path)
    before = meshbuild.mesh_key(PINS, "go1.26.8", meshbuild.sources_digest(src))
    assert meshbuild.mesh_key(PINS, "go1.26.8", meshbuild.sources_digest(src)) == before
    (src / "probe.go").write_text("package main\n\nfunc probe() { _ = 1 }\n")
    edited = meshbuild.mesh_key(PINS, "go1.26.8", meshbuild.sources_digest(src))
    assert edited != before
    (src / "edslog.go").write_text("package main\n")  # a new file counts too
    assert meshbuild.mesh_key(PINS, "go1.26.8", meshbuild.sources_digest(src)) != edited


def test_key_ignores_other_files_and_follows_pins_and_go(tmp_path: Path) -> None:
    src = sources(tmp_path)
    digest = meshbuild.sources_digest(src)
    (src / "README.md").write_text("notes")
    assert meshbuild.sources_digest(src) == digest
    key = meshbuild.mesh_key(PINS, "go1.26.8", digest)
    assert key.startswith("istio-eed52ebb66ad_grpc-v1.85.0_")
    other_grpc = meshbuild.MeshPins(PINS.istio, PINS.istio_binaries, PINS.istio_crds,
                                    "v1.85.1")
    assert meshbuild.mesh_key(other_grpc, "go1.26.8", digest) != key
    assert meshbuild.mesh_key(PINS, "go1.26.9", digest) != key


def test_no_sources_is_a_build_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="meshclient sources not found"):
        meshbuild.sources_digest(tmp_path)


def test_meshclient_gomod_requires_the_grpc_pin() -> None:
    assert meshbuild.meshclient_gomod("v1.85.0") == (
        "module hopbench.local/meshclient\n\ngo 1.25.0\n\n"
        "require google.golang.org/grpc v1.85.0\n")


def test_istio_wrapper_module_has_go_1_26_and_the_pin(tmp_path: Path) -> None:
    pkg = "istio.io/istio/pilot/cmd/pilot-discovery"
    _write_module(tmp_path, "hopbench.local/istio", [f"istio.io/istio {PINS.istio}"], [],
                  [pkg], go_line=meshbuild.ISTIO_GO)
    gomod = (tmp_path / "go.mod").read_text()
    assert gomod.splitlines()[:3] == ["module hopbench.local/istio", "", "go 1.26.0"]
    assert f"\tistio.io/istio {PINS.istio}" in gomod
    assert "replace" not in gomod
    assert f'_ "{pkg}"' in (tmp_path / "tools.go").read_text()


def test_write_module_default_go_line_is_unchanged(tmp_path: Path) -> None:
    _write_module(tmp_path, "hopbench.local/etcd", ["go.etcd.io/etcd/server/v3 v3.6.16"], [],
                  ["go.etcd.io/etcd/server/v3"])
    assert "\ngo 1.25.0\n" in (tmp_path / "go.mod").read_text()


def test_pins_have_the_mesh_sections_and_leave_the_kubernetes_key_alone() -> None:
    pins = meshbuild.load_mesh_pins()
    assert pins.istio_binaries == ("pilot/cmd/pilot-discovery",)
    assert pins.grpc.startswith("v1.")
    k8s = load_pins()  # still parses; the mesh pins are no part of its key
    assert PINS.istio not in cache_key(k8s, "go1.26.8")
    assert k8s.kubernetes.startswith("v1.") and k8s.etcd.startswith("v3.")


def test_repository_sources_hash() -> None:
    src = meshbuild.meshclient_sources()
    assert {p.name for p in src.glob("*.go")} >= {"main.go", "lbwatch.go", "edslog.go",
                                                  "probe.go"}
    assert len(meshbuild.sources_digest(src)) == 64
