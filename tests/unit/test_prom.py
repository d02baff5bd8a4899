"""bench.prom, the harness's one reader of kube-proxy's /metrics text."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import prom, proxycollect
from bench.errors import ClusterError

# as kube-proxy v1.35 writes them (HELP/TYPE lines, labels, exponent floats, +Inf)
SINGLE_STACK = (Path(__file__).parent / "data" / "kube-proxy-single-stack.metrics").read_text()

# a dual-stack kube-proxy labels its sync series by family (lines from a real one)
DUAL_STACK = """\
# HELP kubeproxy_sync_proxy_rules_last_timestamp_seconds [ALPHA] The last time
# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge
kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family="IPv4"} 254
kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family="IPv6"} 1
kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv6"} 1.7e+09
kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"} 1.7957061396144714e+09
"""


def test_histogram_buckets_in_order_with_inf() -> None:
    h = prom.histogram(prom.parse(SINGLE_STACK), prom.NETWORK_PROGRAMMING)
    assert h.upper_bounds_s == [0.25, 0.5, 1.0, 2.0, 300.0, math.inf]
    assert h.counts == [0, 0, 3, 7, 9, 10]
    assert prom.histogram(prom.parse(DUAL_STACK), prom.NETWORK_PROGRAMMING).counts == []


def test_runner_sli_keeps_run_json_shape() -> None:
    sli = proxycollect.sli_buckets({"n1": SINGLE_STACK, "n2": DUAL_STACK})
    assert sli["n1"] == {"buckets_s": [0.25, 0.5, 1.0, 2.0, 300.0, "+Inf"],
                         "counts": [0, 0, 3, 7, 9, 10]}
    assert sli["n2"] == {"buckets_s": [], "counts": []}


def test_last_sync_single_and_dual_stack() -> None:
    assert prom.last_sync_s(SINGLE_STACK) == 1.7643e9
    assert prom.last_sync_s(DUAL_STACK) == 1.7957061396144714e9  # IPv4, never the IPv6 one
    assert prom.last_sync_s("# HELP nothing yet\n") == 0.0
    # a longer name sharing the prefix is another series
    assert prom.last_sync_s(prom.SYNC_TIMESTAMP + "_other 9\n") == 0.0


def test_labels_filter_series() -> None:
    samples = prom.parse(DUAL_STACK)
    count = "kubeproxy_sync_proxy_rules_duration_seconds_count"
    assert prom.value(samples, count, ip_family="IPv6") == 1
    assert prom.value(samples, count, ip_family="IPv4") == 254
    assert prom.value(samples, count, ip_family="IPv5") is None
    assert prom.label(prom.parse(SINGLE_STACK), prom.BUILD_INFO, "git_version") == "v1.35.4"
    assert prom.label(samples, prom.BUILD_INFO, "git_version") is None


def test_not_prometheus_text_is_one_clear_error() -> None:
    with pytest.raises(ClusterError, match="not Prometheus text.*'<html>"):
        prom.parse("<html><body>502 Bad Gateway</body></html>\n")
    with pytest.raises(ValueError):  # also a ValueError, as waits that retry expect
        prom.last_sync_s("<html>\n")
