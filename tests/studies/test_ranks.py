import numpy as np
import pytest
import xarray as xr

from hjax.studies.calibration import uniformity_test
from hjax.studies.ranks import sbc_ranks, thin_factor


def one_variable(draws, truth):
    """Posterior (dataset, chain, draw) and truths (dataset) for a scalar `x`."""
    draws = np.asarray(draws, dtype=float)
    return (xr.Dataset({"x": (("dataset", "chain", "draw"), draws)}),
            xr.Dataset({"x": ("dataset", np.asarray(truth, dtype=float))}))


def test_rank_counts_draws_below_the_truth():
    draws = np.tile([[3.0, 1.0, 5.0, 2.0, 4.0]], (3, 1, 1))  # 3 datasets, 1 chain, 5 draws
    table = sbc_ranks(*one_variable(draws, [3.5, -1.0, 9.0]), thin=1)
    np.testing.assert_array_equal(table["rank"].values[:, 0], [3, 0, 5])
    np.testing.assert_array_equal(table["max_rank"].values[:, 0], [5, 5, 5])


def test_ties_are_split_uniformly():
    n = 4000
    draws = np.tile([[1.0, 2.0, 2.0, 2.0, 3.0]], (n, 1, 1))
    table = sbc_ranks(*one_variable(draws, np.full(n, 2.0)), thin=1, seed=1)
    ranks = table["rank"].values[:, 0]
    # One draw below, three tied: ranks 1..4 equally likely. Binomial sd of a share is 0.007.
    assert set(np.unique(ranks)) == {1, 2, 3, 4}
    shares = np.bincount(ranks, minlength=5)[1:] / n
    np.testing.assert_allclose(shares, 0.25, atol=4 * np.sqrt(0.25 * 0.75 / n))


def test_thinning_keeps_every_thin_th_draw_of_each_chain():
    # Kept draws (0, 3, 6, 9 of each chain) are all below the truth; the others above.
    chain = np.where(np.arange(10) % 3 == 0, -1.0, 1.0)
    draws = np.tile(chain, (1, 2, 1))
    table = sbc_ranks(*one_variable(draws, [0.0]), thin=3)
    assert int(table["rank"].values[0, 0]) == 8
    assert int(table["max_rank"].values[0, 0]) == 8


@pytest.mark.parametrize(("n_chain", "n_draw", "min_ess", "thin", "kept"), [
    (4, 1000, None, 42, 96),   # cap: at most 99 draws
    (1, 50, None, 1, 50),      # few draws: keep all
    (4, 1000, 100.0, 42, 96),  # the cap already thins more than the ESS asks
    (4, 1000, 20.0, 200, 20),  # low ESS: one kept draw per effective draw
])
def test_thin_factor(n_chain, n_draw, min_ess, thin, kept):
    assert thin_factor(n_chain, n_draw, min_ess=min_ess) == thin
    assert n_chain * -(-n_draw // thin) == kept


def test_ess_sets_thinning_per_variable(study):
    posterior, truths = study(n_datasets=5, n_chain=2, n_draw=100)
    ess = xr.Dataset({"mu": ("dataset", np.full(5, 10.0)),
                      "theta": (("dataset", "group"), np.full((5, 3), 500.0))})
    table = sbc_ranks(posterior, truths, ess=ess)
    max_rank = table["max_rank"].isel(dataset=0).to_series()
    assert max_rank["mu"] == 10  # thin 20: 2 chains x 5 draws
    assert max_rank["theta[A]"] == 68  # the max_rank cap (thin 3), ESS being high


def test_summaries_on_a_hand_made_posterior():
    grid = np.arange(101.0)  # quantiles of 0..100 are the probabilities times 100
    draws = np.tile(grid, (4, 1, 1))
    truths = [20.0, 5.0, 1.0, 50.0]
    table = sbc_ranks(*one_variable(draws, truths), thin=1)
    row = table.isel(variable=0)
    sd = grid.std(ddof=1)
    np.testing.assert_allclose(row["mean"], 50.0)
    np.testing.assert_allclose(row["sd"], sd)
    np.testing.assert_allclose(row["median"], 50.0)
    np.testing.assert_allclose(row["q5"], 5.0)
    np.testing.assert_allclose(row["q95"], 95.0)
    np.testing.assert_allclose(row["z_score"], (50.0 - np.array(truths)) / sd)
    # Prior variance from the truths across datasets; posterior variance sd^2.
    np.testing.assert_allclose(row["contraction"], 1 - sd**2 / np.var(truths, ddof=1))
    # Central intervals: 50 % = [25, 75], 80 % = [10, 90], 95 % = [2.5, 97.5].
    np.testing.assert_array_equal(row["covered_50"], [False, False, False, True])
    np.testing.assert_array_equal(row["covered_80"], [True, False, False, True])
    np.testing.assert_array_equal(row["covered_95"], [True, True, False, True])


def test_long_layout_labels_and_parameter_coord():
    rng = np.random.default_rng(0)
    posterior = xr.Dataset(
        {"mu": (("dataset", "chain", "draw"), rng.normal(size=(3, 2, 4))),
         "ab": (("dataset", "chain", "draw", "p", "k"), rng.normal(size=(3, 2, 4, 2, 2)))},
        coords={"p": ["p1", "p2"], "k": ["x", "y"], "dataset": [10, 11, 12]},
    )
    truths = xr.Dataset(
        {"mu": ("dataset", rng.normal(size=3)),
         "ab": (("dataset", "k", "p"), rng.normal(size=(3, 2, 2)))},  # dims in another order
        coords={"p": ["p1", "p2"], "k": ["x", "y"], "dataset": [10, 11, 12]},
    )
    table = sbc_ranks(posterior, truths)
    assert table["rank"].dims == ("dataset", "variable")
    assert list(table["variable"].values) == [
        "mu", "ab[p1, x]", "ab[p1, y]", "ab[p2, x]", "ab[p2, y]"]
    assert list(table["parameter"].values) == ["mu", "ab", "ab", "ab", "ab"]
    assert list(table["dataset"].values) == [10, 11, 12]
    np.testing.assert_array_equal(table["simulated_value"].sel(variable="ab[p2, x]"),
                                  truths["ab"].sel(p="p2", k="x"))


def test_missing_posterior_variable_is_refused():
    posterior, truths = one_variable(np.zeros((2, 1, 3)), [0.0, 1.0])
    with pytest.raises(ValueError, match="no posterior draws"):
        sbc_ranks(posterior, truths.rename(x="y"))


@pytest.mark.parametrize("method", ["ecdf", "chisq"])
def test_exact_posterior_passes_sbc(study, method):
    table = sbc_ranks(*study(n_datasets=300, seed=0))
    result = uniformity_test(table, method=method)
    assert not result["rejected"].any(), result["p_adjusted"].values


@pytest.mark.parametrize("method", ["ecdf", "chisq"])
@pytest.mark.parametrize("planted", [
    {"fit_prior_sd": 2.0, "noise_sd": 3.0},  # prior twice as wide as the generating one
    {"sd_scale": 0.5},                       # posterior too narrow
    {"sd_scale": 2.0},                       # posterior too wide
])
def test_planted_error_fails_sbc(study, method, planted):
    table = sbc_ranks(*study(n_datasets=300, seed=0, **planted))
    result = uniformity_test(table, method=method)
    assert result["rejected"].all(), result["p_adjusted"].values
