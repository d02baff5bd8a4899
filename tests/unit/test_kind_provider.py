"""The kind provider refuses clearly when Docker or kind is missing, before creating anything.

Nothing is mocked: PATH points at a temp dir that is empty, or that holds only the real
docker CLI (this machine has the CLI but no Docker engine, so `docker info` really fails).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.build.kindconfig import CONFIG_DIR
from bench.cluster import kind
from bench.errors import ClusterError, PrerequisiteError, UserError

REAL_DOCKER = shutil.which("docker")


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setenv("HOPBENCH_CACHE", str(tmp_path / "cache"))
    return bindir


def engine_reachable() -> bool:
    assert REAL_DOCKER
    info = subprocess.run([REAL_DOCKER, "info"], check=False, capture_output=True, timeout=30)
    return info.returncode == 0


@pytest.fixture
def docker_cli_only(empty_path: Path) -> Path:
    if not REAL_DOCKER:
        pytest.skip("no docker CLI on this machine")
    if engine_reachable():
        pytest.skip("a Docker engine is reachable here; the refusal path cannot be shown")
    (empty_path / "docker").symlink_to(REAL_DOCKER)
    return empty_path


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


def test_missing_kind(empty_path: Path) -> None:
    with pytest.raises(PrerequisiteError) as exc:
        kind.require_kind()
    assert "kind is not on PATH" in one_line(exc)
    assert "go install sigs.k8s.io/kind@v0.31" in str(exc.value)


def test_missing_docker(empty_path: Path) -> None:
    with pytest.raises(PrerequisiteError) as exc:
        kind.require_docker()
    assert "docker is not on PATH" in one_line(exc)


def test_docker_cli_without_engine(docker_cli_only: Path) -> None:
    with pytest.raises(PrerequisiteError) as exc:
        kind.require_docker()
    msg = one_line(exc)
    assert msg.startswith("docker cannot reach a Docker engine (")
    assert "daemon" in msg  # docker's own reason, e.g. "Cannot connect to the Docker daemon"


def test_up_refuses_without_engine_and_creates_nothing(docker_cli_only: Path,
                                                      tmp_path: Path) -> None:
    with pytest.raises(PrerequisiteError, match="cannot reach a Docker engine"):
        kind.up("nftables", nodes=3, name="hbtest", say=lambda m: None)
    assert not (tmp_path / "cache").exists()


def test_up_refuses_without_docker(empty_path: Path, tmp_path: Path) -> None:
    with pytest.raises(PrerequisiteError, match="docker is not on PATH"):
        kind.up("iptables", say=lambda m: None)
    assert not (tmp_path / "cache").exists()


def test_down_refuses_without_engine(docker_cli_only: Path) -> None:
    with pytest.raises(PrerequisiteError, match="cannot reach a Docker engine"):
        kind.down("hbtest", say=lambda m: None)


@pytest.mark.parametrize("args,fragment", [
    (("userspace", 1, "hb"), "unknown proxy mode 'userspace'"),
    (("iptables", 0, "hb"), "--nodes 0"),
    (("iptables", 1, "Bad_Name"), "kind cluster name 'Bad_Name'"),
])
def test_bad_input_is_refused_before_prerequisites(empty_path: Path, args: tuple[str, int, str],
                                                   fragment: str) -> None:
    with pytest.raises(UserError, match=fragment) as exc:
        kind.up(*args, say=lambda m: None)
    assert not isinstance(exc.value, PrerequisiteError)


def test_set_proxy_mode_without_kubeconfig(empty_path: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no kubeconfig for kind cluster 'hb'"):
        kind.set_proxy_mode("hb", "ipvs", kubeconfig=tmp_path / "nope")
    with pytest.raises(UserError, match="unknown proxy mode"):
        kind.set_proxy_mode("hb", "ebpf", kubeconfig=tmp_path / "nope")


def test_config_for_selects_committed_or_renders(empty_path: Path, tmp_path: Path) -> None:
    assert kind.config_for("ipvs", 1) == CONFIG_DIR / "ipvs.yaml"
    assert kind.config_for("nftables", 3) == CONFIG_DIR / "nftables-3node.yaml"
    rendered = kind.config_for("nftables", 4)
    assert rendered.parent == tmp_path / "cache" / "kind" / "configs"
    assert (rendered.parent / "audit-policy.yaml").exists()
    assert os.path.basename(rendered) == "nftables-4node.yaml"


KUBEADM_PROXY_CONF = """\
apiVersion: kubeproxy.config.k8s.io/v1alpha1
bindAddress: 0.0.0.0
clusterCIDR: 10.244.0.0/16
iptables:
  minSyncPeriod: 1s
  syncPeriod: 30s
kind: KubeProxyConfiguration
metricsBindAddress: 0.0.0.0:10249
mode: iptables
nftables:
  minSyncPeriod: 1s
"""


def test_with_mode_changes_only_the_mode() -> None:
    import yaml

    before = yaml.safe_load(KUBEADM_PROXY_CONF)
    after = yaml.safe_load(kind.with_mode(KUBEADM_PROXY_CONF, "nftables"))
    assert after.pop("mode") == "nftables"
    before.pop("mode")
    assert after == before


def test_with_mode_refuses_foreign_config() -> None:
    with pytest.raises(ClusterError, match="no KubeProxyConfiguration"):
        kind.with_mode("kind: Something\n", "ipvs")
    with pytest.raises(UserError, match="unknown proxy mode"):
        kind.with_mode(KUBEADM_PROXY_CONF, "userspace")


def test_parse_version() -> None:
    assert kind.parse_version("kind v0.31.0 go1.26.8 linux/amd64") == (0, 31, 0)
    assert kind.parse_version("kind v0.23.0-alpha+abc go1.22 linux/arm64") == (0, 23, 0)
    assert kind.parse_version("garbage") == ()


def test_kind_failure_is_reported_by_its_error_line() -> None:
    out = ("Creating cluster ...\nERROR: failed to create cluster: node(s) already exist\n"
           "Command Output: a lot\nmore\n")
    proc = subprocess.CompletedProcess(["kind"], 1, stdout="", stderr=out)
    assert kind._tail(proc) == "ERROR: failed to create cluster: node(s) already exist"
    assert kind._tail(subprocess.CompletedProcess(["kind"], 3, "", "")) == "exit status 3"
