"""Pure decisions the kubeconfig provider makes from what it read off a cluster.

Kept apart from the provider so they are tested with hand-written inputs: which
kube-proxy mode the cluster runs (from the kube-proxy ConfigMap that kubeadm and kind
write, else from what the node agents see in each node's rules), and which port
kube-proxy's metrics listen on. Whether a clock offset is known well enough: clocks.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from bench.cluster.local.spec import PROXY_MODES
from bench.errors import UserError

DEFAULT_METRICS_PORT = 10249
#: on Linux an empty `mode` means iptables (kube-proxy's own default)
LINUX_DEFAULT_MODE = "iptables"
CONFIGMAP_SOURCE = "ConfigMap kube-system/kube-proxy (config.conf)"
AGENTS_SOURCE = "node agents: kube-proxy's rules seen on each node"


@dataclass(frozen=True)
class ProxyConfig:
    """kube-proxy's configuration as far as the cluster tells (empty when it does not)."""

    mode: str                # "" = not stated by a ConfigMap
    metrics_port: int
    config: dict[str, Any]   # the KubeProxyConfiguration, as read
    source: str              # CONFIGMAP_SOURCE, or "" when there is no ConfigMap


def from_configmap(data: dict[str, str] | None) -> ProxyConfig:
    """Parse kube-system/kube-proxy's `config.conf` (a KubeProxyConfiguration)."""
    if not data or "config.conf" not in data:
        return ProxyConfig("", DEFAULT_METRICS_PORT, {}, "")
    try:
        cfg = yaml.safe_load(data["config.conf"]) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"kube-system/kube-proxy config.conf is not YAML: {exc}") from exc
    if not isinstance(cfg, dict):
        raise UserError("kube-system/kube-proxy config.conf is not a KubeProxyConfiguration")
    mode = str(cfg.get("mode") or LINUX_DEFAULT_MODE)
    return ProxyConfig(mode, metrics_port(str(cfg.get("metricsBindAddress") or "")), cfg,
                       CONFIGMAP_SOURCE)


def metrics_port(bind: str) -> int:
    """`127.0.0.1:10249`, `0.0.0.0:10249`, `:10249`, `[::]:10249` or a CIDR form -> port."""
    _, sep, port = bind.rpartition(":")
    return int(port) if sep and port.isdigit() else DEFAULT_METRICS_PORT


def observed_mode(rule_modes: dict[str, str]) -> str:
    """The one mode every node's rules show; a clear error when nodes disagree."""
    modes = sorted(set(rule_modes.values()))
    if len(modes) == 1:
        return modes[0]
    per = ", ".join(f"{n}: {m}" for n, m in sorted(rule_modes.items()))
    raise UserError(f"nodes run kube-proxy in different modes ({per}); hopbench measures "
                    "one mode at a time")


def check_requested(requested: str, current: str, source: str) -> None:
    """Refuse to measure a mode the cluster does not run: hopbench never reconfigures a
    cluster it did not create."""
    if requested not in PROXY_MODES:
        raise UserError(f"unknown proxy mode {requested!r} (choose from "
                        f"{', '.join(PROXY_MODES)})")
    if requested != current:
        raise UserError(f"this cluster's kube-proxy runs in {current} mode ({source}); "
                        f"hopbench does not switch modes on a cluster it did not create: "
                        f"run with --proxy-mode {current}, or switch kube-proxy yourself")


def mode_from_agents(proxy: ProxyConfig, observed: dict[str, dict[str, Any]]
                     ) -> tuple[str, str, list[str]]:
    """(mode, its source, warnings) once the agents reported each node's rules and whether
    kube-proxy's metrics answer there. Without a ConfigMap the mode is the rules' one,
    accepted only where the metrics answer: a node without kube-proxy is never taken for
    iptables."""
    no_metrics = [n for n, s in observed.items() if s["kube_proxy_metrics"] != "reachable"]
    rule_modes = {n: str(s["rule_mode"]) for n, s in observed.items()}
    warnings = []
    if proxy.mode:
        mode, source = proxy.mode, proxy.source
        differ = {n: m for n, m in rule_modes.items() if m != mode}
        if differ:
            warnings.append(f"kube-proxy ConfigMap says {mode} but the rules on "
                            + ", ".join(f"{n} look like {m}" for n, m in differ.items()))
    elif no_metrics:
        raise UserError(
            "cannot tell the kube-proxy mode: no kube-system/kube-proxy ConfigMap, and no "
            f"kube-proxy metrics at 127.0.0.1:{proxy.metrics_port} on "
            f"{', '.join(no_metrics)} (is kube-proxy running there?)")
    else:
        mode, source = observed_mode(rule_modes), AGENTS_SOURCE
    if no_metrics:
        warnings.append(f"kube-proxy metrics unreachable on {', '.join(no_metrics)}: "
                        "sync times (slice→sync, sync→rule) will be missing there")
    return mode, source, warnings
