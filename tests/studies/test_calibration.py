import numpy as np
import pytest
import xarray as xr
from scipy import stats

from hjax.studies.calibration import (
    adjust_pvalues,
    ecdf_band,
    ecdf_grid,
    rank_ecdf,
    uniformity_test,
)


def rank_table(ranks, max_rank):
    """A study table holding only ranks: (dataset, variable)."""
    ranks = np.asarray(ranks)
    names = [f"x[{j}]" for j in range(ranks.shape[1])]
    return xr.Dataset(
        {"rank": (("dataset", "variable"), ranks),
         "max_rank": (("dataset", "variable"), np.full(ranks.shape, max_rank))},
        coords={"variable": names, "parameter": ("variable", ["x"] * len(names))},
    )


def test_grid_falls_on_whole_ranks():
    np.testing.assert_allclose(ecdf_grid(50, 9), np.arange(1, 10) / 10)
    z = ecdf_grid(30, 99)  # K = 30 intervals of a 100-value rank scale
    assert len(z) == 29
    np.testing.assert_allclose(z * 100, np.rint(z * 100))


def test_rank_ecdf_on_a_hand_made_example():
    # Normalized ranks (r + 1) / 4: 0.25, 0.5, 0.5, 1.0.
    ecdf = rank_ecdf(np.array([0, 1, 1, 3]), 3, np.array([0.25, 0.5, 0.75]))
    np.testing.assert_allclose(ecdf, [0.25, 0.75, 0.75])


def test_band_covers_uniform_ecdfs_at_the_nominal_rate():
    n, max_rank, prob, replicates = 100, 99, 0.95, 200
    band = ecdf_band(n, max_rank, prob=prob)
    # The exact coverage is at least the level, above it only by the discreteness of counts.
    assert prob <= band.coverage < prob + 0.01
    rng = np.random.default_rng(3)
    ranks = rng.integers(0, max_rank + 1, (replicates, n))
    ecdf = rank_ecdf(ranks, max_rank, band.z)
    inside = ((ecdf >= band.lower) & (ecdf <= band.upper)).all(axis=-1)
    # 200 Bernoulli(0.95) replicates: sd 0.015; 3 sd.
    assert abs(inside.mean() - band.coverage) < 3 * np.sqrt(prob * (1 - prob) / replicates)


def test_band_is_simultaneous_not_pointwise():
    # The pointwise 95 % band would be far narrower than the simultaneous one at the middle.
    n, max_rank = 100, 99
    band = ecdf_band(n, max_rank, prob=0.95)
    middle = np.argmin(abs(band.z - 0.5))
    pointwise = stats.binom.interval(0.95, n, 0.5)
    assert band.upper[middle] * n > pointwise[1]
    assert band.lower[middle] * n < pointwise[0]


def test_ecdf_test_rejects_exactly_when_the_ecdf_leaves_the_band():
    n, max_rank, alpha = 60, 19, 0.05
    rng = np.random.default_rng(4)
    # Uniform ranks and ranks pushed to the middle, so that both outcomes occur.
    uniform = rng.integers(0, max_rank + 1, (n, 100))
    middle = np.clip(rng.normal(9.5, 5.0, (n, 100)).round(), 0, max_rank).astype(int)
    ranks = np.concatenate([uniform, middle], axis=1)
    result = uniformity_test(rank_table(ranks, max_rank), alpha=alpha, correction=None)
    band = ecdf_band(n, max_rank, prob=1 - alpha)
    ecdf = rank_ecdf(ranks.T, max_rank, band.z)
    outside = ~((ecdf >= band.lower) & (ecdf <= band.upper)).all(axis=-1)
    assert 0 < outside.sum() < outside.size
    np.testing.assert_array_equal(result["rejected"].values, outside)


def test_ecdf_p_values_are_uniform_under_the_null():
    n, max_rank, replicates = 100, 49, 300
    rng = np.random.default_rng(5)
    ranks = rng.integers(0, max_rank + 1, (n, replicates))
    p = uniformity_test(rank_table(ranks, max_rank), correction=None)["p_value"].values
    # Kolmogorov-Smirnov against U(0, 1); the p-values are slightly discrete (conservative).
    assert stats.kstest(p, "uniform").pvalue > 0.001
    assert abs((p <= 0.1).mean() - 0.1) < 3 * np.sqrt(0.1 * 0.9 / replicates)


def test_chisq_on_hand_made_ranks():
    flat = rank_table(np.array([[0, 0, 1, 1, 2, 2, 3, 3]]).T, 3)
    result = uniformity_test(flat, method="chisq", bins=4)
    assert float(result["statistic"][0]) == 0.0
    assert float(result["p_value"][0]) == 1.0
    piled = rank_table(np.zeros((8, 1), dtype=int), 3)
    result = uniformity_test(piled, method="chisq", bins=4)
    # Expected 2 per bin: (8 - 2)^2 / 2 + 3 * (0 - 2)^2 / 2 = 24 on 3 degrees of freedom.
    assert float(result["statistic"][0]) == 24.0
    np.testing.assert_allclose(result["p_value"][0], stats.chi2.sf(24.0, 3))


def test_multiplicity_corrections():
    p = np.array([0.01, 0.04, 0.03])
    np.testing.assert_allclose(adjust_pvalues(p, "holm"), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(adjust_pvalues(p, "bonferroni"), [0.03, 0.12, 0.09])
    np.testing.assert_allclose(adjust_pvalues(p, None), p)


@pytest.mark.parametrize("correction", ["holm", "bonferroni"])
def test_correction_is_applied_across_variables(correction):
    rng = np.random.default_rng(6)
    ranks = rng.integers(0, 20, (200, 6))
    ranks[:20, 0] = 0  # one variable with piled-up small ranks
    result = uniformity_test(rank_table(ranks, 19), alpha=0.01, correction=correction)
    p = result["p_value"].values
    np.testing.assert_allclose(result["p_adjusted"], adjust_pvalues(p, correction))
    np.testing.assert_array_equal(result["rejected"], result["p_adjusted"] <= 0.01)
    assert result["rejected"].values[0] and not result["rejected"].values[1:].any()
    assert result.attrs["correction"] == correction


def test_unequal_max_rank_across_datasets_is_refused():
    table = rank_table(np.zeros((3, 1), dtype=int), 9)
    table["max_rank"][1, 0] = 19
    with pytest.raises(ValueError, match="one max_rank"):
        uniformity_test(table)


@pytest.mark.parametrize("method", ["ecdf", "chisq"])
def test_one_dataset_is_tested_without_rejection(method):
    """A study whose diagnostics pass for a single fit still reports (nothing to test)."""
    test = uniformity_test(rank_table([[0, 9]], 9), method=method)
    assert not test["rejected"].any()
    assert np.all(np.isfinite(test["p_value"].values))
