"""Command lines and config files for each upstream component of the local cluster.

Each function returns the argv of one daemon. User overrides from `--component-arg`
are appended last, so for repeated flags the user's value wins (pflag keeps the last).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from bench.cluster.local.spec import (
    API_PORT,
    KUBERNETES_SVC_IP,
    POD_CIDR,
    SERVICE_CIDR,
    ClusterSpec,
)
from bench.cluster.toolset import Toolset

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "verbs": ["update", "patch"],
         "resources": [{"group": "", "resources": ["pods/status"]}]},
        {"level": "Metadata", "verbs": ["create", "update", "patch", "delete"],
         "resources": [{"group": "discovery.k8s.io", "resources": ["endpointslices"]}]},
        {"level": "None"},
    ],
}


def _extra(spec: ClusterSpec, comp: str) -> list[str]:
    return list(spec.component_args.get(comp, []))


def etcd(spec: ClusterSpec, t: Toolset) -> list[str]:
    p = spec.pki
    return [str(t.path("etcd")), "--name=hopbench", f"--data-dir={spec.state_dir}/etcd",
            "--listen-client-urls=https://127.0.0.1:2379",
            "--advertise-client-urls=https://127.0.0.1:2379",
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=hopbench=http://127.0.0.1:2380",
            f"--cert-file={p}/etcd-server.crt", f"--key-file={p}/etcd-server.key",
            f"--trusted-ca-file={p}/etcd-ca.crt", "--client-cert-auth=true",
            "--listen-metrics-urls=http://127.0.0.1:2381",
            "--unsafe-no-fsync=false", "--log-level=warn",
            *_extra(spec, "etcd")]


def apiserver(spec: ClusterSpec, t: Toolset) -> list[str]:
    p, logs = spec.pki, spec.logs
    (spec.state_dir / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))
    return [str(t.path("kube-apiserver")),
            "--etcd-servers=https://127.0.0.1:2379", f"--etcd-cafile={p}/etcd-ca.crt",
            f"--etcd-certfile={p}/apiserver-etcd-client.crt",
            f"--etcd-keyfile={p}/apiserver-etcd-client.key",
            f"--advertise-address={spec.cp_ip}", "--bind-address=0.0.0.0",
            f"--secure-port={API_PORT}", f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--tls-cert-file={p}/apiserver.crt", f"--tls-private-key-file={p}/apiserver.key",
            f"--client-ca-file={p}/ca.crt",
            f"--kubelet-client-certificate={p}/apiserver-kubelet-client.crt",
            f"--kubelet-client-key={p}/apiserver-kubelet-client.key",
            "--kubelet-preferred-address-types=InternalIP",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p}/sa.pub",
            f"--service-account-signing-key-file={p}/sa.key",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            f"--audit-policy-file={spec.state_dir}/audit-policy.yaml",
            f"--audit-log-path={logs}/audit.log", "--audit-log-format=json",
            "--audit-log-maxsize=200", "--audit-log-maxbackup=2",
            "--profiling=false", "--v=1",
            *_extra(spec, "kube-apiserver")]


def controller_manager(spec: ClusterSpec, t: Toolset) -> list[str]:
    p, kc = spec.pki, spec.state_dir / "controller-manager.kubeconfig"
    return [str(t.path("kube-controller-manager")),
            f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}", "--bind-address=127.0.0.1",
            f"--cluster-signing-cert-file={p}/ca.crt", f"--cluster-signing-key-file={p}/ca.key",
            f"--root-ca-file={p}/ca.crt", f"--service-account-private-key-file={p}/sa.key",
            "--use-service-account-credentials=true", "--leader-elect=false",
            "--allocate-node-cidrs=true", f"--cluster-cidr={POD_CIDR}",
            "--node-cidr-mask-size=24", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*,-cloud-node-lifecycle-controller,-service-lb-controller,"
            "-node-route-controller",
            "--v=1", *_extra(spec, "kube-controller-manager")]


def scheduler(spec: ClusterSpec, t: Toolset) -> list[str]:
    kc = spec.state_dir / "scheduler.kubeconfig"
    return [str(t.path("kube-scheduler")), f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1", "--leader-elect=false", "--v=1",
            *_extra(spec, "kube-scheduler")]


def containerd_config(spec: ClusterSpec, node: str, sandbox_image: str) -> Path:
    d = spec.node_dir(node)
    run = spec.run_dir / node
    text = f"""version = 2
