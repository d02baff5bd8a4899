"""The kubeconfig provider's pure decisions: kube-proxy mode and port, requested modes,
the mode once the agents reported. Hand-written inputs, no cluster."""

from __future__ import annotations

import pytest

from bench.errors import UserError
from bench.providers.kubeconfig import facts

KUBEADM_CONF = """\
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
bindAddress: 0.0.0.0
metricsBindAddress: 0.0.0.0:10249
mode: {mode}
iptables:
  minSyncPeriod: 1s
"""


@pytest.mark.parametrize("mode", ["iptables", "nftables", "ipvs"])
def test_mode_from_configmap(mode: str) -> None:
    got = facts.from_configmap({"config.conf": KUBEADM_CONF.format(mode=mode)})
    assert (got.mode, got.metrics_port, got.source) == (mode, 10249, facts.CONFIGMAP_SOURCE)
    assert got.config["iptables"] == {"minSyncPeriod": "1s"}


def test_empty_mode_is_iptables_on_linux() -> None:
    got = facts.from_configmap({"config.conf": KUBEADM_CONF.format(mode='""')})
    assert got.mode == "iptables"


def test_no_configmap_says_nothing() -> None:
    for data in (None, {}, {"kubeconfig.conf": "x"}):
        got = facts.from_configmap(data)
        assert (got.mode, got.source, got.metrics_port) == ("", "", 10249)


def test_bad_configmap_is_one_line() -> None:
    with pytest.raises(UserError, match="not YAML"):
        facts.from_configmap({"config.conf": "mode: [unclosed"})
    with pytest.raises(UserError, match="not a KubeProxyConfiguration"):
        facts.from_configmap({"config.conf": "- a list"})


@pytest.mark.parametrize("bind,port", [("127.0.0.1:10249", 10249), ("0.0.0.0:9999", 9999),
                                       (":10250", 10250), ("[::]:10251", 10251),
                                       ("", 10249), ("0.0.0.0/0:10252", 10252)])
def test_metrics_port(bind: str, port: int) -> None:
    assert facts.metrics_port(bind) == port


def test_observed_mode_needs_agreement() -> None:
    assert facts.observed_mode({"a": "nftables", "b": "nftables"}) == "nftables"
    with pytest.raises(UserError, match="a: iptables, b: nftables"):
        facts.observed_mode({"b": "nftables", "a": "iptables"})


def test_requested_mode_must_be_current() -> None:
    facts.check_requested("nftables", "nftables", "src")
    with pytest.raises(UserError, match="runs in iptables mode .*--proxy-mode iptables"):
        facts.check_requested("nftables", "iptables", "src")
    with pytest.raises(UserError, match="unknown proxy mode 'userspace'"):
        facts.check_requested("userspace", "iptables", "src")


def _seen(mode: str, metrics: bool = True) -> dict[str, str]:
    return {"rule_mode": mode, "rule_method": "x",
            "kube_proxy_metrics": "reachable" if metrics else "unreachable: refused"}


NO_CM = facts.from_configmap(None)
CM_NFT = facts.from_configmap({"config.conf": KUBEADM_CONF.format(mode="nftables")})


def test_mode_from_agents_without_configmap() -> None:
    observed = {"n1": _seen("nftables"), "n2": _seen("nftables")}
    assert facts.mode_from_agents(NO_CM, observed) == ("nftables", facts.AGENTS_SOURCE, [])


def test_mode_from_agents_needs_kube_proxy_metrics_without_configmap() -> None:
    observed = {"n1": _seen("iptables"), "n2": _seen("iptables", metrics=False)}
    with pytest.raises(UserError, match=r"cannot tell the kube-proxy mode: .*"
                                        r"127\.0\.0\.1:10249 on n2 \(is kube-proxy"):
        facts.mode_from_agents(NO_CM, observed)


def test_configmap_wins_and_disagreement_is_a_warning() -> None:
    observed = {"n1": _seen("nftables"), "n2": _seen("iptables", metrics=False)}
    mode, source, warnings = facts.mode_from_agents(CM_NFT, observed)
    assert (mode, source) == ("nftables", facts.CONFIGMAP_SOURCE)
    assert warnings == [
        "kube-proxy ConfigMap says nftables but the rules on n2 look like iptables",
        "kube-proxy metrics unreachable on n2: sync times (slice→sync, sync→rule) will "
        "be missing there"]
