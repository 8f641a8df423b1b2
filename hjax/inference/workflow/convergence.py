"""Rank-normalized split R-hat and bulk and tail ESS (Vehtari et al. 2021), for many series at once.

The same estimators as arviz-stats (`arviz_stats.rhat`, `arviz_stats.ess` with methods "bulk"
and "tail"), equal to them to rounding, but computed for blocks of series in one set of array
operations each, the blocks spread over threads. Written here because arviz-stats runs its
estimators one series at a time in a Python loop: for a batched fit (64 datasets x 23
parameters) that loop took 6.8 s, longer than the sampling itself, and its numba backend has no
tail ESS. The tests compare every value with arviz-stats.

A series with a NaN, fewer than 4 draws, or (for R-hat) fewer than 2 chains gives NaN, as in
arviz-stats.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import fft, special

from hjax.devices import available_cores

__all__ = ["rank_diagnostics"]

BLOM_OFFSET = 3 / 8  # fractional offset of the rank back-transform (Blom 1958)
# Series computed together: their arrays stay in cache and in malloc's heap. All 2688 series
# of a 64-dataset crossed Bernoulli fit at once were slower than blocks of 32 (figures in
# scripts/bench/RESULTS.md): arrays of whole batches were fresh pages, and out of cache.
BLOCK = 32


def _split_chains(rows: np.ndarray) -> np.ndarray:
    """Each chain's first and last half as two chains (the middle draw of an odd count dropped)."""
    half = rows.shape[-1] // 2
    return np.concatenate([rows[..., :half], rows[..., -half:]], axis=-2)


