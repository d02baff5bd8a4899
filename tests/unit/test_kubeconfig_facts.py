"""The kubeconfig provider's pure decisions: kube-proxy mode and port, requested modes,
clock-offset verdicts. Hand-written inputs, no cluster."""

from __future__ import annotations

import pytest

from bench.errors import UserError
from bench.providers import clusterfacts as facts
from bench.sources.agents import ClockOffset

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


def test_skew_verdict() -> None:
    offsets = {"n2": ClockOffset(0, 6_000_000, 20), "n1": ClockOffset(-3, 400_000, 20)}
    assert facts.skew_problems(offsets, 5.0) == ["n2 ±6.00 ms"]
    assert facts.skew_problems(offsets, 10.0) == []
    assert facts.skew_problems(offsets, 0.1) == ["n1 ±0.40 ms", "n2 ±6.00 ms"]
    refuse = facts.skew_message(["n2 ±6.00 ms"], 5.0, refuse=True)
    warn = facts.skew_message(["n2 ±6.00 ms"], 5.0, refuse=False)
    assert "--max-skew 5 ms on n2 ±6.00 ms" in refuse and "\n" not in refuse
    assert "prober interval" in warn and "--max-skew MS refuses" in warn
