"""The workflow after a fit, measured: predictive draws against analytic predictive
distributions, PSIS-LOO against exact leave-one-out, model comparison, power-scaling."""

import arviz_stats as azs
import numpy as np
import pytest
from inference_helpers import conjugate_data, conjugate_model, conjugate_posterior
from scipy import stats

import hjax as hj

GROUPS = 3


@pytest.fixture(scope="module")
def conjugate_fit():
    model, data = conjugate_model(GROUPS), conjugate_data(0, GROUPS, per_group=3)
    fit = hj.sample(model, data, key=0, chains=4, warmup=500, draws=1000, warn=False)
    return model, data, hj.posterior_predictive(model, fit, key=1)


def test_posterior_predictive_matches_the_analytic_one(conjugate_fit):
    """y_i's predictive is N(E theta_g, Var theta_g + sigma_i^2) under the exact posterior."""
    model, data, fit = conjugate_fit
    mean, cov = conjugate_posterior(data, GROUPS)
    draws = fit.posterior_predictive["y"].values.reshape(-1, data["y"].size)
    assert fit.posterior_predictive["y"].dims == ("chain", "draw", "obs")
    for i in (0, 4, 8):
        g = data["g"][i]
        # Thinned: the predictive noise is independent per draw, theta's part nearly so.
        sample = draws[::4, i]
        scale = np.sqrt(cov[g + 1, g + 1] + data["sigma"][i] ** 2)
        assert stats.kstest(sample, stats.norm(mean[g + 1], scale).cdf).pvalue > 1e-3, i


def test_prior_predictive_moments_match_the_prior():
    model = hj.Model(hj.Gaussian(mu=hj.Fixed("mu", hj.Normal(1.0, 2.0)), sigma=1.0), coords={})
    prior = hj.prior_predictive(model, {"y": np.zeros(5)}, key=0, draws=4000)
    y = prior.prior_predictive["y"].values[0, :, 0]
    n = y.size
    assert abs(y.mean() - 1.0) < 4 * np.sqrt(5.0 / n)  # y ~ N(1, sqrt(4 + 1))
    assert abs(y.var(ddof=1) - 5.0) < 4 * 5.0 * np.sqrt(2.0 / (n - 1))
    mu = prior.prior["mu"].values[0]
    assert abs(mu.mean() - 1.0) < 4 * 2.0 / np.sqrt(n)


def _exact_loo(data) -> float:
    """sum_i log p(y_i | y_-i): the conjugate posterior without row i, then its predictive."""
    total = 0.0
    for i in range(data["y"].size):
        rest = {k: np.delete(v, i) for k, v in data.items()}
        mean, cov = conjugate_posterior(rest, GROUPS)
        g = data["g"][i]
        scale = np.sqrt(cov[g + 1, g + 1] + data["sigma"][i] ** 2)
        total += stats.norm.logpdf(data["y"][i], mean[g + 1], scale)
    return total


def test_psis_loo_agrees_with_exact_leave_one_out(conjugate_fit):
    model, data, fit = conjugate_fit
    result = hj.loo(fit)
    assert abs(float(result.elpd) - _exact_loo(data)) < float(result.se)
    assert result.n_data_points == data["y"].size


def test_compare_ranks_the_true_model_above_a_misspecified_one():
    data = conjugate_data(3, GROUPS, per_group=8)
    truth = conjugate_model(GROUPS)
    # The misspecified model pools the groups completely (their means differ, sd 2).
    wrong = hj.Model(hj.Gaussian(mu=hj.Fixed("mu", hj.Normal(0, 5)), sigma=hj.Data("sigma")),
                     coords={})
    fits = {name: hj.posterior_predictive(m, hj.sample(m, data, key=0, chains=2, warmup=300,
                                                       draws=500, warn=False), key=1)
            for name, m in {"truth": truth, "wrong": wrong}.items()}
    ranked = azs.compare(fits)
    assert list(ranked.index) == ["truth", "wrong"]


def test_power_scaling_flags_a_strong_prior_and_not_a_weak_one():
    y = np.random.default_rng(0).normal(3.0, 1.0, 30)

    def prior_sensitivity(prior):
        model = hj.Model(hj.Gaussian(mu=hj.Fixed("mu", prior), sigma=1.0), coords={})
        fit = hj.posterior_predictive(model, hj.sample(model, {"y": y}, key=0, chains=4,
                                                       warmup=300, draws=1000, warn=False),
                                      key=1)
        return float(azs.psense(fit, group="prior")["mu"])

    assert prior_sensitivity(hj.Normal(0.0, 0.1)) > 0.05
    assert prior_sensitivity(hj.Normal(0.0, 10.0)) < 0.05


