"""Bijector log-Jacobians against jax.jacfwd + slogdet, and round trips."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hjax as hj
from hjax.model import constraints as C

pytestmark = pytest.mark.usefixtures("x64")

SCALAR = [C.real, C.positive, C.unit_interval, C.Interval(0.1, 2.5), C.Interval(-3.0, -1.0)]


@pytest.mark.parametrize("constraint", SCALAR, ids=str)
def test_scalar_log_jacobian_matches_autodiff(constraint):
    bijector = constraint.bijector()
    x = jnp.linspace(-4.0, 4.0, 9)
    y, log_det = bijector.forward_and_log_det(x)
    _, want = jnp.linalg.slogdet(jax.jacfwd(bijector.forward)(x))
    np.testing.assert_allclose(jnp.sum(log_det), want, rtol=1e-10, atol=1e-12)
    assert np.all(constraint.check(np.asarray(y)))
    np.testing.assert_allclose(bijector.inverse(y), x, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_corr_cholesky_log_jacobian_matches_autodiff(k):
    bijector = C.corr_cholesky.bijector()
    rows, cols = np.tril_indices(k, -1)
    x = jax.random.normal(jax.random.key(k), (k * (k - 1) // 2,)) * 1.5
    lower, log_det = bijector.forward_and_log_det(x)
    # The density lives on the strictly-lower entries of L: a square map from the free values.
    jac = jax.jacfwd(lambda v: bijector.forward(v)[rows, cols])(x)
    np.testing.assert_allclose(log_det, jnp.linalg.slogdet(jac)[1], rtol=1e-10)
    corr = lower @ lower.T
    np.testing.assert_allclose(jnp.diagonal(corr), 1.0, rtol=1e-12)
    assert np.all(np.linalg.eigvalsh(np.asarray(corr)) > 0)
    np.testing.assert_allclose(bijector.inverse(lower), x, rtol=1e-8)


def test_model_adds_log_jacobian_once():
    # log p(position) - log p_constrained(values) must equal the summed log-Jacobians.
    model = hj.Model(hj.Gaussian(mu=0.0, sigma=hj.Fixed("s", hj.HalfNormal(1.0))), coords={})
    data = model.prepare({"y": np.array([0.3, -1.2])})
    u = jnp.array(0.4)
    with_jacobian = model.logdensity({"s": u}, data)
    s = jnp.exp(u)
    without = hj.HalfNormal(1.0).log_prob(s) + jnp.sum(jax.scipy.stats.norm.logpdf(
        data["y"], 0.0, s))
    np.testing.assert_allclose(with_jacobian - without, u, rtol=1e-12)
