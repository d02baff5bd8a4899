"""Every kind config, checked by the real kind and the real upstream types, without Docker.

Which path, and why (kind v0.31.0 source, pkg/cluster/internal/create/create.go and
pkg/internal/apis/config/encoding/load.go):
- `kind create cluster --config X` strictly decodes X into v1alpha4 types (unknown
  fields are errors) while applying its options, BEFORE it touches a container runtime;
  but `Cluster.Validate()` (proxy mode, roles, subnets, ports) runs only AFTER
  `docker info` has answered. No kind command validates a config without a runtime.
- So the pinned kind, built from source through the Go module proxy, runs against a
  stand-in `docker` (bench.build.kindconfig.STAND_IN_DOCKER) that answers only the read-only
  probes (`docker info`, `docker ps`, `docker inspect --type=image`: "the node image is
  present") and refuses everything else. A config kind accepts gets through decode and
  Validate and reaches provisioning, whose first other command (`docker network ls`) is
  refused. The plain-CLI test below shows the decode half with
  this machine's real docker CLI and no engine at all.
- kind never decodes kubeadmConfigPatches before a node exists (it merge-patches them into
  kubeadm's config inside the node and silently drops a patch matching no document), and
  kube-proxy and kube-apiserver fall back to lenient decoding; so
  kind-configs/validate/main.go, built against the pinned Kubernetes modules, decodes each
  patch strictly into kubeadm v1beta3 / kube-proxy v1alpha1 types, runs kube-proxy's
  validation and the apiserver's flag parsing, and loads the audit policy.
Each negative case below misspells or breaks one thing and must be refused.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.build import kindconfig
from bench.build.kindconfig import CONFIG_DIR, MULTI_NODE, KindVerdict
from bench.cluster.local.spec import PROXY_MODES

CONFIGS = [kindconfig.filename(m, n) for m in PROXY_MODES for n in (1, MULTI_NODE)]


@pytest.fixture(scope="module")
def kind_bin() -> Path:
    return kindconfig.kind_binary()


@pytest.fixture(scope="module")
def checker() -> Path:
    return kindconfig.checker_binary()


def test_built_kind_is_the_pin(kind_bin: Path) -> None:
    out = subprocess.run([str(kind_bin), "version"], check=False, capture_output=True,
                         text=True).stdout
    assert out.startswith(f"kind {kindconfig.load_kind_pins().version} ")


@pytest.mark.parametrize("name", CONFIGS)
def test_kind_accepts(kind_bin: Path, name: str) -> None:
    verdict = kindconfig.kind_check(CONFIG_DIR / name, kind_bin)
    assert verdict.accepted, verdict.output
    assert "Creating cluster" in verdict.output
    assert verdict.images == [kindconfig.load_kind_pins().node_image]


def test_patches_and_audit_policy_decode(checker: Path) -> None:
    reports = kindconfig.patch_check([CONFIG_DIR / n for n in CONFIGS],
                                     CONFIG_DIR / kindconfig.AUDIT_POLICY, checker)
    policy, *configs = reports
    assert policy.errors == [] and policy.checked == ["audit.k8s.io/v1 Policy"]
    for r in configs:
        assert r.errors == [], r.file
        assert r.checked == [
            "kind.x-k8s.io/v1alpha4 Cluster",
            "kubeadmConfigPatches[0] kubeadm.k8s.io/v1beta3 ClusterConfiguration",
            "kubeadmConfigPatches[1] kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration",
        ], r.file


# --- negative cases: one broken thing each -------------------------------------------------


def broken(tmp_path: Path, old: str, new: str, source: str = "nftables-3node.yaml") -> Path:
    text = (CONFIG_DIR / source).read_text()
    assert old in text, f"{old!r} not in {source}"
    out = tmp_path / source
    out.write_text(text.replace(old, new))
    shutil.copy(CONFIG_DIR / kindconfig.AUDIT_POLICY, tmp_path / kindconfig.AUDIT_POLICY)
    return out


@pytest.mark.parametrize("old,new,expect", [
    ("  kubeProxyMode: nftables", "  kubeProxyMod: nftables",
     "field kubeProxyMod not found in type v1alpha4.Networking"),
    ("  extraMounts:", "  extraMount:", "field extraMount not found in type v1alpha4.Node"),
    ("kubeadmConfigPatches:", "kubeadmConfigPatch:", "field kubeadmConfigPatch not found"),
    ("  kubeProxyMode: nftables", "  kubeProxyMode: nftable", "invalid kubeProxyMode: nftable"),
    ("- role: worker", "- role: workers", '"workers" is not a valid node role'),
    ("  podSubnet: 10.244.0.0/16", "  podSubnet: 10.244.0.0/33", "invalid pod subnet"),
])
def test_kind_refuses(kind_bin: Path, tmp_path: Path, old: str, new: str, expect: str) -> None:
    verdict: KindVerdict = kindconfig.kind_check(broken(tmp_path, old, new), kind_bin)
    assert not verdict.accepted
    assert verdict.images == []
    assert expect in verdict.output


@pytest.mark.parametrize("old,new,expect", [
    ("    minSyncPeriod: 1s", "    minSyncPeriods: 1s",
     'unknown field "iptables.minSyncPeriods"'),
    ("  metricsBindAddress:", "  metricBindAddress:", 'unknown field "metricBindAddress"'),
    ("    syncPeriod: 30s", "    syncPeriod: 30 seconds", 'unknown unit " seconds"'),
    # the ipvs section of an nftables config: checked for every mode, not just the config's
    ("    minSyncPeriod: 0s", "    minSyncPeriod: -1s", "in mode ipvs"),
    ("audit-policy-file:", "audit-policy-fle:", "kube-apiserver has no flag --audit-policy-fle"),
    ("audit-log-maxsize: '100'", "audit-log-maxsize: lots", 'invalid argument "lots"'),
    ("    extraVolumes:", "    extraVolume:", 'unknown field "extraVolume"'),
    ("pathType: DirectoryOrCreate", "pathType: DirOrCreate", 'unknown pathType "DirOrCreate"'),
    ("apiVersion: kubeadm.k8s.io/v1beta3", "apiVersion: kubeadm.k8s.io/v1beta4",
     "kind would drop the patch"),
    ("kind: KubeProxyConfiguration", "kind: KubeProxyConfig", "kind would drop the patch"),
])
def test_checker_refuses(checker: Path, tmp_path: Path, old: str, new: str,
                         expect: str) -> None:
    (report,) = kindconfig.patch_check([broken(tmp_path, old, new)], None, checker)
    assert any(expect in e for e in report.errors), report.errors


@pytest.mark.parametrize("old,new,expect", [
    ("omitStages:", "omitStage:", 'unknown field "omitStage"'),
    ("- level: Metadata", "- level: Metadataa", 'Unsupported value: "Metadataa"'),
])
def test_checker_refuses_audit_policy(checker: Path, tmp_path: Path, old: str, new: str,
                                      expect: str) -> None:
    text = (CONFIG_DIR / kindconfig.AUDIT_POLICY).read_text()
    assert old in text
    policy = tmp_path / "audit-policy.yaml"
    policy.write_text(text.replace(old, new))
    (report,) = kindconfig.patch_check([], policy, checker)
    assert any(expect in e for e in report.errors), report.errors


# --- the decode half with no stand-in: real docker CLI, no engine ----------------------------


def run_kind_plain(kind_bin: Path, config: Path, tmp_path: Path) -> str:
    proc = subprocess.run([str(kind_bin), "create", "cluster", "--name", "hbplain", "--config",
                           str(config), "--kubeconfig", str(tmp_path / "kubeconfig")],
                          cwd=config.parent, check=False, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    return proc.stdout + proc.stderr


@pytest.fixture
def no_engine() -> Callable[[], None]:
    docker = shutil.which("docker")
    if not docker:
        pytest.skip("no docker CLI here")
    info = subprocess.run([docker, "info"], check=False, capture_output=True, timeout=30)
    if info.returncode == 0:
        pytest.skip("a Docker engine is reachable: this test would create a real cluster")
    return lambda: None


def test_kind_decodes_before_it_needs_docker(kind_bin: Path, tmp_path: Path,
                                             no_engine: Callable[[], None]) -> None:
    good = run_kind_plain(kind_bin, CONFIG_DIR / "ipvs.yaml", tmp_path)
    assert "failed to get docker info" in good and "unable to decode config" not in good
    typo = run_kind_plain(kind_bin, broken(tmp_path, "  kubeProxyMode: nftables",
                                           "  kubeProxyMode: nftables\n  ipFamly: ipv4"),
                          tmp_path)
    assert "unable to decode config" in typo and "field ipFamly not found" in typo
    assert "docker info" not in typo
