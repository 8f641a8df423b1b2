"""Formulas compile to the modules a model is built from by hand: same log density at random
points, design columns equal to the parser's own, and bad input refused in one line."""

import re

import formulae
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from jax.flatten_util import ravel_pytree

import hjax as hj

RNG = np.random.default_rng(0)
N = 36
FRAME = pd.DataFrame({
    "y": RNG.normal(size=N), "x": RNG.normal(size=N), "z": RNG.normal(size=N),
    "c": np.tile(["p", "q", "r"], N // 3), "d": np.repeat(["lo", "hi"], N // 2),
    "g": np.repeat(["a", "b", "c", "d"], N // 4), "item": np.tile(["i1", "i2", "i3"], N // 3),
    "class": np.tile(["k1", "k2"], N // 2),
})
N01, HN = hj.Normal(0.0, 1.0), hj.HalfNormal(1.0)
SIGMA = {"sigma": hj.HalfNormal(1.0)}


def by_hand(case):
    """The hand-built model of each formula (names as the formula names them)."""
    g = {"g": 4}
    cases = {
        "intercept": (hj.Fixed("Intercept", N01), {}),
        "slope": (hj.Fixed("Intercept", N01) + hj.Fixed("b_x", N01, predictors="x"), {}),
        "categorical interaction": (
            hj.Fixed("Intercept", N01) + hj.Fixed("b_x", N01, predictors="x")
            + hj.Fixed("b_dlo", N01, predictors="d[lo]")
            + hj.Fixed("b_x:dlo", N01, predictors="x:d[lo]"), {}),
        "varying intercept": (hj.Fixed("Intercept", N01) + hj.Level("u_g", "g", scale=HN), g),
        "correlated": (
            hj.Fixed("Intercept", N01) + hj.Fixed("b_x", N01, predictors="x")
            + hj.Level("u_g", "g", scale=HN, predictors=("1", "x"),
                       corr=hj.LKJCholesky(2, 1.0)), g),
        "uncorrelated": (
            hj.Fixed("Intercept", N01) + hj.Fixed("b_x", N01, predictors="x")
            + hj.Level("u_g", "g", scale=HN, predictors=("1", "x")), g),
        "crossed": (hj.Fixed("Intercept", N01) + hj.Level("u_g", "g", scale=HN)
                    + hj.Level("u_item", "item", scale=HN), g | {"item": 3}),
        "nested": (hj.Fixed("Intercept", N01) + hj.Level("u_g", "g", scale=HN)
                   + hj.Level("u_g:class", "g:class", scale=HN), g | {"g:class": 8}),
        "offset": (hj.Fixed("Intercept", N01) + hj.Fixed("b_x", N01, predictors="x")
                   + hj.Data("offset(z)"), {}),
    }
    mu, coords = cases[case]
    return hj.Model(hj.Gaussian(mu=mu, sigma=hj.Fixed("sigma", hj.HalfNormal(1.0))),
                    coords=coords)


FORMULAS = {
    "intercept": "y ~ 1",
    "slope": "y ~ 1 + x",
    "categorical interaction": "y ~ 1 + x * d",
    "varying intercept": "y ~ 1 + (1 | g)",
    "correlated": "y ~ 1 + x + (1 + x | g)",
    "uncorrelated": "y ~ 1 + x + (1 + x || g)",
    "crossed": "y ~ 1 + (1 | g) + (1 | item)",
    "nested": "y ~ 1 + (1 | g) + (1 | g:class)",
    "offset": "y ~ 1 + x + offset(z)",
}


def _priors(model):
    """The hand model's priors, by the names a formula gives its parameters."""
    priors = {}
    for name in model.param_specs:
        base = name.removesuffix("_z").removesuffix("_corr_chol")
        if name.endswith("_corr_chol"):
            priors[f"{base}_corr"] = hj.LKJCholesky(2, 1.0)
        elif not name.endswith("_z"):
            priors[name] = hj.HalfNormal(1.0) if name.endswith("sd") or name == "sigma" else N01
    return priors


@pytest.mark.parametrize("case", FORMULAS)
def test_formula_model_equals_the_hand_built_model(case):
    hand = by_hand(case)
    model, columns = hj.formula(FORMULAS[case], FRAME, priors=_priors(hand))
    assert set(model.param_specs) == set(hand.param_specs)
    with jax.enable_x64(True):
        ours, theirs = model.prepare(columns), hand.prepare(columns)
        flat, unravel = ravel_pytree(hand.init(jax.random.key(0)))
        for seed in range(3):
            position = unravel(jnp.asarray(np.random.default_rng(seed).normal(0, 1, flat.size)))
            np.testing.assert_allclose(float(model.logdensity(position, ours)),
                                       float(hand.logdensity(position, theirs)), rtol=1e-10)


@pytest.mark.parametrize("case", FORMULAS)
def test_design_columns_equal_the_parsers(case):
    """The common columns are formulae's design matrix, and each group-specific block's
    columns, spread over the groups, are formulae's Z (columns of groups that occur)."""
    spec = FORMULAS[case]
    model, columns = hj.formula(spec, FRAME)
    # formulae reads no `||`: the columns of (1 + x || g) are those of (1 + x | g).
    parsed = formulae.design_matrices(spec.replace("||", "|"), FRAME)
    fixed = [t for t in model.terms() if isinstance(t, hj.Fixed) and t.name != "sigma"]
    ours = np.stack([np.ones(N) if t.predictors is None else columns[t.predictors]
                     for t in fixed], axis=1)
    common = np.asarray(parsed.common.design_matrix)
    offset = [k for k in columns if k.startswith("offset(")]
    np.testing.assert_array_equal(ours, common[:, :common.shape[1] - len(offset)])
    for level in (t for t in model.terms() if isinstance(t, hj.Level)):
        labels = model.coords[level.group]
        for x in level.predictors:
            values = np.ones(N) if x == "1" else columns[x]
            z = np.zeros((N, len(labels)))
            z[np.arange(N), columns[level.group]] = values
            name = f"{x}|{level.group}" if x != "1" else f"1|{level.group}"
            theirs = parsed.group[name]
            theirs = np.asarray(theirs.toarray() if hasattr(theirs, "toarray") else theirs)
            keep = [parsed.group.terms[name].groups.index(str(label)) for label in labels]
            np.testing.assert_array_equal(z, theirs[:, keep], err_msg=f"{case}: {name}")


def test_default_priors_are_scaled_to_the_data_and_printed():
    model, _ = hj.formula("y ~ 1 + x + (1 | g)", FRAME)
    sd_y, sd_x = FRAME.y.std(ddof=0), FRAME.x.std(ddof=0)
    printed = str(model)
    assert f"~ Normal({FRAME.y.mean():g}, {2.5 * sd_y:g})" in printed
    assert re.search(rf"b_x +scalar +real +~ Normal\(0, {2.5 * sd_y / sd_x:g}\)", printed)
    assert f"HalfStudentT(4, {sd_y:g})" in printed
    design, _ = hj.formula("y ~ 1 + x", FRAME.drop(columns="y"))
    assert re.search(r"Intercept +scalar +real +~ Normal\(0, 2.5\)", str(design))


def test_families_and_parameter_formulas():
    counts = FRAME.assign(k=RNG.integers(0, 5, N), n=5, hit=RNG.integers(0, 2, N))
    bernoulli, _ = hj.formula("hit ~ 1 + x + (1 | g)", counts, family="bernoulli")
    assert str(bernoulli.likelihood.logit_p) == "Intercept + b_x * x + u_g[g]"
    binomial, columns = hj.formula("k ~ 1 + x", counts, family="binomial", trials="n")
    assert "n" in columns and str(binomial.likelihood.trials) == "data[n]"
    poisson, _ = hj.formula("k ~ 1 + (1 | item)", counts, family="poisson")
    assert str(poisson.likelihood.log_rate) == "Intercept + u_item[item]"
    gaussian, _ = hj.formula("y ~ 1 + x", FRAME, sigma="1 + (1 | g)")
    assert str(gaussian.likelihood.sigma) == "exp(sigma_Intercept + sigma_u_g[g])"
    rts = FRAME.assign(rt=0.4 + RNG.gamma(2, 0.1, N), choice=RNG.integers(0, 2, N))
    wiener, columns = hj.formula("rt ~ 1 + x + (1 | g)", rts, family="wiener",
                                 a="1 + (1 | g)", t0="1")
    assert str(wiener.likelihood.t0) == "exp(t0_Intercept)"
    assert "choice" in columns
    data = wiener.prepare(columns)
    start = wiener.init(jax.random.key(0), radius=0.1) | {"t0_Intercept": jnp.array(-1.6)}
    assert np.isfinite(float(wiener.logdensity(start, data)))  # t0 = 0.2 s below every RT


@pytest.mark.parametrize(("spec", "frame", "options", "message"), [
    ("y ~ 1 + w", FRAME, {}, r"formula 'y ~ 1 \+ w' names \['w'\], which the data do not have"),
    ("y ~ 1 + (1 | g)", FRAME.assign(g=FRAME.g.where(np.arange(N) != 5)), {},
     r"data\['g'\] \(in formula 'y ~ 1 \+ \(1 \| g\)'\) has 1 missing values at rows \[5\]"),
    ("y ~ 1 + c", FRAME.assign(c="p"), {}, r"'c' has a single level, so it cannot be a "
                                           r"predictor"),
    ("y ~ 1 + (1 + x | g)", FRAME.assign(g=["solo"] + ["b"] * (N - 1)), {},
     r"the slope on x in \(1 \+ x \| g\) needs two or more observations per g, but 'solo' "
     r"has 1"),
    ("y ~ 1 + x", FRAME, {"priors": {"b_w": hj.Normal(0, 1)}},
     r"priors for \['b_w'\], which the model does not have; its parameters are"),
    ("y ~ 1", FRAME, {"family": "student"}, r"Unknown family 'student'"),
    ("y ~ 1", FRAME, {"nu": "1"}, r"family 'gaussian' has no parameters \['nu'\]"),
])
def test_bad_input_is_one_line_before_anything_compiles(spec, frame, options, message):
    with pytest.raises(ValueError, match=message):
        hj.formula(spec, frame, **options)
