"""Term algebra: differences, negation, products and quotients of terms, numbers and data
columns, checked against hand-written densities and finite differences; identification of
slopes and products; named derived quantities; means of a vector level."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from scipy import special, stats

import hjax as hj

RNG = np.random.default_rng(0)


def _position(model, seed=0):
    flat, unravel = ravel_pytree(model.init(jax.random.key(seed)))
    return unravel(jnp.asarray(np.random.default_rng(seed).normal(0, 0.7, flat.size)))


def _finite_differences(model, position, data, eps=1e-6):
    flat, unravel = ravel_pytree(position)

    def f(x):
        return float(model.logdensity(unravel(jnp.asarray(x)), data))

    x = np.asarray(flat)
    grad = np.zeros_like(x)
    for i in range(x.size):
        step = np.zeros_like(x)
        step[i] = eps
        grad[i] = (f(x + step) - f(x - step)) / (2 * eps)
    return grad, ravel_pytree(jax.grad(model.logdensity)(position, data))[0]


def _half_normal(x, scale):
    return np.log(2) + stats.norm.logpdf(x, 0, scale)


def irt_reference(p, y, person, item):
    """log density of the 2PL model over its unconstrained position, by hand with scipy."""
    log_a_sd, b_sd = np.exp(p["log_a_sd"]), np.exp(p["b_sd"])
    lp = p["log_a_sd"] + p["b_sd"]  # log-Jacobians of the exp maps
    lp += _half_normal(log_a_sd, 0.5) + _half_normal(b_sd, 1.0)
    lp += stats.norm.logpdf(p["mu_log_a"], 0, 0.5) + stats.norm.logpdf(p["mu_b"], 0, 1)
    lp += sum(stats.norm.logpdf(p[z]).sum() for z in ("log_a_z", "theta_z", "b_z"))
    a = np.exp(p["mu_log_a"] + log_a_sd * p["log_a_z"])
    b = p["mu_b"] + b_sd * p["b_z"]
    logit = a[item] * (p["theta_z"][person] - b[item])
    return lp + stats.bernoulli.logpmf(y, special.expit(logit)).sum()


def test_2pl_irt_density_and_gradient_match_references():
    with jax.enable_x64(True):
        model, design = hj.catalog.irt_2pl(persons=12, items=5)
        y = RNG.integers(0, 2, design["person"].size)
        data = model.prepare(design | {"y": y})
        position = _position(model)
        ours = float(model.logdensity(position, data))
        theirs = irt_reference({k: np.asarray(v) for k, v in position.items()}, y,
                               design["person"], design["item"])
        np.testing.assert_allclose(ours, theirs, rtol=1e-10)
        numeric, exact = _finite_differences(model, position, data)
        np.testing.assert_allclose(exact, numeric, rtol=1e-6, atol=1e-6)


def test_difference_negation_products_and_quotients():
    """mu = 2 b0 - x * b1 + u[g] / 2 - c * z + d / n, sigma = exp(log_s) reported as `s`."""
    mu = (2.0 * hj.Fixed("b0") - hj.Data("x") * hj.Fixed("b1") + hj.Level("u", "g") / 2.0
          - hj.Fixed("c") * hj.Data("z") + hj.Fixed("d") / hj.Data("n"))
    sigma = hj.exp(hj.Fixed("log_s"), name="s")
    model = hj.Model(hj.Gaussian(mu=mu, sigma=sigma), coords={"g": 3})
    assert str(model.likelihood.mu) == ("2 * b0 - data[x] * b1 + u[g] / 2 - c * data[z] "
                                        "+ d / data[n]")
    n_obs = 9
    raw = {"y": RNG.normal(size=n_obs), "x": RNG.normal(size=n_obs), "z": RNG.normal(size=n_obs),
           "n": RNG.integers(1, 5, n_obs).astype(float), "g": np.arange(n_obs) % 3}
    with jax.enable_x64(True):
        data = model.prepare(raw)
        position = _position(model, seed=1)
        p = {k: np.asarray(v) for k, v in position.items()}
        u_sd = np.exp(p["u_sd"])
        u = u_sd * p["u_z"]
        mean = (2 * p["b0"] - raw["x"] * p["b1"] + u[raw["g"]] / 2 - p["c"] * raw["z"]
                + p["d"] / raw["n"])
        lp = (sum(stats.norm.logpdf(p[k]) for k in ("b0", "b1", "c", "d", "log_s"))
              + p["u_sd"] + _half_normal(u_sd, 1.0) + stats.norm.logpdf(p["u_z"]).sum()
              + stats.norm.logpdf(raw["y"], mean, np.exp(p["log_s"])).sum())
        np.testing.assert_allclose(float(model.logdensity(position, data)), lp, rtol=1e-10)
        numeric, exact = _finite_differences(model, position, data)
        np.testing.assert_allclose(exact, numeric, rtol=1e-6, atol=1e-6)
        reported = model.constrain(position, data)
    np.testing.assert_allclose(reported["s"], np.exp(p["log_s"]), rtol=1e-12)


def test_identification_of_differences_slopes_and_products():
    with pytest.raises(ValueError, match=r"'b0' and '-b1' each carry an intercept"):
        hj.Fixed("b0") - hj.Fixed("b1")
    with pytest.raises(ValueError, match=r"each carry an intercept"):
        2.0 * hj.Fixed("b0") + hj.Fixed("b1")
    with pytest.raises(ValueError, match=r"each carry an intercept"):
        hj.Fixed("b0") - (hj.Fixed("b1") + hj.Level("u", "g"))
    # A slope's mean multiplies its predictor: not a second intercept.
    hj.Fixed("b0") + hj.Data("x") * hj.Fixed("b1") + hj.Fixed("d") / hj.Data("n")
    # An imputed column is a predictor as a data column is: its coefficient is a slope.
    imputed = hj.Imputed("x", loc=0.0, scale=hj.Fixed("x_sd", hj.HalfNormal(1)), group="x_na")
    hj.Fixed("b0") + hj.Fixed("b_x") * imputed + hj.Fixed("b_z") / imputed
    radon = (hj.Level("alpha", "county", loc=hj.Fixed("mu_alpha"))
             + hj.Level("beta", "county", loc=hj.Fixed("mu_beta"), predictors=("floor",)))
    assert radon.has_intercept()
    with pytest.raises(ValueError, match=r"each carry an intercept"):
        radon + hj.Fixed("b0")


def test_products_have_positive_support_when_every_factor_has():
    model = hj.Model(hj.Gaussian(mu=0.0, sigma=2.0 * hj.exp(hj.Fixed("log_s"))), coords={})
    assert str(model.likelihood.sigma) == "2 * exp(log_s)"
    with pytest.raises(ValueError, match=r"Gaussian.sigma must be positive"):
        hj.Model(hj.Gaussian(mu=0.0, sigma=-1.0 * hj.exp(hj.Fixed("log_s"))), coords={})


def test_deterministic_values_are_reported_per_group():
    alpha = hj.Deterministic("alpha", hj.Fixed("mu") + hj.Level("u", "county"))
    model = hj.Model(hj.Gaussian(mu=alpha, sigma=1.0), coords={"county": 4})
    data = model.prepare({"y": np.zeros(6), "county": [0, 1, 2, 3, 3, 2]})
    position = model.init(jax.random.key(0))
    reported = model.constrain(position, data)
    np.testing.assert_allclose(reported["alpha"], reported["mu"] + reported["u"], rtol=1e-6)
    assert "derived quantities:\n  alpha = mu + u[county]" in str(model)
    truths, _ = model.simulate(jax.random.key(1), model.prepare(
        {"county": [0, 1, 2, 3]}, observed=False))
    np.testing.assert_allclose(truths["alpha"], truths["mu"] + truths["u"], rtol=1e-6)
    with pytest.raises(ValueError, match=r"reads per-observation data \['x'\]"):
        hj.Deterministic("slope", hj.Fixed("b") * hj.Data("x"))
    with pytest.raises(ValueError, match=r"indexed by several groups \['item', 'person'\]"):
        hj.Deterministic("eta", hj.Level("t", "person") - hj.Level("b", "item"))
    with pytest.raises(ValueError, match=r"more than one value named \['mu'\]"):
        hj.Model(hj.Gaussian(mu=hj.exp(hj.Fixed("mu"), name="mu"), sigma=1.0), coords={})


def test_vector_level_with_a_mean_per_coefficient():
    """Correlated intercepts and slopes, each around its own mean (the radon model's vector
    form): the centered density is the multivariate normal's around (mu_a, mu_b)."""
    level = hj.Level("ab", "county", predictors=("1", "floor"),
                     loc=(hj.Fixed("mu_a"), hj.Fixed("mu_b")), corr=hj.LKJCholesky(2, 2.0),
                     centered=True)
    model = hj.Model(hj.Gaussian(mu=level, sigma=1.0), coords={"county": 3})
    assert level.has_intercept() and "MvNormal((mu_a, mu_b), ab_sd, corr)" in str(model)
    with jax.enable_x64(True):
        raw = {"y": RNG.normal(size=6), "floor": RNG.integers(0, 2, 6).astype(float),
               "county": [0, 1, 2, 0, 1, 2]}
        data = model.prepare(raw)
        position = _position(model, seed=2)
        p, _ = model._to_constrained(position)
        mean = np.array([float(p["mu_a"]), float(p["mu_b"])])
        chol = np.asarray(p["ab_sd"])[:, None] * np.asarray(p["ab_corr_chol"])
        ours = float(level.log_prior(p, data))
        theirs = (stats.multivariate_normal.logpdf(np.asarray(p["ab"]), mean, chol @ chol.T).sum()
                  + _half_normal(np.asarray(p["ab_sd"]), 1.0).sum()
                  + float(hj.LKJCholesky(2, 2.0).log_prob(p["ab_corr_chol"])))
        np.testing.assert_allclose(ours, theirs, rtol=1e-10)
    with pytest.raises(ValueError, match=r"`loc` is one mean per predictor"):
        hj.Level("ab", "county", predictors=("1", "floor"), loc=hj.Fixed("mu_a"))
    # Non-centered, the simulated values are the means plus correlated deviations.
    non_centered = hj.Model(hj.Gaussian(mu=hj.Level(
        "ab", "county", predictors=("1", "floor"), loc=(hj.Fixed("mu_a"), None)), sigma=1.0),
        coords={"county": 500})
    truths, _ = non_centered.simulate(jax.random.key(3), non_centered.prepare(
        {"county": np.arange(500), "floor": np.zeros(500)}, observed=False),
        given={"mu_a": 3.0, "ab_sd": np.array([0.5, 0.5])})
    assert abs(float(truths["ab"][:, 0].mean()) - 3.0) < 4 * 0.5 / np.sqrt(500)
    assert abs(float(truths["ab"][:, 1].mean())) < 4 * 0.5 / np.sqrt(500)
