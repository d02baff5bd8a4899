"""The time to program N Services from nothing, from the local provider's switch stamps
(bench.sweep.program_from_switch) and kube-proxy's last-sync metric (bench.prom.last_sync)."""

from __future__ import annotations

from bench import prom
from bench.sweep import program_from_switch


def test_slowest_node_from_the_spawn() -> None:
    switch = {"started_ns": 100 * 10**9, "first_sync_s": {"n1": 104.25, "n2": 131.5},
              "first_sync_exact": {"n1": True, "n2": True}}
    assert program_from_switch(switch) == (31.5, True)


def test_a_node_that_synced_again_makes_it_an_upper_bound() -> None:
    switch = {"started_ns": 100 * 10**9, "first_sync_s": {"n1": 104.0, "n2": 105.0},
              "first_sync_exact": {"n1": True, "n2": False}}
    assert program_from_switch(switch) == (5.0, False)


def test_without_stamps_or_before_any_sync_there_is_none() -> None:
    assert program_from_switch({}) is None
    assert program_from_switch({"started_ns": 1, "first_sync_s": {"n1": 0.0}}) is None


def test_last_sync_reads_the_stamp_and_the_sync_count() -> None:
    text = "\n".join([
        f"# TYPE {prom.SYNC_TIMESTAMP} gauge",
        f'{prom.SYNC_TIMESTAMP}{{ip_family="IPv4"}} 1.7648e+09',
        f"# TYPE {prom.SYNC_DURATION} histogram",
        f'{prom.SYNC_DURATION}_bucket{{ip_family="IPv4",le="+Inf"}} 1',
        f'{prom.SYNC_DURATION}_sum{{ip_family="IPv4"}} 0.5',
        f'{prom.SYNC_DURATION}_count{{ip_family="IPv4"}} 1', ""])
    assert prom.last_sync(text) == (1.7648e9, 1)
    assert prom.last_sync("") == (0.0, 0)


def test_the_trial_timeout_grows_with_the_point_s_full_sync() -> None:
    """Two syncs from nothing plus 10 s, never below --trial-timeout; unknown: unchanged."""
    from bench.sweep import fitted_timeout
    assert fitted_timeout(30.0, None) == 30.0
    assert fitted_timeout(30.0, 0.7) == 30.0  # no background: the default holds
    assert fitted_timeout(30.0, 76.0) == 162.0  # 10,000 Services, nftables
    assert fitted_timeout(300.0, 76.0) == 300.0  # the user's larger value wins
