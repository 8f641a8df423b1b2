"""Are SBC ranks uniform? Per-variable tests with a multiplicity correction, and ECDF bands.

The default test is the graphical test of Säilynoja, Bürkner & Vehtari (2022, "Graphical test
for discrete uniformity and its applications in goodness-of-fit evaluation and multiple sample
comparison", Statistics and Computing 32:32): the ECDF of the ranks is compared with the uniform
CDF at K points, the statistic is the smallest two-sided binomial tail probability over those
points, and its null distribution is computed exactly by propagating the distribution of the
counts from point to point (their "optimization" method, without simulation noise). The same
computation gives the simultaneous band of the ECDF-difference plot, so a variable is rejected
at level alpha exactly when its ECDF leaves the 1 - alpha band.

arviz-stats has the simulation version of the band (`arviz_stats.ecdf_utils`) for continuous PIT
values; it is not used because its Monte Carlo p-values cannot resolve the small thresholds a
Holm correction over many variables asks for.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, NamedTuple

import numpy as np
import xarray as xr
from scipy import special, stats

from hjax.errors import ConfigError, DataError

__all__ = ["EcdfBand", "adjust_pvalues", "ecdf_band", "ecdf_grid", "rank_ecdf",
           "uniformity_test"]


class EcdfBand(NamedTuple):
    """A simultaneous band for the ECDF of `n` ranks at the points `z`.

    Attributes:
        z: evaluation points in (0, 1), multiples of 1 / (max_rank + 1).
        lower: lower band of the ECDF at `z` (a fraction of the ranks).
        upper: upper band of the ECDF at `z`.
        gamma: the pointwise two-sided tail probability that defines the band.
        coverage: the exact probability, under uniform ranks, that the whole ECDF lies inside
            the band (at least the requested level; above it only by discreteness).
    """

    z: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    gamma: float
    coverage: float


def ecdf_grid(n: int, max_rank: int, n_points: int | None = None) -> np.ndarray:
    """Interior evaluation points of the rank ECDF.

    K = `n_points` (default min(max_rank + 1, n), as in the R package SBC) equally spaced
    points, rounded to multiples of 1 / (max_rank + 1): there the ECDF of uniform ranks is
    exactly binomial, so the band is exact for discrete ranks too.

    Example:
        >>> ecdf_grid(50, 9)
        array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    """
    size = max_rank + 1
    k = min(size, n) if n_points is None else min(n_points, size)
    steps = np.unique(np.rint(np.arange(1, k) * size / k).astype(int))
    return steps / size


def rank_ecdf(ranks: np.ndarray, max_rank: int, z: np.ndarray) -> np.ndarray:
    """Fraction of ranks whose normalized value (rank + 1) / (max_rank + 1) is <= each `z`.

    Example:
        >>> rank_ecdf(np.array([0, 1, 1, 3]), 3, np.array([0.25, 0.5, 0.75]))
        array([0.25, 0.75, 0.75])
    """
    thresholds = np.rint(np.asarray(z) * (max_rank + 1))
    return (np.asarray(ranks)[..., None] < thresholds).mean(axis=-2)


class _Null:
    """Binomial tails of the ECDF counts at `z` and the exact law of the whole path."""

    def __init__(self, n: int, z: np.ndarray):
        self.n, self.z = n, z
        counts = np.arange(n + 1)
        cdf = stats.binom.cdf(counts, n, z[:, None])
        at_least = stats.binom.sf(counts - 1, n, z[:, None])
        # tails[k, c]: two-sided p-value of count c at point k; the statistic is its minimum.
        self.tails = np.minimum(1.0, 2 * np.minimum(cdf, at_least))
        self._log_factorial = special.gammaln(np.arange(n + 1) + 1.0)

    def statistic(self, counts: np.ndarray) -> np.ndarray:
        return self.tails[np.arange(len(self.z)), counts].min(axis=-1)

    def prob_above(self, gamma: float) -> float:
        """P(statistic > gamma) under uniformity: every count stays where tails > gamma."""
        inside = self.tails > gamma
        prob = np.zeros(self.n + 1)
        prob[0] = 1.0
        z_prev = 0.0
        lf = self._log_factorial
        for k, z in enumerate(self.z):
            # Given c counts by z_prev, the count added by z is Binomial(n - c, q).
            q = (z - z_prev) / (1 - z_prev)
            rows = np.flatnonzero(prob)
            cols = np.flatnonzero(inside[k])
            if rows.size == 0 or cols.size == 0:
                return 0.0
            trials = self.n - rows[:, None]
            added = cols[None, :] - rows[:, None]
            valid = (added >= 0) & (added <= trials)
            added = np.where(valid, added, 0)
            log_pmf = (lf[trials] - lf[added] - lf[trials - added]
                       + added * np.log(q) + (trials - added) * np.log1p(-q))
            step = np.where(valid, np.exp(log_pmf), 0.0)
            nxt = np.zeros(self.n + 1)
            nxt[cols] = prob[rows] @ step
            prob, z_prev = nxt, z
        return float(prob.sum())


@lru_cache(maxsize=16)
def _null(n: int, max_rank: int, n_points: int | None = None) -> _Null:
    # Every variable of a study shares (n, max_rank): build the tail table once.
    return _Null(n, ecdf_grid(n, max_rank, n_points))


def ecdf_band(n: int, max_rank: int, *, prob: float = 0.95,
              n_points: int | None = None) -> EcdfBand:
    """Simultaneous `prob` band for the ECDF of `n` uniform ranks in 0..`max_rank`.

    The band is the pointwise binomial band at the largest tail level gamma for which the
    whole ECDF stays inside with probability at least `prob` (Säilynoja et al. 2022), with the
    coverage computed exactly. Plot `lower - z` and `upper - z` for the ECDF-difference plot.

    Args:
        n: number of ranks (datasets).
        max_rank: the largest possible rank L (ranks lie in 0..L).
        prob: simultaneous coverage.
        n_points: number of intervals K of the evaluation grid (see `ecdf_grid`).

    Example:
        >>> band = ecdf_band(100, 99, prob=0.95)
        >>> bool(band.coverage >= 0.95)
        True
    """
    if not 0 < prob < 1:
        raise ConfigError(f"Expected 0 < prob < 1; got {prob}.")
    null = _null(n, max_rank, n_points)
    # P(statistic > gamma) only changes at the tail values themselves: bisect over all of them,
    # so that a variable's ECDF leaves this band exactly when `uniformity_test` rejects it.
    levels = np.unique(null.tails)
    lo, hi = -1, len(levels)  # invariant: levels[lo] meets prob (or lo = -1), levels[hi] fails
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if null.prob_above(levels[mid]) >= prob:
            lo = mid
        else:
            hi = mid
    gamma = float(levels[lo]) if lo >= 0 else 0.0
    inside = null.tails > gamma
    counts = np.arange(n + 1)
    lower = np.where(inside, counts, n + 1).min(axis=1)
    upper = np.where(inside, counts, -1).max(axis=1)
    return EcdfBand(null.z, lower / n, upper / n, gamma, null.prob_above(gamma))


def adjust_pvalues(p_values: np.ndarray,
                   method: Literal["holm", "bonferroni"] | None = "holm") -> np.ndarray:
    """P-values adjusted for multiple tests (family-wise error rate).

    Example:
        >>> adjust_pvalues(np.array([0.01, 0.04, 0.03]), "holm")
        array([0.03, 0.06, 0.06])
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if method is None:
        return p.copy()
    if method == "bonferroni":
        return np.minimum(1.0, m * p)
    if method == "holm":
        order = np.argsort(p)
        scaled = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
        adjusted = np.empty(m)
        adjusted[order] = scaled
        return adjusted
    raise ConfigError(f"Expected correction 'holm', 'bonferroni' or None; got {method!r}.")


