"""Quantiles of right-censored latencies and their trial-level bootstrap, vectorised in numpy.

Why a module of its own: the two statistical decisions of the project live here and are
tested on inputs with known answers.

Censoring. A censored row of hops.parquet (a trial that timed out) has NaN latency: the true
value is only known to exceed some bound. We take every censored value to lie above every
finite value observed in its group (equivalently: above max(largest finite value, the
trial timeout)). With all censoring times at or beyond the last observation, the
Kaplan-Meier estimator of the distribution function is exactly the empirical CDF over all n
rows, finite ones counted at their value and censored ones at +inf; its curve stops at
1 - censored/n. So a quantile q is the inverted-CDF order statistic of the whole sample with
censored rows sorted to the end as +inf: when q falls into the censored mass the answer is
+inf ("beyond the bound"), flagged by the caller, never computed from the uncensored rows
alone (that would hide exactly the slow tail the benchmark exists to show). A latency that is
NaN without being flagged censored is treated as censored too: unknown, so not small.

Quantile definition: inverted CDF (numpy method="inverted_cdf"): the smallest observed
x with F(x) >= q, no interpolation. So every estimate is a value that was measured.

Bootstrap. The resampling unit is the trial, not the row: a per-node hop pools one row per
node of each trial, and those rows are correlated (one slow EndpointSlice delays every node),
so resampling rows would make the intervals too narrow. Each replicate draws trials with
replacement; a row's weight is how often its trial was drawn; quantiles are read from the
weighted CDF. All replicates of a chunk are computed at once: a matrix product gives each
replicate's weight per block of sorted rows, which locates the block holding each quantile,
and only that block is weighed row by row (exact, and no pass over replicates x rows).
When each trial is one row (cluster-level and all-nodes hops, one node's rows) the
replicate quantile is drawn directly as a Beta order statistic, which has exactly the same
distribution and costs one draw per replicate. Intervals are percentile intervals, with the
lower end rounded down and the upper end up (method lower/higher), so an infinite
replicate is never interpolated.
The bootstrap of the maximum is degenerate (it can never exceed the sample max); its
"interval" shows only how much the max depends on single trials.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: named quantiles reported everywhere; "max" is the q=1 quantile
QUANTILES: dict[str, float] = {"p50": 0.50, "p90": 0.90, "p99": 0.99, "max": 1.0}
_EPS = 1e-9               # q * n that is an integer up to rounding counts as that integer
_CHUNK_ELEMENTS = 1 << 20  # replicate x row cells per chunk (bounds memory, ~25 MB)

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Sample:
    """One group's latencies sorted ascending, censored ones as +inf at the end.

    `trial` gives, for each sorted row, its trial as a code 0..n_trials-1.
    """

    x: FloatArray
    trial: NDArray[np.int64]
    n_trials: int

    @property
    def n(self) -> int:
        return int(self.x.size)

    @property
    def one_row_per_trial(self) -> bool:
        """Trial codes are 0..n-1 in sorted order, so replicate weights need no gather."""
        return self.n_trials == self.n

    @property
    def n_censored(self) -> int:
        return int(np.isposinf(self.x).sum())


def sample(values: ArrayLike, censored: ArrayLike | None = None,
           trials: ArrayLike | None = None) -> Sample:
    """Build a Sample. `trials` labels rows by trial (any hashable codes); default: own trial."""
    x = np.array(values, dtype=np.float64)
    cens = np.isnan(x)
    if censored is not None:
        cens |= np.asarray(censored, dtype=bool)
    x[cens] = np.inf
    order = np.argsort(x, kind="stable")
    if trials is None:
        codes = np.arange(x.size, dtype=np.int64)
    else:
        # codes numbered by first appearance in sorted order: 0..n-1 when 1 row per trial
        _, first, inverse = np.unique(np.asarray(trials)[order], return_index=True,
                                      return_inverse=True)
        rank = np.empty(first.size, dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(first.size, dtype=np.int64)
        codes = rank[inverse.ravel()]
    n_trials = int(codes.max()) + 1 if codes.size else 0
    return Sample(x=x[order], trial=codes, n_trials=n_trials)


def histogram_sample(upper: ArrayLike, counts: ArrayLike) -> Sample:
    """A Sample from a histogram: each observation at its bucket's upper bound, the overflow
    bucket (upper bound +inf) censored.

    The same rule as for trials, no interpolation inside a bucket: a quantile is the upper
    bound of the bucket where the CDF first reaches q (a bound that was an edge of the
    measurement, never a value between edges), so it is conservative by at most one bucket
    width; one falling into the overflow is +inf ("beyond the last bound"), as a censored
    trial is. Every observation is its own resampling unit (the bootstrap then treats the
    histogram's observations, e.g. kube-proxy syncs or TCP connects, as independent).
    """
    bounds = np.asarray(upper, dtype=np.float64)
    n = np.asarray(counts, dtype=np.float64)
    if bounds.shape != n.shape or (n < 0).any() or not np.isfinite(n).all():
        raise ValueError(f"histogram needs one non-negative count per bound, got "
                         f"{bounds.size} bounds and {n.size} counts")
    x = np.repeat(bounds, np.rint(n).astype(np.int64))
    return sample(x, censored=np.isposinf(x))


def quantiles(s: Sample, qs: Sequence[float]) -> FloatArray:
    """Point estimates (inverted CDF over all rows, censored = +inf). NaN if the sample is empty."""
    q = np.asarray(qs, dtype=np.float64)
    if s.n == 0:
        return np.full(q.shape, np.nan)
    idx = np.clip(np.ceil(q * s.n - _EPS).astype(np.int64) - 1, 0, s.n - 1)
    return s.x[idx]


def bootstrap(s: Sample, qs: Sequence[float], n_boot: int,
              rng: np.random.Generator) -> FloatArray:
    """Replicates of `quantiles(s, qs)`: shape (n_boot, len(qs)), resampling whole trials."""
    q = np.asarray(qs, dtype=np.float64)
    out = np.full((n_boot, q.size), np.nan)
    if s.n == 0 or n_boot <= 0:
        return out
    if s.one_row_per_trial:
        return _order_statistic_replicates(s, q, n_boot, rng)
    m, size = _block_matrix(s)
    per_chunk = max(1, _CHUNK_ELEMENTS // max(s.n_trials + 1, q.size * max(size, m.shape[1])))
    for start in range(0, n_boot, per_chunk):
        b = min(per_chunk, n_boot - start)
        out[start:start + b] = _replicates(s, q, b, rng, m, size)
    return out


def _order_statistic_replicates(s: Sample, q: FloatArray, n_boot: int,
                                rng: np.random.Generator) -> FloatArray:
    """Exact shortcut when each trial is one row: draw the replicate's order statistic.

    A replicate draws n sorted positions floor(n * U_i), U_i uniform; its q-quantile is
    position floor(n * U_(m)), m = ceil(q n), and U_(m) ~ Beta(m, n - m + 1). One beta draw
    per replicate and quantile therefore has exactly the bootstrap's distribution (the
    quantiles of one replicate are drawn independently, which no caller relies on).
    """
    m = np.clip(np.ceil(q * s.n - _EPS), 1, s.n)
    u = rng.beta(m[None, :], (s.n - m + 1)[None, :], size=(n_boot, q.size))
    idx = np.minimum(np.floor(u * s.n).astype(np.int64), s.n - 1)
    return s.x[idx]


def _replicates(s: Sample, q: FloatArray, b: int, rng: np.random.Generator,
                m: FloatArray, size: int) -> FloatArray:
    """Trial-resampling replicates, exact, without a pass over every replicate x row.

    Sorted rows are cut into blocks; `m[t, j]` counts trial t's rows in block j. A
    replicate's weight per block is then counts @ m (one BLAS product), which locates the
    block holding each quantile; only that block's rows are weighed one by one.
    """
    t, n = s.n_trials, s.n
    draws = rng.integers(0, t, size=(b, t))
    draws += (np.arange(b, dtype=np.int64) * (t + 1))[:, None]
    counts = np.bincount(draws.ravel(), minlength=b * (t + 1)).reshape(b, t + 1)  # col t = 0
    block_cum = np.cumsum(counts[:, :t].astype(np.float64) @ m, axis=1)     # (b, blocks)
    total = block_cum[:, -1]
    target = np.maximum(np.ceil(q[None, :] * total[:, None] - _EPS), 1.0)   # (b, nq)
    block = (block_cum[:, None, :] < target[:, :, None]).sum(axis=2)        # (b, nq)
    before = np.where(block > 0, np.take_along_axis(
        block_cum, np.maximum(block - 1, 0), axis=1), 0.0)
    rows = block[:, :, None] * size + np.arange(size)                       # (b, nq, size)
    trial = np.where(rows < n, s.trial[np.minimum(rows, n - 1)], t)         # pad: weight 0
    within = np.cumsum(np.take_along_axis(counts[:, None, :], trial, axis=2), axis=2)
    k = ((before[:, :, None] + within) < target[:, :, None]).sum(axis=2)
    out: FloatArray = s.x[np.minimum(block * size + k, n - 1)]
    return out


def _block_matrix(s: Sample) -> tuple[FloatArray, int]:
    """(trials x blocks) row counts of the sorted sample, and the block size."""
    blocks = max(1, min(int(np.ceil(np.sqrt(s.n))), _CHUNK_ELEMENTS // max(s.n_trials, 1)))
    size = int(np.ceil(s.n / blocks))
    blocks = int(np.ceil(s.n / size))
    cell = s.trial * blocks + np.arange(s.n) // size
    m = np.bincount(cell, minlength=s.n_trials * blocks).reshape(s.n_trials, blocks)
    return m.astype(np.float64), size


def percentile_ci(replicates: FloatArray, confidence: float) -> tuple[FloatArray, FloatArray]:
    """Percentile interval per column; NaN where any replicate is NaN or there are none."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = (1.0 - confidence) / 2.0
    cols = replicates.shape[1]
    if replicates.shape[0] == 0:
        return np.full(cols, np.nan), np.full(cols, np.nan)
    lo = np.quantile(replicates, alpha, axis=0, method="lower")
    hi = np.quantile(replicates, 1.0 - alpha, axis=0, method="higher")
    bad = np.isnan(replicates).any(axis=0)
    lo[bad] = np.nan
    hi[bad] = np.nan
    return lo, hi


def ratio_replicates(num: FloatArray, den: FloatArray) -> FloatArray:
    """num / den elementwise, inf/inf -> NaN and x/0 -> ±inf, without numpy warnings."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(num / den, dtype=np.float64)
