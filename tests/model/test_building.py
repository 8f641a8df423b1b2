"""Models as users write them: NumPy and JAX scalars wherever a number goes (priors,
constraints, a fixed scale, term arithmetic), no coords without groups, defaults shown."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

import hjax as hj

SHORT = dict(chains=2, warmup=50, draws=20, progress=False, warn=False)
PRIORS = [hj.Normal, hj.StudentT, hj.Cauchy, hj.HalfNormal, hj.HalfCauchy, hj.HalfStudentT,
          hj.Exponential, hj.Gamma, hj.LogNormal, hj.Beta, hj.Uniform]


@pytest.mark.parametrize("scalar", [np.float32, np.float64, jnp.asarray, np.asarray])
@pytest.mark.parametrize("prior", PRIORS, ids=lambda p: p.__name__)
def test_prior_fields_hold_python_numbers(prior, scalar):
    plain = prior()
    names = [field.name for field in dataclasses.fields(plain)]
    built = prior(*(scalar(getattr(plain, name)) for name in names))
    assert built == plain and str(built) == str(plain)
    assert all(type(getattr(built, name)) in (int, float) for name in names)


def test_a_model_of_numpy_scalars_fits_as_one_of_floats():
    def model(number):
        return hj.Model(hj.Gaussian(
            mu=hj.Fixed("mu", hj.Normal(number(np.log(0.15)), number(0.3)))
            + number(2.0) * hj.Data("x") + hj.Level("u", "g", scale=number(0.5)),
            sigma=hj.Fixed("sigma", hj.Uniform(number(0.1), number(3.0)))), coords={"g": 3})

    rng = np.random.default_rng(0)
    data = {"y": rng.normal(size=12), "x": rng.normal(size=12), "g": np.repeat(np.arange(3), 4)}
    fits = [hj.sample(model(number), data, key=np.int64(0), **SHORT)
            for number in (float, np.float64, np.float32)]
    assert str(model(np.float32)) == str(model(float))
    for fit in fits[1:]:
        np.testing.assert_array_equal(fit.posterior["mu"], fits[0].posterior["mu"])


def test_a_model_without_groups_needs_no_coords():
    model = hj.Model(hj.Gaussian(mu=hj.Fixed("mu"), sigma=hj.Fixed("sigma", hj.HalfNormal(1))))
    assert model.sizes == {} and model == hj.Model(model.likelihood, coords={})
    with pytest.raises(ValueError, match=r"Groups \['g'\] are used by the model but not in"):
        hj.Model(hj.Gaussian(mu=hj.Level("u", "g"), sigma=1.0))


def test_print_marks_the_default_priors():
    model = hj.Model(hj.Gaussian(mu=hj.Fixed("b0") + hj.Fixed("b1", hj.Normal(0, 2)) * hj.Data("x")
                                 + hj.Level("u", "g") + hj.Level("v", "g", scale=hj.Exponential()),
                                 sigma=hj.Fixed("sigma", hj.HalfNormal(1.0))), coords={"g": 3})
    lines = {line.split()[0]: line for line in str(model).splitlines()[5:]}
    assert lines["b0"].endswith("~ Normal(0, 1) (default)")
    assert lines["u_sd"].endswith("~ HalfNormal(1) (default)")
    assert lines["b1"].endswith("~ Normal(0, 2)") and lines["v_sd"].endswith("~ Exponential(1)")
