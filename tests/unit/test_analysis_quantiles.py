"""Quantiles, censoring and the bootstrap of analysis.quantiles on inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import quantiles as q
from analysis.quantiles import bootstrap, percentile_ci, quantiles, ratio_replicates, sample

QS = [0.5, 0.9, 0.99, 1.0]


def test_uncensored_quantiles_are_inverted_cdf_order_statistics() -> None:
    x = np.arange(1.0, 101.0)  # 1..100
    assert list(quantiles(sample(x), [0.5, 0.9, 0.99, 1.0, 0.01])) == [50, 90, 99, 100, 1]
    rng = np.random.default_rng(3)
    y = rng.lognormal(size=997)
    probs = [0.07, 0.29, 0.5, 0.57, 0.9, 0.99, 1.0]
    assert np.array_equal(quantiles(sample(y), probs),
                          np.quantile(y, probs, method="inverted_cdf"))


def test_censored_values_sit_above_every_observation() -> None:
    # 1..8 observed, 2 trials censored (timeouts): n = 10
    s = sample([1, 2, 3, 4, 5, 6, 7, 8, 0, 0], censored=[False] * 8 + [True] * 2)
    assert s.n == 10 and s.n_censored == 2
    p50, p80, p90, top = quantiles(s, [0.5, 0.8, 0.9, 1.0])
    assert p50 == 5.0   # dropping the censored trials would say 4
    assert p80 == 8.0   # the last quantile still inside the observed mass
    assert np.isposinf(p90) and np.isposinf(top)  # in the censored mass: flagged as +inf


def test_censoring_equals_kaplan_meier_with_late_censoring() -> None:
    """Hand-computed product-limit estimate, every censoring time after the last event."""
    observed = np.array([3.0, 1.0, 4.0, 1.5, 9.0, 2.6])
    n = observed.size + 3
    s = sample(np.r_[observed, [np.nan] * 3])
    survival, at_risk = 1.0, n
    for t in np.sort(observed):
        survival *= 1 - 1 / at_risk
        at_risk -= 1
        # KM F(t) = 1 - S(t); the smallest x with F(x) >= F(t) is t itself
        assert quantiles(s, [1 - survival])[0] == t
    assert np.isposinf(quantiles(s, [1 - survival + 1e-6])[0])


def test_nan_latency_without_flag_counts_as_censored() -> None:
    s = sample([1.0, np.nan, 3.0])
    assert s.n_censored == 1
    assert np.isposinf(quantiles(s, [1.0])[0])


def test_empty_sample_gives_nan() -> None:
    s = sample([])
    assert np.isnan(quantiles(s, [0.5])).all()
    assert np.isnan(bootstrap(s, [0.5], 10, np.random.default_rng(0))).all()


def test_bootstrap_is_seeded() -> None:
    s = sample(np.random.default_rng(0).exponential(size=300))
    a = bootstrap(s, QS, 200, np.random.default_rng(5))
    b = bootstrap(s, QS, 200, np.random.default_rng(5))
    assert np.array_equal(a, b)


def test_bootstrap_90pct_interval_covers_true_median_about_90pct() -> None:
    """Exponential(1): true median ln 2. 200 samples of n=101, 90% percentile intervals."""
    rng = np.random.default_rng(2024)
    covered = 0
    for _ in range(200):
        x = rng.exponential(1.0, 101)
        lo, hi = percentile_ci(bootstrap(sample(x), [0.5], 1000, rng), 0.90)
        covered += bool(lo[0] <= np.log(2) <= hi[0])
    assert 0.85 <= covered / 200 <= 0.95


def test_trial_bootstrap_keeps_coverage_when_nodes_are_correlated() -> None:
    """3 rows per trial sharing a trial effect: resampling trials keeps ~90% coverage,
    resampling rows would not (that is why the trial is the resampling unit)."""
    rng = np.random.default_rng(7)
    trials = np.repeat(np.arange(100), 3)
    by_trial = by_row = 0
    for _ in range(200):
        values = (rng.normal(0, 1, 100)[:, None] + rng.normal(0, 0.3, (100, 3))).ravel()
        lo, hi = percentile_ci(bootstrap(sample(values, None, trials), [0.5], 1000, rng), 0.9)
        by_trial += bool(lo[0] <= 0 <= hi[0])
        lo, hi = percentile_ci(bootstrap(sample(values), [0.5], 1000, rng), 0.9)
        by_row += bool(lo[0] <= 0 <= hi[0])
    assert 0.84 <= by_trial / 200 <= 0.96
    assert by_row / 200 < 0.8


@pytest.mark.parametrize("n_trials", [1, 2, 7, 50, 400])
def test_block_bootstrap_equals_brute_force(n_trials: int) -> None:
    """The block method gives exactly what reweighing every row would, replicate by replicate."""
    rng = np.random.default_rng(n_trials)
    values = rng.lognormal(0, 1, n_trials * 3)
    values[rng.random(values.size) < 0.05] = np.nan
    s = sample(values, None, np.repeat(np.arange(n_trials), 3))
    m, size = q._block_matrix(s)
    fast_rng, slow_rng = np.random.default_rng(1), np.random.default_rng(1)
    probs = np.array([*QS, 0.25])
    for _ in range(60):
        fast = q._replicates(s, probs, 1, fast_rng, m, size)[0]
        counts = np.bincount(slow_rng.integers(0, n_trials, size=n_trials), minlength=n_trials)
        cum = np.cumsum(counts[s.trial])
        target = np.maximum(np.ceil(probs * cum[-1] - 1e-9), 1)
        assert np.array_equal(fast, s.x[np.searchsorted(cum, target)])


def test_order_statistic_shortcut_matches_resampling_in_distribution() -> None:
    x = np.random.default_rng(11).lognormal(3, 1, 2000)
    s = sample(x)
    assert s.one_row_per_trial
    shortcut = bootstrap(s, QS, 4000, np.random.default_rng(1))
    m, size = q._block_matrix(s)
    resampled = q._replicates(s, np.array(QS), 4000, np.random.default_rng(2), m, size)
    for col in range(3):
        lo_a, hi_a = np.quantile(shortcut[:, col], [0.05, 0.95])
        lo_b, hi_b = np.quantile(resampled[:, col], [0.05, 0.95])
        assert lo_a == pytest.approx(lo_b, rel=0.03) and hi_a == pytest.approx(hi_b, rel=0.03)
    # the max of a replicate is the sample max with probability 1 - (1 - 1/n)^n ~ 0.632
    assert np.mean(shortcut[:, 3] == x.max()) == pytest.approx(0.632, abs=0.03)


def test_censored_mass_reaches_the_replicates() -> None:
    s = sample(np.r_[np.arange(90.0), [np.nan] * 10])
    reps = bootstrap(s, [0.5, 0.99], 500, np.random.default_rng(0))
    assert np.isfinite(reps[:, 0]).all()
    assert np.isposinf(reps[:, 1]).all()
    lo, hi = percentile_ci(reps, 0.95)
    assert np.isposinf(lo[1]) and np.isposinf(hi[1])


def test_percentile_ci_rejects_bad_level_and_marks_nan() -> None:
    reps = np.array([[1.0, np.nan], [2.0, 1.0], [3.0, 2.0]])
    lo, hi = percentile_ci(reps, 0.5)
    assert np.isnan(lo[1]) and np.isnan(hi[1]) and lo[0] <= 2 <= hi[0]
    with pytest.raises(ValueError, match="confidence"):
        percentile_ci(reps, 1.5)


def test_ratio_replicates_handle_infinities_quietly() -> None:
    r = ratio_replicates(np.array([2.0, np.inf, np.inf, 1.0]), np.array([1.0, 1.0, np.inf, 0.0]))
    assert r[0] == 2 and np.isposinf(r[1]) and np.isnan(r[2]) and np.isposinf(r[3])
