"""The kind cluster configs, one per kube-proxy mode, generated from one place, and their checks.

kind-configs/ holds the rendered files so users can read them and run kind by hand; a
unit test fails when they drift from this generator (`python -m bench.build.kindconfig`
rewrites them). Each config pins the node image, sets `networking.kubeProxyMode`, turns
on API audit logging (pod status and EndpointSlice writes, Metadata level) and writes
kube-proxy's sync settings explicitly through a kubeadmConfigPatch, so a run on kind
records exactly what kube-proxy ran with.

The second half checks the configs without a container engine (there is none on the
development machine, docs/design.md §5):
- the pinned kind, built from source through the Go module proxy, runs
  `kind create cluster` against a stand-in `docker` that answers kind's read-only probes
  (`docker info`, `docker ps`, `docker inspect --type=image`) and refuses everything
  else. kind strictly decodes the config before touching the runtime, but runs
  `Cluster.Validate()` only after `docker info` succeeds (sigs.k8s.io/kind
  pkg/cluster/internal/create/create.go), so the stand-in is what lets kind's own
  validation run. Reaching provisioning (the first refused command) means kind accepted
  the config.
- kind never looks inside kubeadmConfigPatches before a node exists, drops a patch that
  matches no document, and kube-proxy / kube-apiserver decode leniently; so a small Go
  program (kind-configs/validate/main.go) decodes each patch strictly into the pinned
  Kubernetes types and runs the upstream validation, and checks the audit policy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bench.cluster.local.spec import MAX_NODES, POD_CIDR, PROXY_MODES, SERVICE_CIDR, check_mode
from bench.errors import BuildError, UserError
from bench.paths import cache_dir, shipped

CONFIG_DIR = shipped("kind-configs")
CHECKER_SOURCE = CONFIG_DIR / "validate" / "main.go"
AUDIT_POLICY = "audit-policy.yaml"
MULTI_NODE = 3  # the committed multi-node variant: 1 control plane + 2 workers

# Paths inside the node container (kubeadm static pod volumes follow kind's audit docs).
POLICY_DIR = "/etc/kubernetes/policies"
AUDIT_LOG = "/var/log/kubernetes/kube-apiserver-audit.log"

KUBEADM_API = "kubeadm.k8s.io/v1beta3"  # what kind v0.31 generates for Kubernetes >= 1.23
KUBE_PROXY_API = "kubeproxy.config.k8s.io/v1alpha1"


# --- pins ----------------------------------------------------------------------------


@dataclass(frozen=True)
class KindPins:
    version: str     # sigs.k8s.io/kind module tag
    node_image: str  # kindest/node reference with digest, kind's default for that tag

    @property
    def kubernetes(self) -> str:
        """kindest/node:v1.35.0@sha256:... -> v1.35.0"""
        return self.node_image.split(":", 1)[1].split("@", 1)[0]


def load_kind_pins() -> KindPins:
    data = tomllib.loads(resources.files("bench").joinpath("pins.toml").read_text())
    return KindPins(version=data["kind"]["version"], node_image=data["kind"]["node_image"])


# --- model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModeSync:
    """One proxier's sync timing (kube-proxy config `<mode>.minSyncPeriod` / `syncPeriod`)."""

    min_sync_period: str
    sync_period: str


# kube-proxy 1.35's own defaults (pkg/proxy/apis/config/v1alpha1/defaults.go), stated
# explicitly so kind runs and local runs (which use the defaults) measure the same thing.
DEFAULT_SYNC: Mapping[str, ModeSync] = {
    "iptables": ModeSync("1s", "30s"),
    "nftables": ModeSync("1s", "30s"),
    "ipvs": ModeSync("0s", "30s"),
}


@dataclass(frozen=True)
class KindConfig:
    """What varies between hopbench's kind clusters."""

    mode: str
    nodes: int = 1  # kind nodes in total: one control plane, the rest workers
    node_image: str = ""  # "" = the pinned image
    sync: Mapping[str, ModeSync] = field(default_factory=lambda: dict(DEFAULT_SYNC))
    # 0.0.0.0 so the harness can read kube-proxy's /metrics and /proxyMode through the
    # API server's node proxy (kind's default, 127.0.0.1, is reachable only on the node).
    metrics_bind_address: str = "0.0.0.0:10249"

    def __post_init__(self) -> None:
        check_mode(self.mode)
        if not 1 <= self.nodes <= MAX_NODES:
            raise UserError(f"--nodes {self.nodes}: choose 1 to {MAX_NODES}")
        if set(self.sync) != set(PROXY_MODES):
            raise UserError(f"sync settings must cover {', '.join(PROXY_MODES)}")

    @property
    def image(self) -> str:
        return self.node_image or load_kind_pins().node_image


