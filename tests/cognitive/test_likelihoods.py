"""The cognitive likelihoods as model pieces: plumbing, simulation, bad-data errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

import hjax as hj
from hjax.cognitive import lba_log_density, wiener_log_density


def _ddm(n_participants=4):
    model = hj.Model(
        hj.Wiener(v=hj.Fixed("v", hj.Normal(0.5, 1.0)) + hj.Level("v_p", "participant",
                                                                  scale=hj.HalfNormal(0.5)),
                  a=hj.exp(hj.Fixed("log_a", hj.Normal(0.3, 0.2))
                           + hj.Level("a_p", "participant", scale=hj.HalfNormal(0.2))),
                  t0=hj.Fixed("t0", hj.Uniform(0.05, 0.3)),
                  w=hj.Fixed("w", hj.Beta(5.0, 5.0))),
        coords={"participant": n_participants},
    )
    design = {"participant": np.repeat(np.arange(n_participants), 30)}
    return model, design


def test_hierarchical_ddm_logdensity_is_priors_plus_wiener_density():
    with jax.enable_x64(True):
        model, design = _ddm()
        truths, data = model.simulate(jax.random.key(0), model.prepare(design, observed=False))
        data = model.prepare({k: np.asarray(v) for k, v in data.items()})
        position = model.init(jax.random.key(1), radius=0.5)
        u = {k: np.asarray(v) for k, v in position.items()}
        p = data["participant"]
        sv_, sa = np.exp(u["v_p_sd"]), np.exp(u["a_p_sd"])
        t0 = 0.05 + 0.25 / (1 + np.exp(-u["t0"]))
        w = 1 / (1 + np.exp(-u["w"]))
        v = u["v"] + sv_ * u["v_p_z"][p]
        a = np.exp(u["log_a"] + sa * u["a_p_z"][p])
        want = (
            u["v_p_sd"] + u["a_p_sd"] + np.log(0.25) + np.log(t0 - 0.05) + np.log(0.3 - t0)
            - np.log(0.25) + np.log(w) + np.log1p(-w)
            + stats.norm.logpdf(u["v"], 0.5, 1) + stats.halfnorm.logpdf(sv_, scale=0.5)
            + stats.norm.logpdf(u["log_a"], 0.3, 0.2) + stats.halfnorm.logpdf(sa, scale=0.2)
            + stats.norm.logpdf(u["v_p_z"]).sum() + stats.norm.logpdf(u["a_p_z"]).sum()
            + stats.uniform.logpdf(t0, 0.05, 0.25) + stats.beta.logpdf(w, 5, 5)
            + float(jnp.sum(wiener_log_density(data["rt"], data["choice"], v, a, w, t0)))
        )
        np.testing.assert_allclose(float(model.logdensity(position, data)), want, rtol=1e-10)


def test_simulated_ddm_data_pass_the_checks_and_have_finite_density():
    model, design = _ddm()
    truths, data = model.simulate(jax.random.key(2), model.prepare(design, observed=False))
    data = model.prepare({k: np.asarray(v) for k, v in data.items()})
    assert np.all(np.asarray(data["rt"]) > float(truths["t0"]))
    position = model.unconstrain(model.sample_prior(jax.random.key(2), data))
    assert np.isfinite(float(model.logdensity(position, data)))


def test_rt_below_the_smallest_non_decision_time_is_refused():
    model, design = _ddm(1)
    raw = {"participant": np.zeros(3, int), "rt": np.array([0.5, 0.04, 0.7]),
           "choice": np.array([1, 0, 1])}
    with pytest.raises(ValueError, match=r"data\['rt'\] \(observed\) has 1 RTs at or below the "
                                         r"smallest non-decision time t0 allows \(0.05 s\), e.g. "
                                         r"rows \[1\].*add p_lapse"):
        model.prepare(raw)
    with pytest.raises(ValueError, match=r"data\['choice'\] \(observed\) must be 0 \(lower\) or 1"):
        model.prepare({**raw, "rt": np.array([0.5, 0.6, 0.7]), "choice": np.array([1, 2, 1])})


def test_lapse_mixture_admits_fast_guesses():
    model = hj.Model(hj.Wiener(v=1.0, a=1.5, t0=hj.Fixed("t0", hj.Uniform(0.1, 0.3)),
                               p_lapse=0.05, rt_max=3.0), coords={})
    data = model.prepare({"rt": np.array([0.5, 0.04, 0.7]), "choice": np.array([1, 0, 1])})
    lp = model.logdensity(model.init(jax.random.key(0)), data)
    assert np.isfinite(float(lp))
    assert np.isfinite(jax.grad(model.logdensity)(model.init(jax.random.key(0)), data)["t0"])


def test_lba_model_plumbing():
    model = hj.Model(
        hj.LBA(v=(hj.Fixed("v_match", hj.Normal(2.0, 0.5)) + hj.Level("v_p", "participant"),
                  hj.Fixed("v_mis", hj.Normal(1.0, 0.5))),
               A=hj.Fixed("A", hj.LogNormal(-0.5, 0.3)), B=hj.Fixed("B", hj.LogNormal(-0.5, 0.3)),
               t0=hj.Fixed("t0", hj.Uniform(0.05, 0.25))),
        coords={"participant": 2},
    )
    design = model.prepare({"participant": np.repeat([0, 1], 25)}, observed=False)
    truths, data = model.simulate(jax.random.key(3), design)
    data = model.prepare({k: np.asarray(v) for k, v in data.items()})
    position = model.unconstrain(model.sample_prior(jax.random.key(3), data))
    p = model.constrain(position, data)
    v_match = p["v_match"] + p["v_p"][data["participant"]]
    v = jnp.stack([v_match, jnp.broadcast_to(p["v_mis"], v_match.shape)], axis=-1)
    want = jnp.sum(lba_log_density(data["rt"], data["choice"], v, p["A"], p["A"] + p["B"],
                                   p["t0"], 1.0, positive_drift=True))
    got = model.log_likelihood(position, data).sum()
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_sdt_brightness_model_against_scipy():
    # The seeds' model, identified: d'_pi = alpha_p + gamma_i, gamma_i = zeta0 + zeta1 b_i.
    rng = np.random.default_rng(0)
    person, item = (a.ravel() for a in np.meshgrid(np.arange(5), np.arange(4), indexing="ij"))
    raw = {"person": person, "item": item, "brightness": np.array([-1.0, -0.3, 0.4, 1.2]),
           "n_signal": np.full(20, 50), "n_noise": np.full(20, 50),
           "hits": rng.integers(20, 50, 20), "false_alarms": rng.integers(0, 25, 20)}
    gamma = hj.Level("gamma", "item", loc=hj.Fixed("zeta0", hj.Normal(1, 1))
                     + hj.Fixed("zeta1", hj.Normal(0, 1), predictors="brightness"),
                     scale=hj.HalfNormal(0.5))
    model = hj.Model(hj.SDT(d_prime=hj.Crossed(hj.Level("alpha", "person"), gamma),
                            c=hj.Fixed("c", hj.Normal(0, 1))),
                     coords={"person": 5, "item": 4})
    with jax.enable_x64(True):
        data = model.prepare(raw)
        position = model.init(jax.random.key(0))
        p = model.constrain(position, data)
        d = np.asarray(p["alpha"])[person] + np.asarray(p["gamma"])[item]
        c = float(p["c"])
        def binom_logpmf(k, n, x):  # log-space probit binomial, so tails keep 1e-10 precision
            return (special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
                    + k * stats.norm.logcdf(x) + (n - k) * stats.norm.logcdf(-x))

        want = (binom_logpmf(raw["hits"], 50, d / 2 - c)
                + binom_logpmf(raw["false_alarms"], 50, -d / 2 - c))
        np.testing.assert_allclose(model.log_likelihood(position, data), want, rtol=1e-10)
