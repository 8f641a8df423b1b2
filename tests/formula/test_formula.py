"""Formulas compile to the modules a model is built from by hand: same log density at random
points, design columns equal to the parser's own, and bad input refused in one line."""

import itertools
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


ONE_ROW_G = FRAME.assign(g=["solo"] + ["b"] * (N - 1))
DataError, ModelError = hj.errors.DataError, hj.errors.ModelError


@pytest.mark.parametrize(("spec", "frame", "options", "error", "message"), [
    ("y ~ 1 + w", FRAME, {}, DataError,
     r"formula 'y ~ 1 \+ w' names \['w'\], which the data do not have"),
    ("y ~ 1 + (1 | g)", FRAME.assign(g=FRAME.g.where(np.arange(N) != 5)), {}, DataError,
     r"data\['g'\] \(in formula 'y ~ 1 \+ \(1 \| g\)'\) has 1 missing or infinite values at "
     r"rows \[5\]"),
    ("y ~ 1 + x", FRAME.assign(y=FRAME.y.where(np.arange(N) != 3)), {}, DataError,
     r"data\['y'\] \(the response of formula 'y ~ 1 \+ x'\) has 1 missing or infinite values "
     r"at rows \[3\]"),
    ("y ~ 1 + x", FRAME.assign(x=np.where(np.arange(N) == 2, np.inf, FRAME.x)), {}, DataError,
     r"data\['x'\] \(in formula 'y ~ 1 \+ x'\) has 1 missing or infinite values at rows \[2\]"),
    ("y ~ 1 + (1 + x | g)", FRAME.assign(x=np.where(np.arange(N) == 7, -np.inf, FRAME.x)), {},
     DataError, r"data\['x'\] .* at rows \[7\]"),
    pytest.param("y ~ 1 + np.log(z)", FRAME.assign(z=np.arange(N) - 1.0), {}, DataError,
                 r"the column np.log\(z\) of formula 'y ~ 1 \+ np.log\(z\)' has 2 missing or "
                 r"infinite values at rows \[0, 1\]",
                 marks=pytest.mark.filterwarnings("ignore:(divide|invalid):RuntimeWarning")),
    ("y ~ 1 + foo(x)", FRAME, {}, ModelError,
     r"formula 'y ~ 1 \+ foo\(x\)' calls foo\(\), which formulas do not know; they know "
     r"\[.*'center'.*\] and NumPy's functions as np.log\(x\)"),
    ("y ~ 1 + (1 + bar(x) | g)", FRAME, {}, ModelError, r"calls bar\(\), which formulas"),
    ("foo(y) ~ 1", FRAME, {}, ModelError, r"the response 'foo\(y\)' is not a column name"),
    ("y ~ 1 + x", FRAME.to_dict("records"), {}, DataError,
     r"formula 'y ~ 1 \+ x' takes its data as columns by name \(a dict of arrays or a pandas "
     r"DataFrame\); got a list"),
    ("y ~ 1 + x", {"y": [1.0, 2.0], "x": [1.0]}, {}, DataError,
     r"the data of formula 'y ~ 1 \+ x' are not columns of one length"),
    ("y ~ 1 + c", FRAME.assign(c="p"), {}, DataError,
     r"'c' has a single level, so it cannot be a predictor"),
    ("y ~ 1 + x", FRAME, {"priors": {"b_w": hj.Normal(0, 1)}}, ModelError,
     r"priors for \['b_w'\], which the model does not have; the names it takes are "
     r"\['Intercept', 'b_x', 'sigma'\]"),
    ("y ~ 1 + x + (1 + x | g)", FRAME, {"priors": {"u_g_cor": hj.LKJCholesky(2, 2.0)}},
     ModelError, r"priors for \['u_g_cor'\].* takes are \[.*'u_g_corr', 'u_g_sd', "
                 r"'u_g_sd_Intercept', 'u_g_sd_x'\]"),
    ("y ~ 1", FRAME, {"family": "student"}, ModelError, r"Unknown family 'student'"),
    ("y ~ 1", FRAME, {"nu": "1"}, ModelError, r"family 'gaussian' has no parameters \['nu'\]"),
])
def test_bad_input_is_one_line_before_anything_compiles(spec, frame, options, error, message):
    with pytest.raises(error, match=message):
        hj.formula(spec, frame, **options)


