import numpy as np
import pytest
import xarray as xr

from hjax.studies.metrics import recovery_metrics, shrinkage


@pytest.fixture
def table():
    """Four datasets; `a` recovered with known errors, `b` a vector of two."""
    truth = np.array([[0.0, 1.0, 1.0], [1.0, 2.0, 3.0], [2.0, 3.0, 5.0], [3.0, 4.0, 7.0]])
    mean = np.array([[0.5, 1.0, 2.0], [1.5, 2.0, 4.0], [1.5, 3.0, 6.0], [3.5, 4.0, 8.0]])
    covered = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=bool)
    dims = ("dataset", "variable")
    return xr.Dataset(
        {"mean": (dims, mean), "simulated_value": (dims, truth),
         "covered_50": (dims, covered), "covered_80": (dims, covered | True),
         "covered_95": (dims, covered | True)},
        coords={"variable": ["a", "b[0]", "b[1]"], "parameter": ("variable", ["a", "b", "b"])},
    )


def test_recovery_metrics_by_variable(table):
    metrics = recovery_metrics(table)
    a = metrics.sel(variable="a")
    # Errors 0.5, 0.5, -0.5, 0.5.
    np.testing.assert_allclose(a["bias"], 0.25)
    np.testing.assert_allclose(a["rmse"], 0.5)
    # Deviations: truth (-1.5, -0.5, 0.5, 1.5), mean (-1.25, -0.25, -0.25, 1.75).
    np.testing.assert_allclose(a["correlation"], 4.5 / np.sqrt(5.0 * 4.75))
    np.testing.assert_allclose(a["coverage_50"], 0.75)
    np.testing.assert_allclose(a["coverage_95"], 1.0)
    assert int(a["n"]) == 4
    # b[0] is recovered exactly; b[1] is off by exactly one everywhere.
    np.testing.assert_allclose(metrics["rmse"].sel(variable="b[0]"), 0.0)
    np.testing.assert_allclose(metrics["bias"].sel(variable="b[1]"), 1.0)
    np.testing.assert_allclose(metrics["correlation"].sel(variable="b[1]"), 1.0)
    np.testing.assert_allclose(metrics["coverage_50"].sel(variable="b[1]"), 0.0)


def test_recovery_metrics_pool_a_parameter(table):
    metrics = recovery_metrics(table, by="parameter")
    assert list(metrics["parameter"].values) == ["a", "b"]
    b = metrics.sel(parameter="b")
    np.testing.assert_allclose(b["bias"], 0.5)
    np.testing.assert_allclose(b["rmse"], np.sqrt(0.5))
    np.testing.assert_allclose(b["coverage_50"], 3 / 8)
    assert int(b["n"]) == 8


def test_correlation_is_nan_for_a_constant_estimate(table):
    table["mean"][:, 0] = 1.0
    assert np.isnan(float(recovery_metrics(table)["correlation"].sel(variable="a")))


def test_shrinkage_on_a_hand_made_example():
    result = shrinkage(np.array([2.0, -1.0]), np.array([3, 30]), np.array([1.0, -0.9]), 0.0)
    np.testing.assert_allclose(result["shrinkage"], [0.5, 0.1])
    assert result["shrinkage"].dims == ("group",)


def test_small_groups_shrink_more_in_a_normal_hierarchy():
    # theta_j ~ N(mu, tau), y_ij ~ N(theta_j, sigma), tau and sigma known, flat prior on mu:
    # E[theta_j | y] = B_j mu_hat + (1 - B_j) ybar_j, B_j = (sigma^2/n_j) / (sigma^2/n_j + tau^2).
    rng = np.random.default_rng(7)
    tau, sigma = 1.0, 2.0
    sizes = np.repeat([1, 2, 4, 8, 16, 32, 64], 3)
    theta = rng.normal(0.5, tau, sizes.size)
    ybar = np.array([rng.normal(t, sigma, n).mean() for t, n in zip(theta, sizes, strict=True)])
    var = sigma**2 / sizes
    mu_hat = np.sum(ybar / (var + tau**2)) / np.sum(1 / (var + tau**2))
    weight = var / (var + tau**2)
    posterior = weight * mu_hat + (1 - weight) * ybar
    result = shrinkage(ybar, sizes, posterior, mu_hat)
    np.testing.assert_allclose(result["shrinkage"], weight, rtol=1e-10)
    by_size = [result["shrinkage"].values[sizes == n].mean() for n in np.unique(sizes)]
    assert np.all(np.diff(by_size) < 0)
    assert by_size[0] > 0.7 > 0.1 > by_size[-1]
