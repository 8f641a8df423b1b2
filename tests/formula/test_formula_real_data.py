"""The README's radon formula with uncorrelated varying slopes on the real Minnesota data
(county 42 has one house): it builds, it is the hand-built model, and it fits as that does."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import hjax as hj

SPEC = "log_radon ~ 1 + floor + (1 + floor || county)"
# Each coefficient's sd with a prior of its own, so that a shared one would differ.
PRIORS = {"Intercept": hj.Normal(0, 5), "b_floor": hj.Normal(0, 5), "sigma": hj.HalfNormal(1.0),
          "u_county_sd_Intercept": hj.HalfNormal(1.0), "u_county_sd_floor": hj.HalfNormal(0.5)}


def _by_hand():
    """Varying intercepts and floor slopes around their own means (tests/inference/test_radon.py),
    with the formula's priors."""
    return hj.Model(hj.Gaussian(
        mu=hj.Level("alpha", "county", loc=hj.Fixed("mu_alpha", hj.Normal(0, 5)),
                    scale=hj.HalfNormal(1.0))
        + hj.Level("beta", "county", loc=hj.Fixed("mu_beta", hj.Normal(0, 5)),
                   predictors=("floor",), scale=hj.HalfNormal(0.5)),
        sigma=hj.Fixed("sigma", hj.HalfNormal(1.0))), coords={"county": 85})


def _hand_position(p):
    """The hand-built model's parameters at the formula model's point: alpha = Intercept +
    u_county[., 1], beta = b_floor + u_county[., floor]."""
    return {"mu_alpha": p["Intercept"], "mu_beta": p["b_floor"], "sigma": p["sigma"],
            "alpha_sd": p["u_county_sd"][0], "beta_sd": p["u_county_sd"][1],
            "alpha_z": p["u_county_z"][:, 0], "beta_z": p["u_county_z"][:, 1]}


def test_a_slope_on_a_county_with_one_house_is_built_and_printed():
    radon = hj.datasets.radon()
    assert np.bincount(radon["county"]).min() == 1  # county 42 (index 41): one house
    model, columns = hj.formula(SPEC, radon, priors=PRIORS)
    printed = str(model)
    assert "u_county_sd  2" in printed and "floor: HalfNormal(0.5)" in printed
    assert "corr" not in printed.replace("independent", "")


def test_radon_formula_log_density_equals_the_hand_built_models():
    radon = hj.datasets.radon()
    model, columns = hj.formula(SPEC, radon, priors=PRIORS)
    hand = _by_hand()
    with jax.enable_x64(True):
        data = model.prepare(columns)
        hand_data = hand.prepare({"y": radon["log_radon"], "floor": radon["floor"],
                                  "county": radon["county"]})
        flat, unravel = ravel_pytree(model.init(jax.random.key(0)))
        for seed in range(3):
            # Unconstrained: the sds' log transform is elementwise, so positions map as values.
            position = unravel(jnp.asarray(np.random.default_rng(seed).normal(0, 1, flat.size)))
            np.testing.assert_allclose(
                float(model.logdensity(position, data)),
                float(hand.logdensity(_hand_position(position), hand_data)), rtol=1e-10)


@pytest.mark.slow
def test_radon_formula_fit_agrees_with_the_hand_built_fit_within_mcse():
    radon = hj.datasets.radon()
    model, columns = hj.formula(SPEC, radon, priors=PRIORS)
    hand_data = {"y": radon["log_radon"], "floor": radon["floor"], "county": radon["county"]}
    settings = {"key": 0, "chains": 4, "warmup": 300, "draws": 300, "warn": False}
    ours = hj.summary(hj.sample(model, columns, **settings))
    theirs = hj.summary(hj.sample(_by_hand(), hand_data, **settings))
    for mine, hand in [("Intercept", "mu_alpha"), ("b_floor", "mu_beta"), ("sigma", "sigma"),
                       ("u_county_sd[1]", "alpha_sd")]:
        difference = abs(ours.loc[mine, "mean"] - theirs.loc[hand, "mean"])
        mcse = np.hypot(ours.loc[mine, "mcse_mean"], theirs.loc[hand, "mcse_mean"])
        assert difference < 4 * mcse, (mine, difference, mcse)
