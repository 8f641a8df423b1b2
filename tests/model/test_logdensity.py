"""`Model.logdensity` against independent hand-written log densities (scipy.stats).

Each reference maps the unconstrained position to constrained values by hand (exp for positive,
numpyro's CorrCholeskyTransform for correlation factors), adds those maps' log-Jacobians, the
priors and the likelihood with scipy, and must agree with hjax to 1e-8 in float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest
from numpyro.distributions.transforms import CorrCholeskyTransform
from scipy import stats

import hjax as hj

pytestmark = pytest.mark.usefixtures("x64")


def _check(model, raw, reference, n_positions=3):
    data = model.prepare(raw)
    logdensity = jax.jit(model.logdensity)
    for seed in range(n_positions):
        position = model.init(jax.random.key(seed))
        u = {k: np.asarray(v, dtype=np.float64) for k, v in position.items()}
        got = float(logdensity(position, data))
        want = reference(u, {k: np.asarray(v) for k, v in data.items()})
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-8)


def _positive(u):
    """exp map and its log-Jacobian."""
    return np.exp(u), np.sum(u)


def test_complete_pooling(grouped):
    model = hj.Model(
        hj.Gaussian(mu=hj.Fixed("b0", hj.Normal(1.0, 5.0)),
                    sigma=hj.Fixed("sigma", hj.HalfNormal(2.0))),
        coords={},
    )

    def reference(u, d):
        sigma, jac = _positive(u["sigma"])
        return (jac + stats.norm.logpdf(u["b0"], 1, 5) + stats.halfnorm.logpdf(sigma, scale=2)
                + stats.norm.logpdf(d["y"], u["b0"], sigma).sum())

    _check(model, grouped, reference)


@pytest.mark.parametrize("centered", [False, True])
def test_no_pooling_fixed_wide_population(grouped, centered):
    model = hj.Model(
        hj.Gaussian(mu=hj.Level("a", "g", scale=10.0, centered=centered), sigma=1.5),
        coords={"g": 6},
    )

    def reference(u, d):
        if centered:
            a = u["a"]
            prior = stats.norm.logpdf(a, 0, 10).sum()
        else:
            a = 10 * u["a_z"]
            prior = stats.norm.logpdf(u["a_z"]).sum()
        return prior + stats.norm.logpdf(d["y"], a[d["g"]], 1.5).sum()

    _check(model, grouped, reference)


@pytest.mark.parametrize("centered", [False, True])
def test_partial_pooling_varying_intercept(grouped, centered):
    model = hj.Model(
        hj.Gaussian(
            mu=hj.Fixed("b0", hj.Normal(0, 5)) + hj.Level("a", "g", scale=hj.HalfCauchy(2.0),
                                                          centered=centered),
            sigma=hj.Fixed("sigma", hj.Exponential(1.0)),
        ),
        coords={"g": 6},
    )

    def reference(u, d):
        tau, jac_tau = _positive(u["a_sd"])
        sigma, jac_sigma = _positive(u["sigma"])
        if centered:
            a, group_prior = u["a"], stats.norm.logpdf(u["a"], 0, tau).sum()
        else:
            a, group_prior = tau * u["a_z"], stats.norm.logpdf(u["a_z"]).sum()
        mu = u["b0"] + a[d["g"]]
        return (jac_tau + jac_sigma + stats.norm.logpdf(u["b0"], 0, 5)
                + stats.halfcauchy.logpdf(tau, scale=2) + stats.expon.logpdf(sigma)
                + group_prior + stats.norm.logpdf(d["y"], mu, sigma).sum())

    _check(model, grouped, reference)


def test_varying_intercept_and_slope_uncorrelated(grouped):
    model = hj.Model(
        hj.Gaussian(
            mu=hj.Fixed("b", hj.Normal(0, 2), predictors=("x",)) + hj.Fixed("b0")
            + hj.Level("ab", "g", predictors=("1", "x"), scale=hj.HalfNormal(1.0)),
            sigma=1.0,
        ),
        coords={"g": 6},
    )

    def reference(u, d):
        sd, jac = _positive(u["ab_sd"])
        ab = u["ab_z"] * sd
        mu = u["b"][0] * d["x"] + u["b0"] + ab[d["g"], 0] + ab[d["g"], 1] * d["x"]
        return (jac + stats.norm.logpdf(u["b"], 0, 2).sum() + stats.norm.logpdf(u["b0"])
                + stats.halfnorm.logpdf(sd).sum() + stats.norm.logpdf(u["ab_z"]).sum()
                + stats.norm.logpdf(d["y"], mu, 1.0).sum())

    _check(model, grouped, reference)


@pytest.mark.parametrize("centered", [False, True])
def test_varying_intercept_and_slopes_lkj_correlated(grouped, centered):
    raw = dict(grouped, x2=grouped["x"] ** 2)
    level = hj.Level("ab", "g", predictors=("1", "x", "x2"), scale=hj.HalfNormal(1.0),
                     corr=hj.LKJCholesky(3, 2.0), centered=centered)
    model = hj.Model(hj.Gaussian(mu=level, sigma=0.7), coords={"g": 6})

    def reference(u, d):
        sd, jac = _positive(u["ab_sd"])
        free = jnp.asarray(u["ab_corr_chol"])
        chol = np.asarray(CorrCholeskyTransform()(free))
        jac += float(CorrCholeskyTransform().log_abs_det_jacobian(free, jnp.asarray(chol)))
        lkj = float(nd.LKJCholesky(3, 2.0).log_prob(jnp.asarray(chol)))
        cov = np.diag(sd) @ chol @ chol.T @ np.diag(sd)
        if centered:
            ab = u["ab"]
            group_prior = stats.multivariate_normal(np.zeros(3), cov).logpdf(ab).sum()
        else:
            ab = u["ab_z"] @ (np.diag(sd) @ chol).T
            group_prior = stats.norm.logpdf(u["ab_z"]).sum()
        mu = ab[d["g"], 0] + ab[d["g"], 1] * d["x"] + ab[d["g"], 2] * d["x2"]
        return (jac + stats.halfnorm.logpdf(sd).sum() + lkj + group_prior
                + stats.norm.logpdf(d["y"], mu, 0.7).sum())

    _check(model, raw, reference)


def test_lkj_density_matches_beta_marginal_in_two_dimensions(x64):
    # For K = 2 the only free entry of L is the correlation r, and (r + 1) / 2 ~ Beta(eta, eta).
    prior = hj.LKJCholesky(2, 3.0)
    for r in (-0.9, -0.2, 0.0, 0.5, 0.95):
        chol = jnp.array([[1.0, 0.0], [r, np.sqrt(1 - r**2)]])
        want = stats.beta.logpdf((r + 1) / 2, 3.0, 3.0) - np.log(2)
        np.testing.assert_allclose(float(prior.log_prob(chol)), want, rtol=1e-10)


def test_group_level_predictor(grouped):
    loc = hj.Fixed("g0", hj.Normal(0, 3)) + hj.Fixed("g1", hj.Normal(0, 1), predictors="z")
    model = hj.Model(
        hj.Gaussian(mu=hj.Level("a", "g", loc=loc, scale=hj.HalfNormal(1.0)), sigma=1.0),
        coords={"g": 6},
    )

    def reference(u, d):
        tau, jac = _positive(u["a_sd"])
        a = u["g0"] + u["g1"] * d["z"] + tau * u["a_z"]
        return (jac + stats.norm.logpdf(u["g0"], 0, 3) + stats.norm.logpdf(u["g1"])
                + stats.halfnorm.logpdf(tau) + stats.norm.logpdf(u["a_z"]).sum()
                + stats.norm.logpdf(d["y"], a[d["g"]], 1.0).sum())

    _check(model, grouped, reference)


def _crossed_data():
    rng = np.random.default_rng(1)
    person, item = np.meshgrid(np.arange(7), np.arange(5), indexing="ij")
    return {
        "person": person.ravel(), "item": item.ravel(),
        "brightness": rng.normal(size=5), "y": rng.integers(0, 2, 35),
    }


def test_crossed_bernoulli_logit():
    # The seeds' signal-detection structure made identifiable: d'_pi = alpha_p + gamma_i,
    # gamma_i = zeta0 + zeta1 * brightness_i, alpha_p ~ N(0, sigma) (zero-mean).
    gamma = hj.Level("gamma", "item", loc=hj.Fixed("zeta0") + hj.Fixed("zeta1",
                     predictors="brightness"), scale=hj.HalfNormal(0.5))
    alpha = hj.Level("alpha", "person", scale=hj.HalfNormal(1.0))
    model = hj.Model(hj.BernoulliLogit(hj.Crossed(alpha, gamma)), coords={"person": 7, "item": 5})

    def reference(u, d):
        sa, ja = _positive(u["alpha_sd"])
        sg, jg = _positive(u["gamma_sd"])
        alpha_v = sa * u["alpha_z"]
        gamma_v = u["zeta0"] + u["zeta1"] * d["brightness"] + sg * u["gamma_z"]
        eta = alpha_v[d["person"]] + gamma_v[d["item"]]
        return (ja + jg + stats.halfnorm.logpdf(sa) + stats.halfnorm.logpdf(sg, scale=0.5)
                + stats.norm.logpdf(u["alpha_z"]).sum() + stats.norm.logpdf(u["gamma_z"]).sum()
                + stats.norm.logpdf(u["zeta0"]) + stats.norm.logpdf(u["zeta1"])
                + stats.bernoulli.logpmf(d["y"], 1 / (1 + np.exp(-eta))).sum())

    _check(model, _crossed_data(), reference)


def test_nested_three_levels():
    # observations in classes in schools: class values centred on their school's value.
    rng = np.random.default_rng(2)
    klass = np.concatenate([np.arange(6), rng.integers(0, 6, 30)])
    school_of_class = np.array([0, 0, 1, 1, 1, 2])
    raw = {"class": klass, "school": school_of_class[klass], "y": rng.normal(size=36)}
    school = hj.Level("school_eff", "school", loc=hj.Fixed("mu", hj.Normal(0, 2)),
                      scale=hj.HalfNormal(1.0))
    klass_eff = hj.Nested("class_eff", "class", parent=school, scale=hj.HalfNormal(0.5))
    model = hj.Model(hj.Gaussian(mu=klass_eff, sigma=hj.Fixed("sigma", hj.HalfNormal(1.0))),
                     coords={"class": 6, "school": 3})
    assert model.prepare(raw)["class_in_school"].tolist() == school_of_class.tolist()

    def reference(u, d):
        ts, j1 = _positive(u["school_eff_sd"])
        tc, j2 = _positive(u["class_eff_sd"])
        sigma, j3 = _positive(u["sigma"])
        school_v = u["mu"] + ts * u["school_eff_z"]
        class_v = school_v[school_of_class] + tc * u["class_eff_z"]
        return (j1 + j2 + j3 + stats.norm.logpdf(u["mu"], 0, 2) + stats.halfnorm.logpdf(ts)
                + stats.halfnorm.logpdf(tc, scale=0.5) + stats.halfnorm.logpdf(sigma)
                + stats.norm.logpdf(u["school_eff_z"]).sum()
                + stats.norm.logpdf(u["class_eff_z"]).sum()
                + stats.norm.logpdf(d["y"], class_v[d["class"]], sigma).sum())

    _check(model, raw, reference)


def test_binomial_with_trials_from_data():
    rng = np.random.default_rng(3)
    raw = {"hospital": np.arange(12), "n": rng.integers(20, 200, 12)}
    raw["y"] = rng.binomial(raw["n"], 0.1)
    model = hj.Model(
        hj.Binomial(logit_p=hj.Level("h", "hospital", loc=hj.Fixed("mu", hj.Normal(-2, 1)),
                                     scale=hj.HalfNormal(1.0)), trials=hj.Data("n")),
        coords={"hospital": 12},
    )

    def reference(u, d):
        tau, jac = _positive(u["h_sd"])
        logit = u["mu"] + tau * u["h_z"]
        return (jac + stats.norm.logpdf(u["mu"], -2, 1) + stats.halfnorm.logpdf(tau)
                + stats.norm.logpdf(u["h_z"]).sum()
                + stats.binom.logpmf(d["y"], d["n"], 1 / (1 + np.exp(-logit))).sum())

    _check(model, raw, reference)


def test_poisson_with_hierarchical_log_rate(grouped):
    rng = np.random.default_rng(4)
    raw = dict(grouped, y=rng.poisson(3.0, 48))
    model = hj.Model(
        hj.Poisson(log_rate=hj.Fixed("b0", hj.Normal(1, 1)) + hj.Fixed("bx", predictors="x")
                   + hj.Level("a", "g")),
        coords={"g": 6},
    )

    def reference(u, d):
        tau, jac = _positive(u["a_sd"])
        log_rate = u["b0"] + u["bx"] * d["x"] + tau * u["a_z"][d["g"]]
        return (jac + stats.norm.logpdf(u["b0"], 1, 1) + stats.norm.logpdf(u["bx"])
                + stats.halfnorm.logpdf(tau) + stats.norm.logpdf(u["a_z"]).sum()
                + stats.poisson.logpmf(d["y"], np.exp(log_rate)).sum())

    _check(model, raw, reference)


def test_hierarchical_sigma_through_exp_link(grouped):
    model = hj.Model(
        hj.Gaussian(mu=hj.Fixed("b0"),
                    sigma=hj.exp(hj.Fixed("s0", hj.Normal(0, 1)) + hj.Level("s", "g"))),
        coords={"g": 6},
    )

    def reference(u, d):
        tau, jac = _positive(u["s_sd"])
        sigma = np.exp(u["s0"] + tau * u["s_z"][d["g"]])
        return (jac + stats.norm.logpdf(u["b0"]) + stats.norm.logpdf(u["s0"])
                + stats.halfnorm.logpdf(tau) + stats.norm.logpdf(u["s_z"]).sum()
                + stats.norm.logpdf(d["y"], u["b0"], sigma).sum())

    _check(model, grouped, reference)


def test_custom_likelihood(grouped):
    def gumbel_lpdf(y, loc, scale):
        z = (y - loc) / scale
        return -jnp.log(scale) - z - jnp.exp(-z)

    model = hj.Model(
        hj.Custom(gumbel_lpdf, params={"loc": hj.Fixed("b0") + hj.Level("a", "g"),
                                       "scale": hj.Fixed("scale", hj.Gamma(2.0, 2.0))},
                  supports={"scale": hj.Positive()}),
        coords={"g": 6},
    )

    def reference(u, d):
        tau, j1 = _positive(u["a_sd"])
        scale, j2 = _positive(u["scale"])
        loc = u["b0"] + tau * u["a_z"][d["g"]]
        return (j1 + j2 + stats.norm.logpdf(u["b0"]) + stats.halfnorm.logpdf(tau)
                + stats.norm.logpdf(u["a_z"]).sum() + stats.gamma.logpdf(scale, 2, scale=0.5)
                + stats.gumbel_r.logpdf(d["y"], loc, scale).sum())

    _check(model, grouped, reference)


def test_interval_prior_uses_scaled_logistic(grouped):
    model = hj.Model(hj.Gaussian(mu=0.0, sigma=hj.Fixed("sigma", hj.Uniform(0.5, 3.0))),
                     coords={})

    def reference(u, d):
        s = 1 / (1 + np.exp(-u["sigma"]))
        sigma = 0.5 + 2.5 * s
        jac = np.log(2.5) + np.log(s) + np.log1p(-s)
        return jac + stats.uniform.logpdf(sigma, 0.5, 2.5) + stats.norm.logpdf(d["y"], 0,
                                                                              sigma).sum()

    _check(model, grouped, reference)
