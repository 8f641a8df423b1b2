"""A level's scale is a prior (the parameter `<name>_sd`) or a fixed number, each a class that
owns what the sd adds to the model; the forms `hj.Level` takes turn into them unchanged."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hjax as hj
from hjax.model.scales import DEFAULT_SCALE, FixedScale, ScalePrior, as_scale
from hjax.studies.recover import _scale_names

PER_COEFFICIENT = (hj.HalfNormal(1.0), hj.HalfNormal(0.3))


@pytest.mark.parametrize(("given", "expected"), [
    (hj.HalfNormal(2.0), ScalePrior(hj.HalfNormal(2.0))),
    (PER_COEFFICIENT, ScalePrior(PER_COEFFICIENT)),
    (2.0, FixedScale(2.0)),
    (np.float32(0.5), FixedScale(0.5)),
    (FixedScale(3.0), FixedScale(3.0)),
])
def test_each_form_of_scale_becomes_its_class(given, expected):
    assert as_scale(given) == expected
    predictors = ("1", "x") if isinstance(given, tuple) else "1"
    assert hj.Level("u", "g", scale=given, predictors=predictors).scale == expected
    assert hj.Level("u", "g").scale == ScalePrior(DEFAULT_SCALE)


def test_a_prior_scale_is_a_parameter_and_a_fixed_one_is_not():
    model = hj.Model(hj.Gaussian(mu=hj.Level("u", "g") + hj.Level("v", "g", scale=2.0),
                                 sigma=hj.Fixed("sigma", hj.HalfNormal(1.0))), coords={"g": 3})
    assert set(model.param_specs) == {"u_sd", "u_z", "v_z", "sigma"}
    assert "Normal(0, u_sd)" in str(model) and "Normal(0, 2)" in str(model)
    data = model.prepare({"g": [0, 1, 2], "y": [0.0, 1.0, 2.0]})
    draws = model.sample_prior(jax.random.key(0), data)
    assert "u_sd" in draws and "v_sd" not in draws
    (u, v) = [t for t in model.terms() if isinstance(t, hj.Level)]
    assert set(u.hyperpriors(draws)) == {"u_sd"} and v.hyperpriors(draws) == {}
    np.testing.assert_allclose(v.group_values(draws, data), 2.0 * draws["v_z"])
    # A recovery study's shrinkage reads the sd by name, or the number.
    assert _scale_names(model, u) == {"group_sd": "u_sd", "noise_sd": "sigma"}
    assert _scale_names(model, v) == {"group_sd": 2.0, "noise_sd": "sigma"}


def test_one_prior_per_coefficient_is_each_coefficients_sd():
    level = hj.Level("u", "g", predictors=("1", "x"), scale=PER_COEFFICIENT)
    p = {"u_sd": jnp.array([0.5, 0.2])}
    expected = PER_COEFFICIENT[0].log_prob(0.5) + PER_COEFFICIENT[1].log_prob(0.2)
    np.testing.assert_allclose(level.hyperpriors(p)["u_sd"], expected, rtol=1e-6)
    assert level.scale.specs("u", level.predictors)["u_sd"].prior == (
        "1: HalfNormal(1) (default), x: HalfNormal(0.3)")
