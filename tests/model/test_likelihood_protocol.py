"""The likelihood protocol: a likelihood's own class makes it censorable and reducible, wrappers
forward the rest, and `hj.Censored` refuses at build time what it cannot censor."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from scipy import stats

import hjax as hj
from hjax.errors import DataError, ModelError
from hjax.model import constraints as C
from hjax.model.reduction import plan_reduction


class ShiftedExponential(hj.AbstractLikelihood):
    """rt = shift + Exponential(rate): what a contributor writes, in one class, to get censoring
    (with deadlines) and the exact reduction."""

    shift: hj.Term
    rate: hj.Term
    rt: str = eqx.field(static=True, default="rt")

    parameters = {"shift": C.positive, "rate": C.positive}
    observed = ("rt",)
    censored_column = "rt"
    deadline_slot = "shift"
    statistics = ("n", "sum")
    statistics_description = "n, sum of RTs"

    def log_prob(self, rt, shift, rate):
        return jnp.log(rate) - rate * (rt - shift)

    def log_survival(self, value, shift, rate):
        return -rate * jnp.maximum(value - shift, 0.0)

    def sample(self, key, shift, rate):
        shape = jnp.shape(shift + rate)
        return {"rt": shift + jax.random.exponential(key, shape) / rate}

    def cell_statistics(self, y, cells, rows):
        return {"n": cells.size(), "sum": cells.sum(y)}

    def reduced_log_prob(self, stats, shift, rate):
        return stats["n"] * jnp.log(rate) - rate * (stats["sum"] - stats["n"] * shift)


def _exponential(**kwargs):
    return ShiftedExponential(shift=hj.Const(0.2), rate=hj.Fixed("rate", hj.HalfNormal(2.0)),
                              **kwargs)


@pytest.mark.parametrize("limit, method", [("upper", "log_survival"), ("lower", "log_cdf")])
def test_censoring_a_likelihood_without_its_cdf_is_refused_when_built(limit, method):
    with pytest.raises(ModelError, match=rf"hj.Censored\(BernoulliLogit, {limit}='c'\): "
                                         rf"BernoulliLogit has no {method}, which {limit} limits "
                                         rf"need.*implement {method}\(value"):
        hj.Censored(hj.BernoulliLogit(hj.Fixed("b")), **{limit: "c"})
    # A survival alone serves upper limits only.
    hj.Censored(_exponential(), upper="deadline")
    with pytest.raises(ModelError, match="ShiftedExponential has no log_cdf"):
        hj.Censored(_exponential(), lower="lo")


def test_a_gaussian_censored_on_a_column_not_named_y():
    lik = hj.Censored(hj.Gaussian(mu=hj.Fixed("mu"), sigma=1.0, y="height"), lower="lod")
    model = hj.Model(lik, coords={})
    data = model.prepare({"height": [0.0, 2.0], "lod": [0.0, -np.inf]})
    lp = np.asarray(model.log_likelihood({"mu": jnp.array(1.0)}, data))
    np.testing.assert_allclose(lp, [stats.norm(1.0).logcdf(0.0), stats.norm(1.0).logpdf(2.0)],
                               rtol=1e-5)


def test_a_new_likelihood_gets_deadlines_from_its_own_class():
    model = hj.Model(hj.Censored(_exponential(rt="time"), upper="deadline"), coords={})
    with pytest.raises(DataError, match=r"data\['time'\] is later than its deadline "
                                        r"data\['deadline'\] at rows \[1\]"):
        model.prepare({"time": [0.6, 1.4], "deadline": [1.0, 1.0]})
    with pytest.raises(DataError, match=r"at or below the smallest non-decision time shift "
                                        r"allows \(0.2 s\) at rows \[0\]"):
        model.prepare({"time": [0.1, 0.5], "deadline": [0.1, 1.0]})
    data = model.prepare({"time": [0.6, 1.0], "deadline": [1.0, 1.0]})
    lp = np.asarray(model.log_likelihood({"rate": jnp.array(np.log(2.0))}, data))
    np.testing.assert_allclose(lp, [np.log(2.0) - 2.0 * 0.4, -2.0 * 0.8], rtol=1e-5)


def test_a_new_likelihood_reduces_from_its_own_class():
    rate = hj.exp(hj.Fixed("b0") + hj.Level("u", "g"))
    model = hj.Model(ShiftedExponential(shift=hj.Const(0.2), rate=rate), coords={"g": 4})
    raw = {"g": np.repeat(np.arange(4), 5), "rt": 0.2 + np.random.default_rng(0).exponential(
        1.0, 20)}
    with jax.enable_x64(True):
        prepared = model.prepare(raw)
        plan = plan_reduction(model, {k: np.asarray(v)[None] for k, v in prepared.items()})
        assert plan.describe() == "ShiftedExponential: 20 rows in 4 cells (n, sum of RTs per cell)"
        position = model.init(jax.random.key(0))
        cells = {k: jnp.asarray(v[0]) for k, v in plan.batch.items()}
        full, grad = jax.value_and_grad(model.logdensity)(position, prepared)
        reduced, reduced_grad = jax.value_and_grad(plan.model.logdensity)(position, cells)
        np.testing.assert_allclose(float(reduced), float(full), rtol=1e-10)
        np.testing.assert_allclose(ravel_pytree(reduced_grad)[0], ravel_pytree(grad)[0],
                                   rtol=1e-10)
    assert "(n, sum of RTs)" in str(model)


def test_wrappers_forward_the_likelihood_but_neither_protocol():
    inner = hj.Gaussian(mu=hj.Fixed("mu"), sigma=hj.Fixed("s", hj.HalfNormal(1.0)), y="height")
    lik = hj.Censored(inner, upper="hi")
    assert lik.terms() == inner.terms() and lik.observed_keys() == {"y": "height"}
    assert lik.data_keys() == {"limit_upper": "hi"}
    assert lik.check_observed("height", np.array([np.inf])) is None
    assert lik.statistics == () and lik.censorable() == frozenset()
    # A censored model does not reduce: its rows are not the Gaussian's.
    model = hj.Model(lik, coords={})
    batch = {k: np.asarray(v)[None] for k, v in model.prepare(
        {"height": np.zeros(10), "hi": np.ones(10)}).items()}
    assert plan_reduction(model, batch) is None
    with pytest.raises(TypeError, match="abstract"):
        hj.AbstractWrappedLikelihood(inner)
    assert hj.Likelihood is hj.AbstractLikelihood
