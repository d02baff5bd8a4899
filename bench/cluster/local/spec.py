"""The typed description of a local cluster: parsed and validated once, before anything exists.

Everything about names, addresses and paths is derived here so that `up`, `down` and
a crash cleanup agree on what belongs to a cluster.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.errors import UserError
from bench.mesh import registry as meshes
from bench.paths import run_root, state_root

PROXY_MODES = ("iptables", "nftables", "ipvs")
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
              "kubelet", "kube-proxy", "istiod")
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")

NODE_NET = "10.88.0"          # fabric bridge .1, control plane .2, node k at .(10+k)
POD_CIDR = "10.244.0.0/16"    # the controller manager hands each node a /24
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SVC_IP = "10.96.0.1"
API_PORT = 6443
MAX_NODES = 20


def parse_component_args(raw: list[str]) -> dict[str, list[str]]:
    """`COMPONENT:--flag=value` strings into {component: [flags]}, validated."""
    out: dict[str, list[str]] = {}
    for item in raw:
        comp, sep, flag = item.partition(":")
        if not sep or not flag.startswith("--"):
            raise UserError(f"--component-arg {item!r}: expected COMPONENT:--flag=value")
        if comp not in COMPONENTS:
            raise UserError(f"--component-arg {item!r}: unknown component {comp!r} "
                            f"(known: {', '.join(COMPONENTS)})")
        out.setdefault(comp, []).append(flag)
    return out


def parse_component_env(raw: list[str]) -> dict[str, dict[str, str]]:
    """`COMPONENT:NAME=VALUE` strings into {component: {NAME: VALUE}}, validated."""
    out: dict[str, dict[str, str]] = {}
    for item in raw:
        comp, sep, pair = item.partition(":")
        name, eq, value = pair.partition("=")
        if not sep or not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise UserError(f"--component-env {item!r}: expected COMPONENT:NAME=VALUE")
        if comp not in COMPONENTS:
            raise UserError(f"--component-env {item!r}: unknown component {comp!r} "
                            f"(known: {', '.join(COMPONENTS)})")
        out.setdefault(comp, {})[name] = value
    return out


def check_mode(mode: str) -> str:
    if mode not in PROXY_MODES:
        raise UserError(f"unknown proxy mode {mode!r} (choose from {', '.join(PROXY_MODES)})")
    return mode


@dataclass(frozen=True)
class ClusterSpec:
    name: str = "hopbench"
    nodes: int = 2
    proxy_mode: str = "iptables"
    component_args: dict[str, list[str]] = field(default_factory=dict)
    api_port: int = 0  # root-namespace forwarder port on 127.0.0.1; 0 = chosen at up
    mesh: str = ""  # "" or a bench.mesh name: its control plane runs in the cp namespace
    component_env: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise UserError(f"cluster name {self.name!r}: use 1-12 lowercase letters/digits, "
                            "starting with a letter")
        if not 1 <= self.nodes <= MAX_NODES:
            raise UserError(f"--nodes {self.nodes}: choose 1 to {MAX_NODES}")
        check_mode(self.proxy_mode)
        meshes.check(self.mesh)
        for comp in (*self.component_args, *self.component_env):
            if comp not in COMPONENTS:
                raise UserError(f"unknown component {comp!r}")

    # --- names -------------------------------------------------------------
    @property
    def ns_prefix(self) -> str:
        return f"hb-{self.name}-"

    @property
    def fabric_ns(self) -> str:
        return f"hb-{self.name}-fabric"

    @property
    def cp_ns(self) -> str:
        return f"hb-{self.name}-cp"

    def node_names(self) -> list[str]:
        return [f"n{k}" for k in range(1, self.nodes + 1)]

    def node_ns(self, node: str) -> str:
        return f"hb-{self.name}-{node}"

    def node_ip(self, node: str) -> str:
        return f"{NODE_NET}.{10 + int(node[1:])}"

    @property
    def cp_ip(self) -> str:
        return f"{NODE_NET}.2"

    @property
    def gateway_ip(self) -> str:
        return f"{NODE_NET}.1"

    # --- paths -------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return state_root() / self.name

    @property
    def run_dir(self) -> Path:
        return run_root() / self.name

    def node_dir(self, node: str) -> Path:
        return self.state_dir / "nodes" / node

    def containerd_sock(self, node: str) -> Path:
        return self.run_dir / node / "containerd.sock"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def cgroup_parent(self) -> str:
        return f"/hopbench/{self.name}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @staticmethod
    def load(name: str) -> ClusterSpec:
        path = state_root() / name / "spec.json"
        if not path.exists():
            raise UserError(f"no local cluster named {name!r} (see `hopbench cluster status`)")
        return ClusterSpec(**json.loads(path.read_text()))
