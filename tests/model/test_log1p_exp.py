"""log1p_exp is softplus to rounding, value and derivatives, with no overflow at any x."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import expit

from hjax.model.log1p_exp import log1p_exp

X = np.concatenate([-np.logspace(3, -8, 60), [0.0], np.logspace(-8, 3, 60)])


def test_values_are_numpys_logaddexp():
    with jax.enable_x64(True):
        np.testing.assert_allclose(log1p_exp(jnp.asarray(X)), np.logaddexp(0.0, X), rtol=1e-15)
        assert log1p_exp(jnp.inf) == np.inf and log1p_exp(-jnp.inf) == 0.0
        assert np.isnan(log1p_exp(jnp.nan))


def test_derivatives_are_the_sigmoids_and_finite_differences():
    sigmoid = expit(X)
    with jax.enable_x64(True):
        grad = jax.vmap(jax.grad(log1p_exp))(jnp.asarray(X))
        np.testing.assert_allclose(grad, sigmoid, rtol=1e-15, atol=1e-300)
        h = 1e-6 * np.maximum(1, np.abs(X))
        central = (np.logaddexp(0.0, X + h) - np.logaddexp(0.0, X - h)) / (2 * h)
        np.testing.assert_allclose(grad, central, rtol=1e-7, atol=1e-12)
        second = jax.vmap(jax.grad(jax.grad(log1p_exp)))(jnp.asarray(X))
        np.testing.assert_allclose(second, sigmoid * expit(-X), rtol=1e-12, atol=1e-300)
        assert jax.grad(log1p_exp)(jnp.inf) == 1.0 and jax.grad(log1p_exp)(-jnp.inf) == 0.0


def test_float32_matches_jax_softplus():
    x = jnp.asarray(X, jnp.float32)
    np.testing.assert_allclose(log1p_exp(x), jax.nn.softplus(x), rtol=2e-7)
    np.testing.assert_allclose(jax.vmap(jax.grad(log1p_exp))(x),
                               jax.vmap(jax.grad(jax.nn.softplus))(x), rtol=1e-6, atol=1e-30)