def test_batched_fits_get_the_groups_per_dataset():
    model = conjugate_model(GROUPS)
    datasets = [conjugate_data(s, GROUPS, per_group=2) for s in range(3)]
    fit = hj.sample(model, datasets, key=0, chains=2, warmup=100, draws=50, warn=False)
    fit = hj.posterior_predictive(model, fit, key=1)
    assert fit.log_likelihood["y"].dims == ("dataset", "chain", "draw", "obs")
    assert fit.posterior_predictive["y"].shape == (3, 2, 50, 6)
    assert set(fit.log_prior.data_vars) == {"mu"}  # theta's scale is fixed: no prior of its own


def test_missing_outcomes_are_masked_and_predicted():
    """Rows with a missing outcome (missing=True) leave the posterior as if they were
    removed: the exact conjugate posterior of the other rows, within Monte Carlo error."""
    data = conjugate_data(5, GROUPS, per_group=4)
    gone = np.array([1, 6, 10])
    masked = dict(data, y=np.where(np.isin(np.arange(12), gone), np.nan, data["y"]))
    base = conjugate_model(GROUPS)
    model = hj.Model(base.likelihood, coords={"g": GROUPS}, missing=True)
    with pytest.raises(ValueError, match=r"3 NaN/inf values.*hj.Model\(\.\.\., missing=True\)"):
        base.prepare(masked)
    fit = hj.sample(model, masked, key=0, chains=4, warmup=500, draws=1000, warn=False)
    rest = {k: np.delete(v, gone) for k, v in data.items()}
    mean, cov = conjugate_posterior(rest, GROUPS)
    summary = hj.summary(fit, var_names=["mu", "theta"])
    for j, label in enumerate(["mu", "theta[0]", "theta[1]", "theta[2]"]):
        z = abs(summary.loc[label, "mean"] - mean[j]) / summary.loc[label, "mcse_mean"]
        assert z < 4, (label, z)
        assert abs(summary.loc[label, "sd"] / np.sqrt(cov[j, j]) - 1) < 0.1, label
    fit = hj.posterior_predictive(model, fit, key=1)
    predicted = fit.posterior_predictive["y"].values[..., gone]
    assert np.all(np.isfinite(predicted)) and predicted.std() > 0
    np.testing.assert_array_equal(fit.log_likelihood["y"].values[..., gone], 0.0)


def test_studies_record_loo_and_sensitivity_per_dataset():
    model, design = hj.catalog.varying_intercept(groups=4, per_group=5)
    table = hj.sbc(model, design, n_datasets=4, key=0, chains=2, warmup=100, draws=100,
                   max_rank=19, loo=True, sensitivity=True, escalation={"attempts": 0})
    assert table.elpd_loo.dims == ("dataset",) and np.all(np.isfinite(table.elpd_loo))
    assert table.prior_sensitivity.dims == ("dataset", "variable")
    assert np.all(np.isfinite(table.prior_sensitivity.sel(variable="b0")))
    assert bool((table.prior_sensitivity >= 0).all() & (table.likelihood_sensitivity >= 0).all())


def test_imputed_predictors_recover_their_simulated_values():
    """x ~ N(x_mu, x_sd) with 10 of 60 values missing, y ~ N(b0 + b x, 0.5): the missing
    values are parameters, and a recovery study finds them (coverage, correlation)."""
    x = hj.Imputed("x", loc=hj.Fixed("x_mu"), scale=hj.Fixed("x_sd", hj.HalfNormal(1.0)),
                   group="x_missing")
    model = hj.Model(hj.Gaussian(mu=hj.Fixed("b0") + hj.Fixed("b") * x, sigma=0.5),
                     coords={"x_missing": 10})
    rng = np.random.default_rng(0)
    design = {"x": np.where(np.arange(60) % 6 == 0, np.nan, rng.normal(size=60))}
    with pytest.raises(ValueError, match=r"data\['x'\] has 10 missing values, but Imputed 'x' "
                                         r"imputes 3"):
        hj.Model(model.likelihood, coords={"x_missing": 3}).prepare(design, observed=False)
    table = hj.recover(model, design, key=0, given={"b0": 0.5, "b": 1.0, "x_mu": 0.0, "x_sd": 1.0},
                       replicates=8, chains=2, warmup=300, draws=300,
                       escalation={"attempts": 0})
    imputed = hj.recovery_metrics(table, by="parameter").sel(parameter="x_imputed")
    assert float(imputed.correlation) > 0.8
    assert float(imputed.coverage_95) > 0.85 and int(imputed.n) == 80
