"""Formula families are objects: a user registers one for their own likelihood (a shifted
lognormal RT model through `hj.Custom`) and formulas use it as the built-in ones; the registry
refuses an unknown name and a second family under one name."""

import jax
import jax.numpy as jnp
import jax.scipy.stats as jss
import numpy as np
import pandas as pd
import pytest

import hjax as hj

ModelError = hj.errors.ModelError


def shifted_lognormal(rt, mu, sigma, shift):
    """log p(rt): log(rt - shift) ~ Normal(mu, sigma); -inf at or below the shift."""
    x = jnp.maximum(rt - shift, 1e-9)
    return jnp.where(rt > shift, jss.norm.logpdf(jnp.log(x), mu, sigma) - jnp.log(x), -jnp.inf)


def draw(key, mu, sigma, shift):
    return {"rt": shift + jnp.exp(mu + sigma * jax.random.normal(key, jnp.shape(mu)))}


SHIFTED_LOGNORMAL = hj.register_family(hj.Family(
    "shifted_lognormal", main="mu", links={"sigma": hj.exp, "shift": hj.exp},
    priors={"sigma_Intercept": hj.Normal(-1.0, 0.5), "shift_Intercept": hj.Normal(-1.6, 0.5)},
    build=lambda slots, response, options: hj.Custom(
        shifted_lognormal, slots, sample=draw, observed=response,
        bounds={"shift": hj.Below(response)})))
SPEC = "rt ~ 1 + (1 | participant)"
DESIGN = pd.DataFrame({"participant": np.repeat([f"p{i}" for i in range(8)], 40)})
TRUTH = {"Intercept": -1.0, "u_participant_sd": 0.3, "sigma_Intercept": float(np.log(0.4)),
         "shift_Intercept": float(np.log(0.25))}


def test_a_registered_family_builds_the_model_it_describes():
    model, columns = hj.formula(SPEC, DESIGN, family="shifted_lognormal", sigma="1", shift="1")
    assert str(model.likelihood).splitlines() == [
        "Custom likelihood shifted_lognormal on rt",
        "  mu = Intercept + u_participant[participant]",
        "  sigma = exp(sigma_Intercept)", "  shift = exp(shift_Intercept)"]
    assert set(model.param_specs) == {"Intercept", "u_participant_sd", "u_participant_z",
                                      "sigma_Intercept", "shift_Intercept"}
    printed = str(model)
    assert "shift_Intercept" in printed and "Normal(-1.6, 0.5)" in printed
    assert model.coords["participant"] == tuple(f"p{i}" for i in range(8))
    # The Family object itself works unregistered, and builds the same model.
    same, _ = hj.formula(SPEC, DESIGN, family=SHIFTED_LOGNORMAL, sigma="1", shift="1")
    assert str(same) == printed


def test_a_registered_family_simulates_and_fits():
    model, columns = hj.formula(SPEC, DESIGN, family="shifted_lognormal", sigma="1", shift="1")
    truths, data = model.simulate(jax.random.key(0), model.prepare(columns, observed=False),
                                  given=TRUTH)
    rt = np.asarray(data["rt"])
    assert rt.shape == (len(DESIGN),) and (rt > 0.25).all()
    model, columns = hj.formula(SPEC, DESIGN.assign(rt=rt), family="shifted_lognormal",
                                sigma="1", shift="1")
    fit = hj.sample(model, columns, key=1, chains=2, warmup=300, draws=200, warn=False)
    posterior = fit.posterior
    for name in ("Intercept", "sigma_Intercept", "shift_Intercept"):
        draws = np.asarray(posterior[name]).ravel()
        # Within 4 posterior sds: the data are from the model, at these values.
        assert abs(draws.mean() - TRUTH[name]) < 4 * draws.std(), (name, draws.mean())


def test_the_registry_refuses_an_unknown_name_and_a_second_family_under_one_name():
    with pytest.raises(ModelError, match=r"Unknown family 'lognormal'; the registered ones are "
                                         r"\(.*'gaussian'.*'shifted_lognormal'.*'wiener'\)"):
        hj.formula(SPEC, DESIGN, family="lognormal")
    other = hj.Family("shifted_lognormal", main="mu",
                      build=lambda slots, response, options: None)
    with pytest.raises(ModelError, match=r"a family 'shifted_lognormal' is registered already; "
                                         r"pass replace=True"):
        hj.register_family(other)
    assert hj.register_family(SHIFTED_LOGNORMAL) is SHIFTED_LOGNORMAL  # the same again: no-op
    try:
        assert hj.register_family(other, replace=True) is other
    finally:
        hj.register_family(SHIFTED_LOGNORMAL, replace=True)


@pytest.mark.parametrize(("family", "options", "message"), [
    ("wiener", {"nu": "1"}, r"family 'wiener' has no parameters \['nu'\]; it takes \['a', 'sv', "
                            r"'t0', 'w'\] beside the main formula, and options \['choice'\]"),
    ("binomial", {}, r"family='binomial' needs trials='<column of trials>'"),
    ("gaussian", {"choice": "c"}, r"family 'gaussian' has no parameters \['choice'\]"),
])
def test_a_familys_keywords_are_its_slots_and_options(family, options, message):
    with pytest.raises(ModelError, match=message):
        hj.formula("y ~ 1", {"y": [0.0, 1.0]}, family=family, **options)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"links": {"mu": hj.exp}}, r"the main slot 'mu' takes no link"),
    ({"required": ("sigma",)}, r"required or scalar slots \['sigma'\] are not among"),
    ({"links": {"n": hj.exp}, "options": {"n": None}}, r"\['n'\] are both slots and options"),
])
def test_a_family_that_contradicts_itself_is_refused(kwargs, message):
    with pytest.raises(ModelError, match=message):
        hj.Family("bad", main="mu", build=lambda slots, response, options: None, **kwargs)


def test_each_built_in_family_is_defined_beside_its_likelihoods():
    """The layering test checks that hjax.model never imports hjax.cognitive."""
    from hjax.cognitive.families import WIENER
    from hjax.model.families import GAUSSIAN

    assert GAUSSIAN.build.__module__ == "hjax.model.families"
    assert WIENER.build.__module__ == "hjax.cognitive.families"
    assert hj.formula("rt ~ 1", {"rt": [0.5, 0.7], "choice": [0, 1]},
                      family="wiener")[0].likelihood.choice == "choice"
