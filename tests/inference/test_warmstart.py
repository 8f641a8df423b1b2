"""Variational warm starts: they find the target's location and scales, and sampling after them
is still exact."""

import arviz_stats as azs
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from inference_helpers import conjugate_data, conjugate_model, conjugate_posterior, z_scores

from hjax.inference import sample
from hjax.inference.run.warmstart import advi, pathfinder, warm_start

MEAN = np.array([1.0, -2.0, 0.5])
SD = np.array([0.5, 2.0, 1.0])


def logdensity(position):
    return -0.5 * jnp.sum(((position["x"] - MEAN) / SD) ** 2)


START = {"x": jnp.zeros(3)}


def test_advi_recovers_a_gaussian():
    ws = jax.jit(lambda k: advi(k, logdensity, START, chains=4))(jax.random.key(0))
    # Stochastic optimization ends within a few percent of the optimum (exact for this target).
    np.testing.assert_allclose(ws.inverse_mass_matrix, SD**2, rtol=0.25)
    assert ws.positions["x"].shape == (4, 3)
    assert int(ws.grad_evals) == 300 * 4


def test_pathfinder_recovers_a_gaussian():
    ws = jax.jit(lambda k: pathfinder(k, logdensity, START, chains=4))(jax.random.key(0))
    np.testing.assert_allclose(ws.inverse_mass_matrix, SD**2, rtol=0.1)
    assert ws.positions["x"].shape == (4, 3)
    # Draws from q: spread like the target, centred on its mean.
    assert np.all(np.abs(np.asarray(ws.positions["x"]).mean(0) - MEAN) < 3 * SD)


def test_warm_start_rejects_unknown_method():
    with pytest.raises(ValueError, match="advi"):
        warm_start("laplace", jax.random.key(0), logdensity, START, 4)


def test_sample_after_advi_is_exact():
    model, data = conjugate_model(3), conjugate_data(3)
    result = sample(model, data, key=jax.random.key(3), init="advi", draws=500, warn=False)
    assert result.posterior.attrs["warmup"] == 300
    assert int(result.fit_stats["warm_start_grad_evals"]) == 1200
    posterior = result.posterior.to_dataset()
    mean, cov = conjugate_posterior(data, groups=3)
    se = azs.mcse(posterior, sample_dims=["chain", "draw"])
    z = z_scores(posterior["theta"].mean(["chain", "draw"]), se["theta"], mean[1:])
    assert np.all(z < 4), z
    z = z_scores(posterior["mu"].mean(["chain", "draw"]), se["mu"], mean[0])
    assert np.all(z < 4), z
