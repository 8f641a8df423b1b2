"""A log density that is NaN where the sampler goes is counted per transition and named.

NUTS reads a NaN as a divergence, so such a likelihood once showed only as divergences with
advice to raise target_accept, while the posterior was silently cut off where it is NaN.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np

import hjax as hj

Y = np.random.default_rng(1).normal(0.2, 1.0, 30)


def nan_below_zero(y, mu, sigma):  # sqrt(mu) is NaN for mu < 0, where it should be -inf
    return -0.5 * ((y - jnp.sqrt(mu)) / sigma) ** 2 - jnp.log(sigma)


def minus_inf_below_zero(y, mu, sigma):  # the same density, -inf outside its support
    inside = mu >= 0
    value = -0.5 * ((y - jnp.sqrt(jnp.where(inside, mu, 1.0))) / sigma) ** 2 - jnp.log(sigma)
    return jnp.where(inside, value, -jnp.inf)


def _fit(log_prob, data):
    model = hj.Model(hj.Custom(log_prob, {"mu": hj.Fixed("mu"),
                                          "sigma": hj.Fixed("sigma", hj.HalfNormal(1.0))},
                               supports={"sigma": hj.Positive()}))
    with warnings.catch_warnings(record=True) as issued:
        warnings.simplefilter("always")
        fit = hj.sample(model, data, key=0, chains=2, warmup=200, draws=200)
    return fit, [str(w.message) for w in issued]


def test_a_nan_log_density_is_counted_and_named():
    fit, messages = _fit(nan_below_zero, {"y": Y})
    met = int(hj.diagnose(fit).nan_log_density)
    assert met > 0
    assert int(fit.sample_stats.nan_log_density.sum()) == met
    assert messages[0].startswith(f"The log density was NaN (or +inf) in {met} transitions, "
                                  "first in chain ")
    assert "return -inf where the parameters leave the likelihood's support" in messages[0]
    divergences = next(m for m in messages if "divergences after warmup" in m)
    assert "at a NaN log density: see above" in divergences


def test_minus_inf_outside_the_support_is_not_counted():
    fit, messages = _fit(minus_inf_below_zero, {"y": Y})
    assert int(hj.diagnose(fit).nan_log_density) == 0
    assert not any("NaN" in m for m in messages)


def test_batched_fits_name_the_dataset():
    fit, messages = _fit(nan_below_zero, [{"y": Y}, {"y": Y + 3.0}])
    met = hj.diagnose(fit).nan_log_density.values
    assert met[0] > 0 and met[1] == 0  # far from mu = 0, the second never meets the NaN
    assert "transitions in dataset 0, first in chain " in messages[0]
    assert " of dataset 0 at draw " in messages[0]


def test_a_study_flags_its_fits_that_met_a_nan(tmp_path):
    # mu's prior reaches below 0, where the density is NaN: SBC fits meet it.
    def simulate(key, mu, sigma):
        return {"y": jnp.sqrt(jnp.abs(mu)) + sigma * jax.random.normal(key, mu.shape)}

    model = hj.Model(hj.Custom(nan_below_zero, {"mu": hj.Fixed("mu", hj.Normal(0.3, 0.3)),
                                                "sigma": hj.Fixed("sigma", hj.HalfNormal(1.0))},
                               supports={"sigma": hj.Positive()}, sample=simulate))
    table = hj.sbc(model, {"y": np.zeros(20)}, n_datasets=4, key=0, chains=2, warmup=100,
                   draws=100, escalation={"attempts": 0}, max_rank=99)
    met = table["nan_log_density"].values
    assert (met > 0).any()
    assert (table["divergences"].values[met > 0] > 0).all()  # a NaN is a divergence too
    report = hj.write_report(tmp_path, table).read_text()
    assert f"| transitions at a NaN log density | {int(met.sum())} |" in report