def _z_scale(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normal scores of the ranks within each series (average ranks for ties), and each
    series' values sorted.

    The ranks are `scipy.stats.rankdata(method="average")`'s, found from one sort; their
    scores are looked up among the 2n - 1 possible half-integer ranks instead of computed for
    every value (with the median from the same sort: 0.53 s -> 0.35 s for 1472 series of
    4 x 500 draws on 2 cores). Only series with ties look for runs of equal values
    (0.086 s -> 0.056 s per call on 1472 series of 2000 draws without ties).
    """
    flat = rows.reshape(len(rows), -1)
    size = flat.shape[1]
    order = np.argsort(flat, axis=1)
    ordered = np.sort(flat, axis=1)  # faster than taking `order` from `flat`
    # A value's rank is (first + last) / 2 + 1 over the sorted positions first..last of its
    # run of equal values: `first + last` is twice the position where it has no tie
    first_plus_last = np.broadcast_to(2 * np.arange(size), flat.shape)
    tied = ordered[:, 1:] == ordered[:, :-1]
    with_ties = np.flatnonzero(tied.any(axis=1))
    if len(with_ties):
        first_plus_last = first_plus_last.copy()
        position = np.broadcast_to(np.arange(size), (len(with_ties), size))
        differs = ~tied[with_ties]
        ones = np.ones((len(with_ties), 1), bool)
        opens = np.concatenate([ones, differs], axis=1)
        closes = np.concatenate([differs, ones], axis=1)
        first = np.maximum.accumulate(np.where(opens, position, 0), axis=1)
        last = np.minimum.accumulate(np.where(closes, position, size)[:, ::-1], axis=1)[:, ::-1]
        first_plus_last[with_ties] = first + last
    # Ranks are the half-integers (first + last) / 2 + 1: their scores are looked up
    ranks = np.arange(2 * size - 1) / 2 + 1
    table = special.ndtri((ranks - BLOM_OFFSET) / (size - 2 * BLOM_OFFSET + 1))
    scores = np.empty(flat.shape)
    np.put_along_axis(scores, order, table[first_plus_last], axis=1)
    return scores.reshape(rows.shape), ordered


def _rhat(rows: np.ndarray) -> np.ndarray:
    """Classic R-hat of each series `(series, chain, draw)`."""
    draws = rows.shape[-1]
    between = draws * np.var(rows.mean(axis=-1), axis=-1, ddof=1)
    within = np.var(rows, axis=-1, ddof=1).mean(axis=-1)
    return np.sqrt((between / within + draws - 1) / draws)


def _ess(rows: np.ndarray) -> np.ndarray:
    """ESS of each series `(series, chain, draw)` by Geyer's initial monotone sequence.

    Follows arviz-stats' loop step by step: pairs of autocorrelations are summed while the
    previous pair's sum is positive, the last even lag is kept if positive, and the pair sums are
    made non-increasing.
    """
    _, chains, draws = rows.shape
    size = chains * draws
    constant = np.ptp(rows, axis=(1, 2)) < np.finfo(float).resolution
    centred = rows - rows.mean(axis=-1, keepdims=True)
    length = fft.next_fast_len(2 * draws)
    spectrum = np.fft.rfft(centred, n=length, axis=-1)
    acov = np.fft.irfft(spectrum * np.conjugate(spectrum), n=length, axis=-1)[..., :draws] / draws
    mean_acov = acov.mean(axis=1)  # (series, lag)
    mean_var = mean_acov[:, 0] * draws / (draws - 1.0)
    var_plus = mean_var * (draws - 1.0) / draws
    if chains > 1:
        var_plus = var_plus + np.var(rows.mean(axis=-1), axis=-1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = 1.0 - (mean_var[:, None] - mean_acov) / var_plus[:, None]
    rho[:, 0] = 1.0
    # Pair j holds lags (2j, 2j + 1). The loop visits pairs 1..J: it goes on while the pair before
    # has a positive sum, up to the last pair with 2j - 1 < draws - 3.
    n_pairs = draws // 2  # pairs with both lags inside the series
    even, odd = rho[:, 0 : 2 * n_pairs : 2], rho[:, 1 : 2 * n_pairs : 2]
    pair_sum = even + odd
    most = max(0, (draws - 3) // 2)  # J's bound: pairs j with 2j - 1 < draws - 3
    positive = np.zeros_like(pair_sum, dtype=bool)
    positive[:, :most] = pair_sum[:, :most] > 0
    visited = np.cumprod(positive, axis=1).sum(axis=1)  # J
    index = np.arange(len(rows))
    last_sum, last_even = pair_sum[index, visited], even[index, visited]
    monotone = np.minimum.accumulate(pair_sum, axis=1)
    before_last = np.where(np.arange(pair_sum.shape[1]) < visited[:, None], monotone, 0.0)
    kept_even = np.where((visited == 0) | (last_sum >= 0) | (last_even > 0), last_even, 0.0)
    tau = -1.0 + 2.0 * before_last.sum(axis=1) + kept_even
    tau = np.maximum(tau, 1 / np.log10(size))
    with np.errstate(invalid="ignore", divide="ignore"):
        ess = size / tau
    has_nan = np.isnan(rho).any(axis=1)
    return np.where(constant, float(size), np.where(has_nan, np.nan, ess))


def rank_diagnostics(x: np.ndarray, prob: float) -> tuple[np.ndarray, ...]:
    """R-hat, bulk ESS and tail ESS of every series of `x` `(..., chain, draw)`.

    R-hat is the rank-normalized split R-hat, the larger of the bulk and the folded (tail) R-hat.
    Bulk ESS is the ESS of the rank-normalized split chains; tail ESS the smaller ESS of the
    indicators below the `1 - prob` and `prob` quantiles. As `arviz_stats.rhat(x)`,
    `arviz_stats.ess(x, method="bulk")` and `arviz_stats.ess(x, method="tail", prob=prob)`
    (whose default `prob` is `arviz_base.rcParams["stats.ci_prob"]`).

    Example:
        >>> draws = np.random.default_rng(0).normal(size=(3, 4, 200))  # 3 series, 4 chains
        >>> rhat, bulk, tail = rank_diagnostics(draws, prob=0.9)
        >>> rhat.shape, bool((bulk > 500).all())
        ((3,), True)
    """
    x = np.asarray(x)
    rows = x.reshape(-1, *x.shape[-2:])  # made float64 a block at a time
    usable = np.flatnonzero(~np.isnan(rows).any(axis=(1, 2)) & (x.shape[-1] >= 4))
    blocks = [usable[start:start + BLOCK] for start in range(0, len(usable), BLOCK)]
    values = np.full((3, len(rows)), np.nan)
    # numpy's sorts and FFTs release the GIL: threads over blocks of series use every core
    with ThreadPoolExecutor(max(1, min(available_cores(), len(blocks)))) as pool:
        found = pool.map(lambda block: _rows_diagnostics(rows[block].astype(float), prob), blocks)
        for block, block_values in zip(blocks, found, strict=True):
            values[:, block] = block_values
    return tuple(v.reshape(x.shape[:-2]) for v in values)


def _rows_diagnostics(rows: np.ndarray, prob: float) -> np.ndarray:
    """`rank_diagnostics` of rows `(series, chain, draw)` without NaN and with 4 draws or more."""
    if not len(rows):
        return np.empty((3, 0))
    split = _split_chains(rows)
    scores, ordered = _z_scale(split)
    rhat = np.full(len(rows), np.nan)
    if rows.shape[1] >= 2:
        # the median of an even count of values (split chains have one), as `np.median`
        middle = ordered.shape[1] // 2
        median = np.mean(ordered[:, middle - 1 : middle + 1], axis=1)
        folded = np.abs(split - median[:, None, None])
        with np.errstate(invalid="ignore", divide="ignore"):
            bulk_rhat, tail_rhat = _rhat(scores), _rhat(_z_scale(folded)[0])
        # arviz-stats' max(bulk, tail): a NaN bulk R-hat stays NaN, a NaN tail one is skipped
        rhat = np.where(tail_rhat > bulk_rhat, tail_rhat, bulk_rhat)
    # The split chains' sorted values are the draws' own where no middle draw was dropped; a
    # quantile of sorted values is faster to find (scripts/bench/RESULTS.md)
    values = ordered if ordered.shape[1] == rows[0].size else rows.reshape(len(rows), -1)
    quantiles = np.quantile(values, sorted((prob, 1 - prob)), axis=1)
    tail = np.minimum(*(_ess(_split_chains((rows <= q[:, None, None]).astype(float)))
                        for q in quantiles))
    return np.stack([rhat, _ess(scores), tail])