def filename(mode: str, nodes: int) -> str:
    return f"{mode}.yaml" if nodes == 1 else f"{mode}-{nodes}node.yaml"


def kube_proxy_patch(cfg: KindConfig) -> dict[str, Any]:
    patch: dict[str, Any] = {"apiVersion": KUBE_PROXY_API, "kind": "KubeProxyConfiguration",
                             "metricsBindAddress": cfg.metrics_bind_address}
    for mode in PROXY_MODES:  # every proxier, so set-proxy-mode keeps explicit values
        s = cfg.sync[mode]
        patch[mode] = {"minSyncPeriod": s.min_sync_period, "syncPeriod": s.sync_period}
    return patch


def cluster_configuration_patch() -> dict[str, Any]:
    """kube-apiserver audit flags plus the static pod volumes they need."""
    return {
        "apiVersion": KUBEADM_API,
        "kind": "ClusterConfiguration",
        "apiServer": {
            "extraArgs": {  # v1beta3: a map of strings (v1beta4 would be a list)
                "audit-policy-file": f"{POLICY_DIR}/{AUDIT_POLICY}",
                "audit-log-path": AUDIT_LOG,
                "audit-log-format": "json",
                "audit-log-maxsize": "100",
                "audit-log-maxbackup": "2",
            },
            "extraVolumes": [
                {"name": "audit-policies", "hostPath": POLICY_DIR, "mountPath": POLICY_DIR,
                 "readOnly": True, "pathType": "DirectoryOrCreate"},
                {"name": "audit-logs", "hostPath": str(Path(AUDIT_LOG).parent),
                 "mountPath": str(Path(AUDIT_LOG).parent), "readOnly": False,
                 "pathType": "DirectoryOrCreate"},
            ],
        },
    }


def audit_policy() -> dict[str, Any]:
    """Only the writes the hop chain needs: kubelet status updates and EndpointSlice writes.

    ResponseComplete alone: its event carries both requestReceivedTimestamp and
    stageTimestamp (after the write is persisted, i.e. when watchers can see it).
    """
    writes = ["create", "update", "patch", "delete", "deletecollection"]
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {"level": "Metadata", "verbs": ["update", "patch"],
             "resources": [{"group": "", "resources": ["pods/status"]}]},
            {"level": "Metadata", "verbs": writes,
             "resources": [{"group": "discovery.k8s.io", "resources": ["endpointslices"]}]},
            {"level": "None"},
        ],
    }


def cluster(cfg: KindConfig) -> dict[str, Any]:
    """The kind v1alpha4 Cluster as data."""
    control_plane = {
        "role": "control-plane",
        "image": cfg.image,
        "extraMounts": [{"hostPath": f"./{AUDIT_POLICY}",
                         "containerPath": f"{POLICY_DIR}/{AUDIT_POLICY}", "readOnly": True}],
    }
    workers = [{"role": "worker", "image": cfg.image} for _ in range(cfg.nodes - 1)]
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": "hopbench",
        "networking": {"kubeProxyMode": cfg.mode, "podSubnet": POD_CIDR,
                       "serviceSubnet": SERVICE_CIDR},
        "kubeadmConfigPatches": [_dump(cluster_configuration_patch()),
                                 _dump(kube_proxy_patch(cfg))],
        "nodes": [control_plane, *workers],
    }


