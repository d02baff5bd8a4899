"""The background population as data: names, fake addresses, manifests, and the up-front
refusals (one line each, with the estimate)."""

from __future__ import annotations

import ipaddress

import pytest

from bench.background import plan
from bench.errors import UserError

FAKE = ipaddress.ip_network(plan.FAKE_RANGE)


def test_names_sort_and_parse_back() -> None:
    names = [plan.service_name(i) for i in (0, 7, 42, 99999)]
    assert names == ["bg-00000", "bg-00007", "bg-00042", "bg-99999"]
    assert [plan.index_of(n) for n in names] == [0, 7, 42, 99999]
    assert plan.index_of("svc0") is None and plan.index_of("bg-x1") is None


def test_addresses_are_distinct_and_inside_the_fake_range() -> None:
    n, m = 10_000, 6
    seen = {plan.address(i, j, m) for i in range(n) for j in range(m)}
    assert len(seen) == n * m
    for a in seen:
        ip = ipaddress.ip_address(a)
        assert ip in FAKE and ip not in (FAKE.network_address, FAKE.broadcast_address)
    assert plan.address(3, 1, 2) == plan.address(3, 1, 2)  # deterministic


def test_the_largest_population_that_fits_has_distinct_addresses() -> None:
    m = 2
    n = plan.FAKE_CAPACITY // m
    plan.check_fits(n, m, None, None)
    assert len({plan.address(i, j, m) for i in range(n) for j in range(m)}) == n * m


def test_service_is_selector_less_port_80_http() -> None:
    svc = plan.service(5, "abcdef123", "hopbench-bg-abcdef")
    assert svc["metadata"]["name"] == "bg-00005"
    assert svc["metadata"]["namespace"] == "hopbench-bg-abcdef"
    assert "selector" not in svc["spec"] and "clusterIP" not in svc["spec"]
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "protocol": "TCP",
                                     "targetPort": 80}]
    assert svc["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "hopbench",
                                         "hopbench.io/role": "background",
                                         "hopbench.io/run": "abcdef123"}


def test_slice_names_its_service_and_lists_m_ready_endpoints() -> None:
    sl = plan.slice_(5, 3, "run1", "ns")
    assert sl["metadata"]["labels"]["kubernetes.io/service-name"] == "bg-00005"
    assert sl["metadata"]["labels"]["hopbench.io/role"] == "background"
    assert sl["addressType"] == "IPv4"
    assert sl["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]
    assert [e["conditions"]["ready"] for e in sl["endpoints"]] == [True, True, True]
    assert [e["addresses"][0] for e in sl["endpoints"]] == [plan.address(5, j, 3)
                                                            for j in range(3)]
    assert plan.slice_endpoints(sl) == 3
    off = plan.slice_(5, 3, "run1", "ns", frozenset({1}))
    assert [e["conditions"]["ready"] for e in off["endpoints"]] == [True, False, True]


def test_namespace_and_selector() -> None:
    assert plan.namespace("0123456789") == "hopbench-bg-012345"
    assert plan.selector("r1") == ("app.kubernetes.io/managed-by=hopbench,"
                                   "hopbench.io/role=background,hopbench.io/run=r1")
    assert plan.selector() == "app.kubernetes.io/managed-by=hopbench,hopbench.io/role=background"


def _refusal(*args: object) -> str:
    with pytest.raises(UserError) as exc:
        plan.check_fits(*args)  # type: ignore[arg-type]
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_bad_counts_are_refused_in_one_line() -> None:
    assert "0 or more, not -1" in _refusal(-1, 2, None, None)
    assert "1 or more, not 0" in _refusal(10, 0, None, None)


def test_a_count_beyond_the_service_cidr_is_refused_with_what_is_free() -> None:
    free = plan.cidr_free("10.96.0.0/16", in_use=3)
    assert free == 65536 - 2 - 3
    msg = _refusal(free + 1, 1, free, None)
    assert f"{free + 1} background Services" in msg and f"only {free} ClusterIPs" in msg
    plan.check_fits(free, 1, free, None)  # exactly full fits


def test_a_count_beyond_memory_is_refused_with_the_estimate() -> None:
    need = plan.estimate_bytes(10_000, 2)
    assert need > 0
    msg = _refusal(10_000, 2, None, need - 1)
    assert f"about {need / 2**20:.0f} MiB" in msg and "available" in msg
    plan.check_fits(10_000, 2, None, need)
    assert plan.estimate_bytes(10_000, 10) > need  # more endpoints, more memory


def test_a_count_beyond_the_fake_range_is_refused() -> None:
    msg = _refusal(40_000, 2, None, None)
    assert "80000 endpoint addresses" in msg and plan.FAKE_RANGE in msg


def test_zero_services_always_fit() -> None:
    plan.check_fits(0, 2, 0, 0)


def test_mem_available_from_meminfo() -> None:
    text = "MemTotal:  8000 kB\nMemAvailable:    2048 kB\n"
    assert plan.mem_available(text) == 2048 * 1024
    assert plan.mem_available("MemTotal: 1 kB\n") is None
