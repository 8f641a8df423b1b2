"""A conjugate normal study whose exact posterior draws come from numpy: SBC without fitting."""

import numpy as np
import pytest
import xarray as xr

GROUPS = ["A", "B", "C"]


def conjugate_study(n_datasets=300, n_chain=2, n_draw=100, *, noise_sd=1.0, fit_prior_sd=1.0,
                    sd_scale=1.0, wrong=("mu", "theta"), seed=0):
    """Truths ~ N(0, 1); one observation y ~ N(truth, noise_sd) each; exact posterior draws.

    `mu` is a scalar and `theta` has dim `group` (A, B, C); each value is its own conjugate
    normal problem. For the variables in `wrong`, the posterior is computed with prior sd
    `fit_prior_sd` and its sd is multiplied by `sd_scale`; with the defaults it is exact.
    """
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.0, 1.0, (n_datasets, 1 + len(GROUPS)))
    y = rng.normal(truth, noise_sd)
    bad = np.array([("mu" in wrong)] + [("theta" in wrong)] * len(GROUPS))
    prior_var = np.where(bad, fit_prior_sd**2, 1.0)
    precision = 1.0 / prior_var + 1.0 / noise_sd**2
    mean = y / noise_sd**2 / precision
    sd = np.where(bad, sd_scale, 1.0) / np.sqrt(precision)
    draws = rng.normal(mean[:, None, None, :], sd, (n_datasets, n_chain, n_draw, truth.shape[1]))
    posterior = xr.Dataset(
        {"mu": (("dataset", "chain", "draw"), draws[..., 0]),
         "theta": (("dataset", "chain", "draw", "group"), draws[..., 1:])},
        coords={"dataset": np.arange(n_datasets), "group": GROUPS},
    )
    truths = xr.Dataset(
        {"mu": ("dataset", truth[:, 0]), "theta": (("dataset", "group"), truth[:, 1:])},
        coords={"dataset": np.arange(n_datasets), "group": GROUPS},
    )
    return posterior, truths


@pytest.fixture
def study():
    return conjugate_study
