"""Posteriors from hj.sample against a reference posterior and an exact one, within MC error."""

import arviz_stats as azs
import jax
import numpy as np
import pytest
import xarray as xr
from inference_helpers import (
    N_DATASETS,
    conjugate_posterior,
    eight_schools_model,
    eight_schools_reference,
    z_scores,
)

import hjax as hj
from hjax.inference import diagnose, sample

DIMS = ["chain", "draw"]
Z = 4.0  # tolerance in combined Monte Carlo standard errors


def _moments(posterior: xr.Dataset):
    """mean, sd and their Monte Carlo standard errors, per variable."""
    return (posterior.mean(DIMS), posterior.std(DIMS, ddof=1),
            azs.mcse(posterior, sample_dims=DIMS, method="mean"),
            azs.mcse(posterior, sample_dims=DIMS, method="sd"))


def _assert_matches_reference(result):
    ours = _moments(result.posterior.to_dataset())
    for name, theirs in eight_schools_reference().items():
        for stat, (m, s) in {"mean": (0, 2), "sd": (1, 3)}.items():
            z = z_scores(ours[m][name].values, ours[s][name].values, theirs[stat],
                         theirs[f"mcse_{stat}"])
            assert np.all(z < Z), f"{stat} of {name} is {z.max():.1f} MCSE off the reference"
    assert int(diagnose(result).divergences) == 0


def test_eight_schools_noncentered_matches_posteriordb():
    result = sample(eight_schools_model(), hj.datasets.eight_schools(), key=jax.random.key(2024),
                    chains=4, warmup=1000, draws=1000, target_accept=0.9, warn=False)
    _assert_matches_reference(result)


@pytest.mark.slow
@pytest.mark.parametrize("init, dense_mass", [("pathfinder", False), ("advi", True),
                                              (None, True)])
def test_eight_schools_variants_match_posteriordb(init, dense_mass):
    result = sample(eight_schools_model(), hj.datasets.eight_schools(), key=jax.random.key(11),
                    chains=4, draws=1000, target_accept=0.9, init=init, dense_mass=dense_mass,
                    warn=False)
    _assert_matches_reference(result)


@pytest.mark.xdist_group("conjugate_fits")  # one worker builds the session fixture once
@pytest.mark.parametrize("fits", ["batched", "blackjax", "vectorized"])
def test_conjugate_normal_matches_exact_posterior(conjugate_fits, fits):
    """Every batched fit (16 by "nuts", 6 by "blackjax", 6 by "blackjax" vmapped 3 wide):
    posterior means and sds of (mu, theta) are exact."""
    posterior = conjugate_fits[fits].posterior.to_dataset()
    mean, sd, se_mean, se_sd = _moments(posterior)
    for d in range(posterior.sizes["dataset"]):
        exact_mean, exact_cov = conjugate_posterior(conjugate_fits["datasets"][d], groups=3)
        exact_sd = np.sqrt(np.diag(exact_cov))
        for name, idx in (("mu", 0), ("theta", slice(1, None))):
            z_mean = z_scores(mean[name][d], se_mean[name][d], exact_mean[idx])
            z_sd = z_scores(sd[name][d], se_sd[name][d], exact_sd[idx])
            assert np.all(z_mean < Z), f"dataset {d}: mean of {name} off by {z_mean.max():.1f}"
            assert np.all(z_sd < Z), f"dataset {d}: sd of {name} off by {z_sd.max():.1f}"


@pytest.mark.xdist_group("conjugate_fits")  # one worker builds the session fixture once
def test_batched_fits_match_fits_one_at_a_time(conjugate_fits):
    batched = _moments(conjugate_fits["batched"].posterior.to_dataset())
    assert len(conjugate_fits["alone"]) == N_DATASETS
    for d, alone in enumerate(conjugate_fits["alone"]):
        single = _moments(alone.posterior.to_dataset())
        for name in ("mu", "theta"):
            for m, s in ((0, 2), (1, 3)):
                z = z_scores(batched[m][name][d], batched[s][name][d], single[m][name].values,
                             single[s][name].values)
                assert np.all(z < Z), f"dataset {d}, {name}: {z.max():.1f} MCSE apart"


@pytest.mark.xdist_group("conjugate_fits")  # one worker builds the session fixture once
def test_conjugate_fits_have_no_divergences(conjugate_fits):
    diag = diagnose(conjugate_fits["batched"])
    assert int(diag.divergences.sum()) == 0
    # Chains mixed. (1.01 is the bar for one quantity; the max over 64 quantities with about
    # 600 effective draws each lands near it by chance.)
    assert float(diag.max_rhat.max()) < 1.03


def test_exact_posterior_helper_against_sampling_free_check():
    # The helper itself: with one group and no data the posterior is the prior.
    data = {"y": np.zeros(0), "sigma": np.zeros(0), "g": np.zeros(0, int)}
    mean, cov = conjugate_posterior(data, groups=1)
    np.testing.assert_allclose(mean, 0.0)
    np.testing.assert_allclose(cov, [[25.0, 25.0], [25.0, 29.0]])
