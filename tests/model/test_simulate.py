"""`simulate` draws match the prior: moments with Monte Carlo tolerances, LKJ marginals by KS."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

import hjax as hj

N = 4000  # prior draws per check


def _draws(model, design_raw, seed=0):
    design = model.prepare(design_raw, observed=False)
    keys = jax.random.split(jax.random.key(seed), N)
    truths, data = jax.jit(jax.vmap(model.simulate, in_axes=(0, None)))(keys, design)
    return {k: np.asarray(v, np.float64) for k, v in truths.items()}, {
        k: np.asarray(v, np.float64) for k, v in data.items()}


def _assert_mean(x, want, n_se=4.5):
    se = x.std() / np.sqrt(x.size)
    assert abs(x.mean() - want) < n_se * se, (x.mean(), want, se)


def _assert_second_moment(x, want, n_se=4.5):
    se = (x**2).std() / np.sqrt(x.size)
    assert abs((x**2).mean() - want) < n_se * se, ((x**2).mean(), want, se)


def test_varying_intercept_prior_moments(grouped):
    model = hj.Model(
        hj.Gaussian(mu=hj.Fixed("b0", hj.Normal(1.0, 2.0)) + hj.Level("a", "g"),
                    sigma=hj.Fixed("sigma", hj.HalfNormal(0.5))),
        coords={"g": 6},
    )
    truths, data = _draws(model, {"g": grouped["g"]})
    _assert_mean(truths["b0"], 1.0)
    _assert_second_moment(truths["b0"] - 1.0, 4.0)
    _assert_second_moment(truths["a_sd"], 1.0)          # HalfNormal(1): E[tau^2] = 1
    _assert_second_moment(truths["a"][:, 0], 1.0)       # a = tau z: E[a^2] = E[tau^2]
    _assert_second_moment(truths["sigma"], 0.25)
    y = data["y"][:, 0] - truths["b0"]                  # y - b0 = a_g + sigma eps
    _assert_second_moment(y, 1.25)


def test_centered_and_noncentered_simulate_the_same_prior(grouped):
    def model(centered):
        level = hj.Level("a", "g", loc=hj.Fixed("mu"), scale=hj.HalfNormal(1.0),
                         centered=centered)
        return hj.Model(hj.Gaussian(mu=level, sigma=1.0), coords={"g": 6})

    a_nc = _draws(model(False), {"g": grouped["g"]}, seed=1)[0]["a"][:, 2]
    a_c = _draws(model(True), {"g": grouped["g"]}, seed=2)[0]["a"][:, 2]
    assert stats.ks_2samp(a_nc, a_c).pvalue > 1e-3


def test_lkj_correlations_have_the_beta_marginal(grouped):
    eta, k = 2.0, 3
    level = hj.Level("ab", "g", predictors=("1", "x", "x2"), corr=hj.LKJCholesky(k, eta))
    model = hj.Model(hj.Gaussian(mu=level, sigma=1.0), coords={"g": 6})
    raw = {"g": grouped["g"], "x": grouped["x"], "x2": grouped["x"] ** 2}
    corr = _draws(model, raw)[0]["ab_corr"]
    # LKJ(eta) in K dims: each correlation r has (r + 1) / 2 ~ Beta(b, b), b = eta - 1 + K / 2.
    b = eta - 1 + k / 2
    assert model.coords["ab_pair"] == ("1:x", "1:x2", "x:x2")
    for pair in range(3):
        assert stats.kstest((corr[:, pair] + 1) / 2, stats.beta(b, b).cdf).pvalue > 1e-3


def test_count_likelihoods_simulate_their_means():
    raw = {"unit": np.arange(50), "n": np.full(50, 30)}
    prior = hj.Fixed("mu", hj.Normal(-1.0, 0.3))
    binomial = hj.Model(hj.Binomial(logit_p=prior, trials=hj.Data("n")), coords={})
    _, data = _draws(binomial, {"n": raw["n"]})
    p = 1 / (1 + np.exp(-(-1.0 + 0.3 * np.random.default_rng(0).normal(size=200_000))))
    _assert_mean(data["y"][:, 0], 30 * p.mean())

    poisson = hj.Model(hj.Poisson(log_rate=hj.Fixed("b", hj.Normal(1.0, 0.2))
                                  + hj.Level("u", "unit", scale=0.1)), coords={"unit": 50})
    _, data = _draws(poisson, {"unit": raw["unit"]})
    # E[y] = E[exp(b + u)] = exp(1 + (0.2^2 + 0.1^2) / 2)
    _assert_mean(data["y"].mean(axis=1), np.exp(1.0 + (0.04 + 0.01) / 2))


def test_simulated_data_are_valid_model_input(grouped):
    model = hj.Model(hj.BernoulliLogit(hj.Fixed("b0") + hj.Level("a", "g")), coords={"g": 6})
    design = model.prepare({"g": grouped["g"]}, observed=False)
    truths, data = model.simulate(jax.random.key(0), design)
    assert set(np.unique(np.asarray(data["y"]))) <= {0, 1}
    prepared = model.prepare({k: np.asarray(v) for k, v in data.items()})
    assert jnp.isfinite(model.logdensity(model.unconstrain(
        model.sample_prior(jax.random.key(0), design)), prepared))


def test_given_values_are_held_fixed(grouped):
    for centered in (False, True):
        model = hj.Model(hj.Gaussian(mu=hj.Level("a", "g", loc=hj.Fixed("mu"),
                                                 centered=centered), sigma=0.1),
                         coords={"g": 6})
        design = model.prepare({"g": grouped["g"]}, observed=False)
        truths, _ = model.simulate(jax.random.key(0), design, given={"mu": 3.0, "a_sd": 0.5})
        assert float(truths["mu"]) == 3.0 and float(truths["a_sd"]) == 0.5
        values = jnp.arange(6.0)
        truths, data = model.simulate(jax.random.key(0), design, given={"a": values})
        np.testing.assert_allclose(truths["a"], values, rtol=1e-5, atol=1e-5)
        assert np.abs(np.asarray(data["y"]) - grouped["g"]).max() < 0.6  # y ~ N(a[g], 0.1)


def test_given_correlations_are_held_fixed(grouped):
    level = hj.Level("ab", "g", predictors=("1", "x"), corr=hj.LKJCholesky(2, 2.0))
    model = hj.Model(hj.Gaussian(mu=level, sigma=1.0), coords={"g": 6})
    design = model.prepare({"g": grouped["g"], "x": grouped["x"]}, observed=False)
    truths, _ = model.simulate(jax.random.key(0), design, given={"ab_corr": jnp.array([0.6])})
    np.testing.assert_allclose(truths["ab_corr"], [0.6], rtol=1e-5)