# --- rendering -----------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]  # yaml ships no stubs
    """Block style everywhere, multi-line strings (the patches) as literal blocks."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data,
                                   style="|" if "\n" in data else None)


_Dumper.add_representer(str, _str)


def _dump(data: object) -> str:
    return str(yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False))


def _header(lines: list[str]) -> str:
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


GENERATED = ["Generated by `python -m bench.build.kindconfig`; do not edit:",
             "tests/unit/test_kind_config.py fails when this file and the generator differ."]


def render(cfg: KindConfig) -> str:
    pins = load_kind_pins()
    shape = "1 node" if cfg.nodes == 1 else f"{cfg.nodes} nodes (1 control plane, " \
                                            f"{cfg.nodes - 1} workers)"
    name = filename(cfg.mode, cfg.nodes)
    return _header(GENERATED + [
        "",
        f"kind {pins.version}, Kubernetes {pins.kubernetes}, kube-proxy mode {cfg.mode}, {shape}.",
        f"Create: cd kind-configs && kind create cluster --name hopbench --config {name}",
        "  (from this directory: kind resolves the relative audit policy mount against",
        "  its working directory)",
        f"or:     hopbench cluster up --provider kind --proxy-mode {cfg.mode}"
        + (f" --nodes {cfg.nodes}" if cfg.nodes != 1 else ""),
        f"Audit log inside the control-plane node: {AUDIT_LOG}",
    ]) + _dump(cluster(cfg))


def render_audit_policy() -> str:
    return _header(GENERATED + [
        "",
        "API audit policy for kind clusters: Metadata-level events for kubelet pod status",
        "writes (T1, pod Ready) and EndpointSlice writes (T2), nothing else.",
    ]) + _dump(audit_policy())


def committed_files() -> dict[str, str]:
    """Every file kind-configs/ must hold, name -> content."""
    files = {AUDIT_POLICY: render_audit_policy()}
    for mode in PROXY_MODES:
        for nodes in (1, MULTI_NODE):
            files[filename(mode, nodes)] = render(KindConfig(mode, nodes))
    return files


def write(dest: Path, cfg: KindConfig) -> Path:
    """Render one config plus the audit policy it mounts into dest; returns the config."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / AUDIT_POLICY).write_text(render_audit_policy())
    path = dest / filename(cfg.mode, cfg.nodes)
    path.write_text(render(cfg))
    return path


# --- checks: the pinned kind and the patch checker, built through the Go module proxy --


def _go() -> tuple[str, dict[str, str]]:
    from bench.build.gobuild import go_env
    from bench.cluster.toolset import find_go

    return find_go(), go_env(cache_dir())


def _run(cmd: list[str], cwd: Path, env: dict[str, str], what: str) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise BuildError(f"{what} failed:\n{tail}")


def kind_binary() -> Path:
    """<cache>/kind/<version>/kind, built with `go install sigs.k8s.io/kind@<version>`."""
    pins = load_kind_pins()
    out = cache_dir() / "kind" / pins.version / "kind"
    if out.exists():
        return out
    go, env = _go()
    partial = out.parent / "bin.partial"
    partial.mkdir(parents=True, exist_ok=True)
    env["GOBIN"] = str(partial)
    _run([go, "install", f"sigs.k8s.io/kind@{pins.version}"], out.parent, env,
         f"building kind {pins.version}")
    (partial / "kind").rename(out)
    partial.rmdir()
    return out


def checker_binary() -> Path:
    """The patch checker (kind-configs/validate/main.go) built against the pinned modules.

    Its go.mod is generated like bench/build/gobuild.py's wrappers (k8s.io/kubernetes with each
    staging module replaced by its tag); the binary is keyed by the source's hash.
    """
    from bench.build.gobuild import _staging_modules
    from bench.cluster.toolset import load_pins

    kpins, kind = load_pins(), load_kind_pins()
    source = CHECKER_SOURCE.read_bytes()
    digest = hashlib.sha256(source + kpins.kubernetes.encode()).hexdigest()[:10]
    out = cache_dir() / "kind" / kind.version / f"kindcheck-{digest}"
    if out.exists():
        return out
    go, env = _go()
    work = cache_dir() / "src" / f"kindcheck-{kind.version}-{kpins.kubernetes}"
    work.mkdir(parents=True, exist_ok=True)
    staging = _staging_modules(go, kpins, env, work)
    lines = ["module hopbench.local/kindcheck", "", "go 1.25.0", "", "require (",
             f"\tk8s.io/kubernetes {kpins.kubernetes}", f"\tsigs.k8s.io/kind {kind.version}",
             ")", "", "replace ("]
    lines += [f"\t{m} => {m} {kpins.staging}" for m in staging] + [")", ""]
    (work / "go.mod").write_text("\n".join(lines))
    (work / "main.go").write_bytes(source)
    _run([go, "mod", "tidy"], work, env, "kindcheck: go mod tidy")
    _run([go, "build", "-trimpath", "-o", str(out) + ".partial", "."], work, env,
         "kindcheck: go build")
    Path(str(out) + ".partial").rename(out)
    for stale in out.parent.glob("kindcheck-*"):  # ~90 MB each; only the current one counts
        if stale != out:
            stale.unlink()
    return out


