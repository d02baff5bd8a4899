"""The kind configs: committed files equal the generator, every mode is there, and the
audit and kube-proxy wiring hangs together. Pure: no kind, no Docker, no Go."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.build import kindconfig
from bench.build.kindconfig import CONFIG_DIR, MULTI_NODE, KindConfig, ModeSync
from bench.cluster import kind
from bench.cluster.local.spec import PROXY_MODES
from bench.errors import UserError

CONFIGS = [(m, n) for m in PROXY_MODES for n in (1, MULTI_NODE)]


def load(mode: str, nodes: int) -> dict[str, Any]:
    data = yaml.safe_load((CONFIG_DIR / kindconfig.filename(mode, nodes)).read_text())
    assert isinstance(data, dict)
    return data


def patch(doc: dict[str, Any], kind_: str) -> dict[str, Any]:
    found = [yaml.safe_load(p) for p in doc["kubeadmConfigPatches"]]
    matching = [p for p in found if p["kind"] == kind_]
    assert len(matching) == 1, f"want exactly one {kind_} patch, got {found}"
    return matching[0]  # type: ignore[no-any-return]


def test_committed_files_equal_generator_output() -> None:
    assert kindconfig.drift() == [], "run `python -m bench.build.kindconfig` and commit the result"
    on_disk = {p.name for p in CONFIG_DIR.glob("*.yaml")}
    assert on_disk == set(kindconfig.committed_files())


def test_check_command_reports_up_to_date() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.build.kindconfig", "--check"],
                          check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "up to date" in proc.stdout


def test_check_command_reports_drift(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.build.kindconfig", "--check",
                           "--dest", str(tmp_path)], check=False, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "differs from generator: iptables.yaml" in proc.stdout


@pytest.mark.parametrize("mode,nodes", CONFIGS)
def test_every_mode_and_shape(mode: str, nodes: int) -> None:
    doc = load(mode, nodes)
    assert doc["apiVersion"] == "kind.x-k8s.io/v1alpha4" and doc["kind"] == "Cluster"
    assert doc["networking"]["kubeProxyMode"] == mode
    roles = [n["role"] for n in doc["nodes"]]
    assert roles == ["control-plane"] + ["worker"] * (nodes - 1)
    pins = kindconfig.load_kind_pins()
    assert {n["image"] for n in doc["nodes"]} == {pins.node_image}


def test_pins_are_kind_031_with_a_digest_pinned_135_image() -> None:
    pins = kindconfig.load_kind_pins()
    assert pins.version.startswith("v0.31.")
    assert pins.kubernetes.startswith("v1.35.")
    assert pins.node_image.startswith("kindest/node:v1.35.") and "@sha256:" in pins.node_image


@pytest.mark.parametrize("mode,nodes", CONFIGS)
def test_audit_wiring(mode: str, nodes: int) -> None:
    doc = load(mode, nodes)
    api = patch(doc, "ClusterConfiguration")
    assert api["apiVersion"] == "kubeadm.k8s.io/v1beta3"  # what kind v0.31 generates
    args, volumes = api["apiServer"]["extraArgs"], api["apiServer"]["extraVolumes"]
    assert all(isinstance(v, str) for v in args.values())  # v1beta3 extraArgs: map of strings
    policy_in_node = Path(args["audit-policy-file"])
    log_dir = Path(args["audit-log-path"]).parent
    mounts = {Path(v["mountPath"]): v for v in volumes}
    # the apiserver pod sees the policy and can write the log ...
    assert mounts[policy_in_node.parent]["hostPath"] == str(policy_in_node.parent)
    assert mounts[log_dir]["readOnly"] is False
    # ... and the control-plane node container holds the policy, from kind-configs/
    control_plane = doc["nodes"][0]
    (mount,) = control_plane["extraMounts"]
    assert Path(mount["containerPath"]) == policy_in_node
    assert (CONFIG_DIR / mount["hostPath"]).resolve() == CONFIG_DIR / kindconfig.AUDIT_POLICY
    assert all("extraMounts" not in n for n in doc["nodes"][1:])  # apiserver runs on one node


def test_audit_policy_records_pod_status_and_endpointslice_writes() -> None:
    policy = yaml.safe_load((CONFIG_DIR / kindconfig.AUDIT_POLICY).read_text())
    assert policy["apiVersion"] == "audit.k8s.io/v1" and policy["kind"] == "Policy"
    rules = policy["rules"]
    recorded = {(r["group"], res, rule["level"])
                for rule in rules[:-1] for r in rule["resources"] for res in r["resources"]}
    assert recorded == {("", "pods/status", "Metadata"),
                        ("discovery.k8s.io", "endpointslices", "Metadata")}
    for rule in rules[:-1]:
        assert {"update", "patch"} <= set(rule["verbs"])
    assert rules[-1] == {"level": "None"}  # everything else is dropped


@pytest.mark.parametrize("mode,nodes", CONFIGS)
def test_kube_proxy_patch(mode: str, nodes: int) -> None:
    proxy = patch(load(mode, nodes), "KubeProxyConfiguration")
    assert proxy["apiVersion"] == "kubeproxy.config.k8s.io/v1alpha1"
    assert "mode" not in proxy  # networking.kubeProxyMode owns the mode
    for m in PROXY_MODES:
        want = kindconfig.DEFAULT_SYNC[m]
        assert proxy[m] == {"minSyncPeriod": want.min_sync_period,
                            "syncPeriod": want.sync_period}
    assert proxy["metricsBindAddress"].endswith(f":{kind.KUBE_PROXY_METRICS_PORT}")


def test_upstream_default_sync_periods() -> None:
    assert kindconfig.DEFAULT_SYNC["iptables"] == ModeSync("1s", "30s")
    assert kindconfig.DEFAULT_SYNC["nftables"] == ModeSync("1s", "30s")
    assert kindconfig.DEFAULT_SYNC["ipvs"] == ModeSync("0s", "30s")


def test_custom_min_sync_period_reaches_the_patch() -> None:
    sync = dict(kindconfig.DEFAULT_SYNC, nftables=ModeSync("100ms", "1m"))
    doc = yaml.safe_load(kindconfig.render(KindConfig("nftables", 2, sync=sync)))
    proxy = patch(doc, "KubeProxyConfiguration")
    assert proxy["nftables"] == {"minSyncPeriod": "100ms", "syncPeriod": "1m"}
    assert proxy["iptables"]["minSyncPeriod"] == "1s"
    assert [n["role"] for n in doc["nodes"]] == ["control-plane", "worker"]


def test_header_says_how_to_use_it() -> None:
    text = (CONFIG_DIR / "ipvs-3node.yaml").read_text()
    head = [line for line in text.splitlines() if line.startswith("#")]
    assert any("kind create cluster --name hopbench --config ipvs-3node.yaml" in h for h in head)
    assert any("hopbench cluster up --provider kind --proxy-mode ipvs --nodes 3" in h
               for h in head)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"mode": "userspace"}, "unknown proxy mode"),
    ({"mode": "iptables", "nodes": 0}, "--nodes 0"),
    ({"mode": "iptables", "sync": {"iptables": ModeSync("1s", "30s")}}, "sync settings"),
])
def test_config_refuses_bad_input(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(UserError, match=fragment):
        KindConfig(**kwargs)


def test_write_puts_the_policy_next_to_the_config(tmp_path: Path) -> None:
    path = kindconfig.write(tmp_path, KindConfig("ipvs", 5))
    assert path == tmp_path / "ipvs-5node.yaml"
    assert (tmp_path / kindconfig.AUDIT_POLICY).read_text() == kindconfig.render_audit_policy()
    assert len(yaml.safe_load(path.read_text())["nodes"]) == 5
