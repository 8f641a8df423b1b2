"""Input that hjax once accepted with a silently wrong result is refused, naming it and the fix.

Each case is what a user would write; each is refused before anything compiles (a custom
likelihood's shape while the density is traced, which comes first) as a `UserInputError`.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import hjax as hj
from hjax.errors import DataError, ModelError

RT = np.random.default_rng(0).lognormal(-0.5, 0.3, 40)


def _lognormal(y, mu, sigma):
    z = (jnp.log(y) - mu) / sigma
    return -0.5 * z**2 - jnp.log(sigma * y)


def _custom(log_prob):
    params = {"mu": hj.Fixed("mu"), "sigma": hj.Fixed("sigma", hj.HalfNormal(1.0))}
    return hj.Model(hj.Custom(log_prob, params, supports={"sigma": hj.Positive()}))


def twice(y, mu, sigma):  # one column per row, then a copy of it: each row counted twice
    value = _lognormal(y, mu, sigma)
    return jnp.stack([value, value], axis=-1)


def one_short(y, mu, sigma):  # an off-by-one: the first row is dropped
    return _lognormal(y, mu, sigma)[1:]


def summed(y, mu, sigma):  # one total: right for sampling, wrong for every per-row use
    return jnp.sum(_lognormal(y, mu, sigma))


@pytest.mark.parametrize(("log_prob", "shape"), [(twice, r"\(40, 2\)"), (one_short, r"\(39,\)"),
                                                 (summed, r"\(\)")])
def test_a_custom_likelihood_of_another_shape_than_one_value_per_row(log_prob, shape):
    with pytest.raises(ModelError, match=rf"'{log_prob.__name__}' returned log densities of "
                                         rf"shape {shape} for 40 rows of 'y'; it must return "
                                         r"one value per row, shape \(40,\)"):
        hj.sample(_custom(log_prob), {"y": RT}, key=0, chains=2, warmup=20, draws=20)


def test_a_custom_likelihood_of_one_value_per_row_fits():
    fit = hj.sample(_custom(_lognormal), {"y": RT}, key=0, chains=2, warmup=200,
                    draws=200, warn=False)
    # mu's posterior mean is the mean log RT, but for the N(0, 1) prior's pull (about
    # var(log rt) / n = 0.002 of the way to 0): within 4 Monte Carlo standard errors of it.
    row = hj.summary(fit, var_names=["mu"]).loc["mu"]
    assert abs(row["mean"] - np.log(RT).mean()) < 4 * row["mcse_mean"] + 0.002


def _wiener():
    return hj.Wiener(v=hj.Fixed("v"), a=1.5, t0=hj.Fixed("t0", hj.Uniform(0.1, 0.3)))


def test_a_response_after_its_deadline():
    model = hj.Model(hj.Censored(_wiener(), upper="deadline"))
    data = {"rt": [0.6, 1.4, 1.0], "choice": [1, 0, 0], "deadline": [1.0, 1.0, 1.0]}
    with pytest.raises(DataError, match=r"data\['rt'\] is later than its deadline "
                                        r"data\['deadline'\] at rows \[1\].*rt equal to its "
                                        "deadline"):
        model.prepare(data)
    # A trial without a response, rt at its deadline, is what censoring reads as one.
    model.prepare(data | {"rt": [0.6, 1.0, 1.0]})


def test_a_response_after_its_deadline_in_lba():
    lba = hj.LBA(v=[hj.Fixed("v1"), hj.Fixed("v2")], A=0.5, B=0.5, t0=0.2)
    model = hj.Model(hj.Censored(lba, upper="deadline"))
    with pytest.raises(DataError, match=r"data\['rt'\] is later than its deadline"):
        model.prepare({"rt": [0.6, 2.5], "choice": [0, 1], "deadline": [2.0, 2.0]})


def test_censoring_limits_that_cross():
    model = hj.Model(hj.Censored(hj.Gaussian(mu=hj.Fixed("mu"), sigma=1.0), lower="lo",
                                 upper="hi"))
    with pytest.raises(DataError, match=r"data\['lo'\] \(lower limits\) is above data\['hi'\] "
                                        r"\(upper limits\) at rows \[1\].*swap"):
        model.prepare({"y": [0.5, 1.0], "lo": [0.0, 2.0], "hi": [1.0, 1.5]})
    model.prepare({"y": [0.5, 1.0], "lo": [0.0, 1.5], "hi": [1.0, 1.5]})


@pytest.mark.parametrize("missing", [None, np.nan, float("nan")])
def test_encode_of_a_missing_label(missing):
    with pytest.raises(DataError, match=r"encode: data\['participant'\] has missing labels "
                                        r"\(None or NaN\) at rows \[1\]"):
        hj.encode({"participant": ["p1", missing, "p2"] if missing is None
                   else [1.0, missing, 2.0]}, ["participant"])


def test_encode_of_mixed_labels():
    # numpy would make both strings: 1 and "1" one group, the order by text.
    with pytest.raises(DataError, match=r"mixes text and number labels \(row 1: '1', row 0: 1\)"):
        hj.encode({"g": [1, "1", 2]}, ["g"])


def test_encode_of_one_kind_of_labels():
    assert hj.encode({"g": [3, 1, 3]}, ["g"])[1] == {"g": (1, 3)}
    assert hj.encode({"g": ["b", "a"]}, ["g"])[1] == {"g": ("a", "b")}