root = "{d}/containerd"
state = "{run}/containerd-state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{spec.containerd_sock(node)}"
[ttrpc]
  address = "{run}/containerd.ttrpc.sock"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
    max_conf_num = 1
"""
    path = d / "containerd.toml"
    path.write_text(text)
    return path


def containerd(spec: ClusterSpec, node: str, config: Path) -> list[str]:
    return ["containerd", f"--config={config}", "--log-level=warn"]


def cni_config(spec: ClusterSpec, node: str, pod_cidr: str) -> Path:
    """ptp + host-local: every pod gets a veth and a /32 route, so no bridge netfilter."""
    conf = {
        "cniVersion": "0.4.0", "name": "hopbench",
        "plugins": [
            {"type": "ptp", "ipMasq": False, "mtu": 1500,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]],
                      "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": str(spec.node_dir(node) / "ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    path = spec.node_dir(node) / "cni" / "10-hopbench.conflist"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(conf, indent=2))
    tmp.rename(path)
    return path


def kubelet(spec: ClusterSpec, node: str, t: Toolset) -> list[str]:
    d = spec.node_dir(node)
    cfg = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(spec.pki / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{spec.containerd_sock(node)}",
        "cgroupDriver": "cgroupfs", "cgroupsPerQOS": False, "enforceNodeAllocatable": [],
        "cgroupRoot": f"{spec.cgroup_parent}/{node}",
        "failCgroupV1": False, "failSwapOn": False,
        "resolvConf": str(spec.state_dir / "resolv.conf"),
        "podLogsDir": str(d / "pod-logs"),
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "0%",
                         "imagefs.available": "0%", "nodefs.inodesFree": "0%"},
        "localStorageCapacityIsolation": False,
        "healthzBindAddress": "127.0.0.1", "healthzPort": 10248, "readOnlyPort": 0,
        "serializeImagePulls": False, "maxPods": 110,
        "syncFrequency": "10s", "fileCheckFrequency": "20s",
        "nodeStatusUpdateFrequency": "10s", "nodeStatusReportFrequency": "1m",
        "kubeAPIQPS": 50, "kubeAPIBurst": 100, "registerNode": True,
        "protectKernelDefaults": False, "makeIPTablesUtilChains": False,
    }
    (d / "kubelet.yaml").write_text(yaml.safe_dump(cfg))
    return [str(t.path("kubelet")), f"--config={d}/kubelet.yaml",
            f"--kubeconfig={d}/kubelet.kubeconfig", f"--root-dir={d}/kubelet",
            f"--cert-dir={d}/kubelet/pki", f"--hostname-override={node}",
            f"--node-ip={spec.node_ip(node)}", f"--node-labels=hopbench.io/cluster={spec.name}",
            "--v=1", *_extra(spec, "kubelet")]


def kube_proxy(spec: ClusterSpec, node: str, t: Toolset, mode: str) -> list[str]:
    d = spec.node_dir(node)
    return [str(t.path("kube-proxy")), f"--kubeconfig={d}/kube-proxy.kubeconfig",
            f"--hostname-override={node}", f"--proxy-mode={mode}",
            f"--cluster-cidr={POD_CIDR}", "--metrics-bind-address=127.0.0.1:10249",
            "--healthz-bind-address=127.0.0.1:10256", "--conntrack-max-per-core=0",
            "--v=1", *_extra(spec, "kube-proxy")]


def kube_proxy_cleanup(t: Toolset) -> list[str]:
    return [str(t.path("kube-proxy")), "--cleanup", "--v=1"]


def api_sans(spec: ClusterSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    dns = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
           "kubernetes.default.svc.cluster.local", "localhost")
    return dns, ("127.0.0.1", spec.cp_ip, KUBERNETES_SVC_IP)
