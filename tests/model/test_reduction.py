"""Exact reductions: the reduced likelihood's log density and gradient are the rows' (float64,
rtol 1e-10), for every family that has one and every shipped model it applies to."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import hjax as hj
from hjax.model.reduction import plan_reduction

RNG = np.random.default_rng(0)
G, PER = 8, 6


def _group_model(likelihood):
    return hj.Model(likelihood, coords={"g": G})


MU = hj.Fixed("b0") + hj.Level("u", "g")
CASES = {
    "gaussian": (_group_model(hj.Gaussian(mu=MU, sigma=hj.Fixed("s", hj.HalfNormal(1.0)))),
                 lambda n: {"y": RNG.normal(size=n)}),
    "bernoulli": (_group_model(hj.BernoulliLogit(MU)), lambda n: {"y": RNG.integers(0, 2, n)}),
    "binomial": (_group_model(hj.Binomial(MU, trials=hj.Data("n"))),
                 lambda n: {"y": RNG.integers(0, 6, n), "n": np.full(n, 5 + (np.arange(n) % 2
                                                                             == 0))}),
    "poisson": (_group_model(hj.Poisson(MU + hj.Fixed("b1", predictors="x"))),
                lambda n: {"y": RNG.poisson(3.0, n), "x": np.tile([0.0, 1.0], n // 2)}),
}


def _equal_density(model, raw):
    with jax.enable_x64(True):
        prepared = model.prepare(raw)
        batch = {k: np.asarray(v)[None] for k, v in prepared.items()}
        plan = plan_reduction(model, batch)
        assert plan is not None and plan.n_cells < plan.n_rows
        cells = {k: jnp.asarray(v[0]) for k, v in plan.batch.items()}
        flat, unravel = ravel_pytree(model.init(jax.random.key(0)))
        for seed in range(3):
            position = unravel(jnp.asarray(np.random.default_rng(seed).normal(0, 1, flat.size)))
            full, grad = jax.value_and_grad(model.logdensity)(position, prepared)
            reduced, reduced_grad = jax.value_and_grad(plan.model.logdensity)(position, cells)
            np.testing.assert_allclose(float(reduced), float(full), rtol=1e-10)
            np.testing.assert_allclose(ravel_pytree(reduced_grad)[0], ravel_pytree(grad)[0],
                                       rtol=1e-10, atol=1e-10)
        return plan


@pytest.mark.parametrize("case", CASES)
def test_reduced_density_and_gradient_equal_the_rows(case):
    model, outcome = CASES[case]
    raw = {"g": np.repeat(np.arange(G), PER)} | outcome(G * PER)
    plan = _equal_density(model, raw)
    # Binomial trials and Poisson's x split each group into two cells.
    assert plan.n_cells == G * (2 if case in ("binomial", "poisson") else 1)


# The shipped models whose simulated data reduce; the others must not (crossed and per-row
# designs have more cells than half the rows; Wiener and SDT have no statistics).
REDUCING = {"varying_intercept"}


@pytest.mark.parametrize("name", sorted(hj.catalog.SHIPPED))
def test_every_shipped_model_reduces_exactly_or_not_at_all(name):
    model, design = hj.catalog.SHIPPED[name]() if name != "meta_analysis" else (
        hj.catalog.bcg()[0], hj.catalog.bcg()[1])
    prepared = model.prepare(design, observed=False)
    _, data = jax.jit(model.simulate)(jax.random.key(0), prepared)
    data = {k: np.asarray(v) for k, v in data.items()}
    batch = {k: np.asarray(v)[None] for k, v in model.prepare(data).items()}
    plan = plan_reduction(model, batch)
    assert (plan is not None) == (name in REDUCING), plan and plan.describe()
    if plan is not None:
        _equal_density(model, data)


def test_the_expected_models_are_shipped():
    assert REDUCING < set(hj.catalog.SHIPPED)


def test_a_fit_says_what_it_reduced_and_the_switch_turns_it_off():
    model, raw = CASES["bernoulli"][0], {"g": np.repeat(np.arange(G), PER),
                                        "y": RNG.integers(0, 2, G * PER)}
    fit = hj.sample(model, raw, key=0, chains=2, warmup=50, draws=20, warn=False)
    assert fit.posterior.attrs["reduction"] == (
        "BernoulliLogit: 48 rows in 8 cells (n, number of ones per cell)")
    off = hj.sample(model, raw, key=0, chains=2, warmup=50, draws=20, warn=False, reduce=False)
    assert off.posterior.attrs["reduction"] == "none"
    assert fit.observed_data["y"].shape == (G * PER,)  # the rows, as given