# What `docker info --format '{{json .}}'` must say for kind to go on (rootful, cgroup v2).
_INFO = json.dumps({"CgroupDriver": "systemd", "CgroupVersion": "2", "MemoryLimit": True,
                    "PidsLimit": True, "CPUShares": True, "SecurityOptions": []})
# A `docker` for kind that answers its read-only probes and refuses to create anything.
STAND_IN_DOCKER = f"""#!/bin/sh
# hopbench stand-in: lets `kind create cluster` get through decoding and validation.
echo "$*" >> "$HOPBENCH_STANDIN_LOG"
case "$1" in
  -v) echo "Docker version 0.0.0-hopbench-stand-in"; exit 0;;
  info) if [ "$3" = '{{{{json .}}}}' ]; then echo '{_INFO}'; exit 0; fi;;
  ps) exit 0;;
  inspect) if [ "$2" = "--type=image" ]; then exit 0; fi;;  # "the node image is present"
esac
echo "hopbench stand-in: refusing 'docker $1': this is only a config check" >&2
exit 97
"""
PROBES = ("-v", "info", "ps", "inspect")


@dataclass(frozen=True)
class KindVerdict:
    """What the real kind made of one config."""

    config: Path
    accepted: bool        # decoded, validated and reached provisioning
    images: list[str]     # the node images kind made sure of before provisioning
    output: str           # kind's own output (its error when not accepted)


def kind_check(config: Path, kind: Path | None = None) -> KindVerdict:
    """Run the real `kind create cluster --config` against the stand-in docker."""
    kind = kind or kind_binary()
    with tempfile.TemporaryDirectory(prefix="hopbench-kindcheck-") as tmp:
        bindir, log = Path(tmp) / "bin", Path(tmp) / "docker-calls.log"
        bindir.mkdir()
        (bindir / "docker").write_text(STAND_IN_DOCKER)
        (bindir / "docker").chmod(0o755)
        log.touch()
        env = dict(os.environ, PATH=f"{bindir}:{os.environ.get('PATH', '')}",
                   KIND_EXPERIMENTAL_PROVIDER="docker", HOPBENCH_STANDIN_LOG=str(log))
        proc = subprocess.run(
            [str(kind), "create", "cluster", "--name", "hbkindcheck", "--config",
             str(config.resolve()), "--kubeconfig", str(Path(tmp) / "kubeconfig")],
            cwd=config.parent, env=env, check=False, capture_output=True, text=True, timeout=120)
        calls = [c.split() for c in log.read_text().splitlines() if c.strip()]
    provisioning = [c for c in calls if c and c[0] not in PROBES]
    images = [c[2] for c in calls if c[:2] == ["inspect", "--type=image"] and len(c) > 2]
    return KindVerdict(config, proc.returncode != 0 and bool(provisioning), images,
                       (proc.stdout + proc.stderr).strip())


@dataclass(frozen=True)
class PatchReport:
    """The checker's verdict on one file (a kind config or the audit policy)."""

    file: str
    checked: list[str]
    errors: list[str]


def patch_check(configs: list[Path], policy: Path | None = None,
                checker: Path | None = None) -> list[PatchReport]:
    checker = checker or checker_binary()
    cmd = [str(checker)] + (["-audit-policy", str(policy)] if policy else [])
    proc = subprocess.run(cmd + [str(c) for c in configs], check=False, capture_output=True,
                          text=True, timeout=120)
    reports = [PatchReport(**json.loads(line)) for line in proc.stdout.splitlines()
               if line.startswith("{")]
    if len(reports) != len(configs) + (policy is not None):
        raise BuildError(f"kindcheck gave no verdict (exit {proc.returncode}): "
                         f"{proc.stderr.strip()[-500:]}")
    return reports


# --- command line: regenerate or verify kind-configs/ -------------------------------------


def drift(dest: Path = CONFIG_DIR) -> list[str]:
    """Names of files in dest that differ from the generator's output."""
    return [n for n, text in committed_files().items()
            if not (dest / n).exists() or (dest / n).read_text() != text]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.build.kindconfig", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only report drift, write nothing")
    ap.add_argument("--dest", type=Path, default=CONFIG_DIR)
    args = ap.parse_args(argv)
    stale = drift(args.dest)
    if args.check:
        print("\n".join(f"differs from generator: {n}" for n in stale) or "up to date")
        return 1 if stale else 0
    for name, text in committed_files().items():
        (args.dest / name).write_text(text)
    print(f"wrote {len(committed_files())} files to {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