def _ecdf_test(ranks: np.ndarray, max_rank: int) -> tuple[float, float]:
    n = ranks.size
    null = _null(n, max_rank)
    if null.z.size == 0:  # one dataset: no interior point, nothing to test
        return 1.0, 1.0
    counts = np.rint(rank_ecdf(ranks, max_rank, null.z) * n).astype(int)
    statistic = float(null.statistic(counts))
    return statistic, 1.0 - null.prob_above(statistic)


def _chisq_test(ranks: np.ndarray, max_rank: int, bins: int | None) -> tuple[float, float]:
    n, size = ranks.size, max_rank + 1
    # About 5 expected ranks per bin or more, so the chi-square approximation holds.
    bins = min(20, size, max(2, n // 5)) if bins is None else min(bins, size)
    edges = np.unique(np.rint(np.arange(bins + 1) * size / bins).astype(int))
    observed = np.histogram(ranks, bins=edges)[0]
    expected = n * np.diff(edges) / size
    statistic = float(((observed - expected) ** 2 / expected).sum())
    return statistic, float(stats.chi2.sf(statistic, len(observed) - 1))


def uniformity_test(
    table: xr.Dataset,
    *,
    method: Literal["ecdf", "chisq"] = "ecdf",
    alpha: float = 0.01,
    correction: Literal["holm", "bonferroni"] | None = "holm",
    bins: int | None = None,
) -> xr.Dataset:
    """Test, for each variable, that its ranks are uniform over the datasets.

    Args:
        table: the study table of `sbc_ranks` (`rank` and `max_rank` with dims
            (dataset, variable)).
        method: "ecdf" (the exact ECDF test of Säilynoja et al. 2022; rejects exactly when the
            ECDF leaves the simultaneous band of `ecdf_band` at level 1 - alpha for one
            variable) or "chisq" (Pearson's chi-square on `bins` equal-probability bins, default
            min(20, max_rank + 1, n / 5)).
        alpha: family-wise level after the correction.
        correction: "holm" (default), "bonferroni" or None, across variables.
        bins: number of bins for "chisq".

    Returns:
        A Dataset over `variable` (with the `parameter` coord) with `statistic`, `p_value`,
        `p_adjusted`, `rejected` (p_adjusted <= alpha), `n_datasets` and `max_rank`; the
        method, alpha and correction in its attrs.

    Example:
        >>> table = hj.sbc(model, design, n_datasets=8, key=0, chains=2, warmup=100, draws=50)
        >>> test = hj.uniformity_test(table)
        >>> test["p_adjusted"].dims, test.variable[test.rejected].values.tolist()
        (('variable',), [])
    """
    ranks = table["rank"].transpose("dataset", "variable").values
    max_ranks = table["max_rank"].transpose("dataset", "variable").values
    statistic, p_value = [], []
    for j, variable in enumerate(table["variable"].values):
        if np.unique(max_ranks[:, j]).size != 1:
            raise DataError(f"Expected one max_rank for '{variable}' across datasets; thin every "
                            "fit alike (sbc_ranks does).")
        if method == "ecdf":
            result = _ecdf_test(ranks[:, j], int(max_ranks[0, j]))
        elif method == "chisq":
            result = _chisq_test(ranks[:, j], int(max_ranks[0, j]), bins)
        else:
            raise ConfigError(f"Expected method 'ecdf' or 'chisq'; got {method!r}.")
        statistic.append(result[0])
        p_value.append(result[1])
    p_value = np.clip(p_value, 0.0, 1.0)
    p_adjusted = adjust_pvalues(p_value, correction)
    coords = {name: coord for name, coord in table.coords.items() if coord.dims == ("variable",)}
    return xr.Dataset(
        {
            "statistic": ("variable", np.array(statistic)),
            "p_value": ("variable", p_value),
            "p_adjusted": ("variable", p_adjusted),
            "rejected": ("variable", p_adjusted <= alpha),
            "n_datasets": ("variable", np.full(len(p_value), ranks.shape[0])),
            "max_rank": ("variable", max_ranks[0]),
        },
        coords=coords,
        attrs={"method": method, "alpha": alpha, "correction": str(correction)},
    )