def test_a_varying_slope_on_a_group_with_one_row_is_partial_pooling_and_fits():
    """lme4 and brms fit it: the one row's slope is pooled towards the population."""
    for spec in ("y ~ 1 + x + (1 + x || g)", "y ~ 1 + x + (1 + x | g)", "y ~ 1 + (0 + x | g)"):
        model, columns = hj.formula(spec, ONE_ROW_G)
        assert model.coords["g"] == ("b", "solo")
    fit = hj.sample(model, columns, key=0, chains=2, warmup=100, draws=100, warn=False)
    assert fit.posterior["u_g_x"].sizes["g"] == 2
    assert np.isfinite(fit.posterior["u_g_x"].sel(g="solo")).all()


def test_one_coefficient_with_a_bar_is_a_single_varying_slope():
    model, _ = hj.formula("y ~ 1 + (0 + x | g)", FRAME)
    (level,) = [t for t in model.terms() if isinstance(t, hj.Level)]
    assert (level.name, level.predictors, level.corr) == ("u_g_x", ("x",), None)
    assert "corr" not in str(model) and re.search(r"u_g_x_sd +scalar", str(model))
    hand = hj.Model(hj.Gaussian(mu=hj.Fixed("Intercept", N01)
                                + hj.Level("u_g_x", "g", scale=HN, predictors="x"),
                                sigma=hj.Fixed("sigma", HN)), coords={"g": 4})
    assert set(model.param_specs) == set(hand.param_specs)


def test_printed_prior_names_are_the_names_priors_take():
    spec = "y ~ 1 + x + (1 + x | g)"
    printed = str(hj.formula(spec, FRAME)[0])
    assert "LKJCholesky(dim=2, eta=1) on u_g_corr" in printed
    model, _ = hj.formula(spec, FRAME, priors={"u_g_corr": hj.LKJCholesky(2, 4.0)})
    assert "LKJCholesky(dim=2, eta=4) on u_g_corr" in str(model)
    (level,) = [t for t in model.terms() if isinstance(t, hj.Level)]
    assert level.corr == hj.LKJCholesky(2, 4.0)
    # Each name printed with a prior of its own (the Cholesky factor's is "on u_g_corr") is a
    # name `priors=` takes.
    lines = str(model).split("parameters (")[1].splitlines()[1:]
    rows = [row for row in itertools.takewhile(lambda line: line.startswith("  "), lines)
            if "non-centered" not in row]
    names = [row.split()[-1] if " on " in row else row.split()[0] for row in rows]
    assert names == ["Intercept", "b_x", "u_g_sd", "u_g_corr", "sigma"]
    hj.formula(spec, FRAME, priors={name: hj.LKJCholesky(2, 2.0) if name.endswith("corr")
                                    else HN if name.endswith(("sd", "sigma")) else N01
                                    for name in names})
    # The parameter's own name, in the first column, is taken too; the two together are not.
    chol, _ = hj.formula(spec, FRAME, priors={"u_g_corr_chol": hj.LKJCholesky(2, 3.0)})
    assert "u_g_corr_chol  2x2      corr_cholesky  ~ LKJCholesky(dim=2, eta=3)" in str(chol)
    with pytest.raises(hj.errors.ModelError, match="one correlation prior twice"):
        hj.formula(spec, FRAME, priors={"u_g_corr_chol": hj.LKJCholesky(2, 3.0),
                                        "u_g_corr": hj.LKJCholesky(2, 3.0)})


@pytest.mark.parametrize("bar", ["|", "||"])
def test_each_coefficients_sd_has_a_prior_of_its_own(bar):
    spec = f"y ~ 1 + x + (1 + x {bar} g)"
    shared, _ = hj.formula(spec, FRAME, priors={"u_g_sd": hj.HalfNormal(2.0)})
    assert re.search(r"u_g_sd +2 +positive +~ HalfNormal\(2\)$", str(shared), re.M)
    model, columns = hj.formula(spec, FRAME, priors={"u_g_sd": hj.HalfNormal(2.0),
                                                     "u_g_sd_x": hj.HalfNormal(0.1)})
    assert "~ 1: HalfNormal(2), x: HalfNormal(0.1)" in str(model)
    with jax.enable_x64(True):
        p = {"u_g_sd": jnp.array([0.5, 0.3]), "u_g_corr_chol": jnp.eye(2)}
        expected = (hj.HalfNormal(2.0).log_prob(0.5) + hj.HalfNormal(0.1).log_prob(0.3))
        (level,) = [t for t in model.terms() if isinstance(t, hj.Level)]
        np.testing.assert_allclose(float(level.hyperpriors(p)["u_g_sd"]), float(expected))
    data = model.prepare(columns)
    draws = jax.vmap(lambda key: model.sample_prior(key, data)["u_g_sd"])(
        jax.random.split(jax.random.key(0), 200))
    assert float(draws[:, 1].max()) < 0.5 < float(draws[:, 0].max())
