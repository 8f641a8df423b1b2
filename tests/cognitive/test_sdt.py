"""Equal-variance SDT against scipy, gradients against finite differences, sampler moments."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from hjax.cognitive import sdt_log_likelihood, sdt_sample


def test_matches_scipy_binom_and_norm():
    rng = np.random.default_rng(0)
    n_signal = rng.integers(1, 200, 50)
    n_noise = rng.integers(1, 200, 50)
    hits = rng.integers(0, n_signal + 1)
    fas = rng.integers(0, n_noise + 1)
    d_prime = rng.uniform(-1, 4, 50)
    c = rng.uniform(-1.5, 1.5, 50)
    expected = stats.binom.logpmf(hits, n_signal, stats.norm.cdf(d_prime / 2 - c)) + (
        stats.binom.logpmf(fas, n_noise, stats.norm.cdf(-d_prime / 2 - c))
    )
    with jax.enable_x64(True):
        got = sdt_log_likelihood(hits, n_signal, fas, n_noise, d_prime, c)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_extreme_parameters_are_finite_with_finite_gradients():
    """Rates near 0 or 1 (|d'/2 +- c| up to 15) in float32: log_ndtr avoids log(1 - 1)."""
    hits, fas, n = jnp.array([50.0, 0.0, 25.0]), jnp.array([0.0, 50.0, 25.0]), 50.0
    d_prime, c = jnp.array([-20.0, 20.0, 0.0]), jnp.array([5.0, -5.0, 0.0])
    lp = sdt_log_likelihood(hits, n, fas, n, d_prime, c)
    grads = jax.grad(lambda d, c: jnp.sum(sdt_log_likelihood(hits, n, fas, n, d, c)),
                     argnums=(0, 1))(d_prime, c)
    assert lp.dtype == jnp.float32
    assert np.all(np.isfinite(lp))
    assert all(np.all(np.isfinite(g)) for g in grads)
    # Far from the data the log likelihood must be very negative, not clipped.
    assert lp[0] < -1000 and lp[1] < -1000


def test_gradients_match_finite_differences():
    with jax.enable_x64(True):
        hits, fas = jnp.array([30.0, 5.0, 49.0]), jnp.array([10.0, 1.0, 40.0])
        d_prime, c = jnp.array([1.0, 0.3, 2.5]), jnp.array([0.2, 1.0, -0.8])

        def f(d, c):
            return jnp.sum(sdt_log_likelihood(hits, 50.0, fas, 50.0, d, c))

        gd, gc = jax.grad(f, argnums=(0, 1))(d_prime, c)
        h = 1e-6
        for i in range(3):
            e = jnp.zeros(3).at[i].set(h)
            np.testing.assert_allclose(gd[i], (f(d_prime + e, c) - f(d_prime - e, c)) / (2 * h),
                                       rtol=1e-7)
            np.testing.assert_allclose(gc[i], (f(d_prime, c + e) - f(d_prime, c - e)) / (2 * h),
                                       rtol=1e-7)


def test_sampler_moments():
    """Mean within 4 SE and variance within 4 SE (normal approximation) of binomial values."""
    n_draws, n_signal, n_noise, d_prime, c = 20_000, 80, 120, 1.3, 0.25
    hits, fas = sdt_sample(jax.random.key(0), d_prime, c, n_signal, n_noise, shape=(n_draws,))
    for counts, n, p in (
        (np.asarray(hits), n_signal, stats.norm.cdf(d_prime / 2 - c)),
        (np.asarray(fas), n_noise, stats.norm.cdf(-d_prime / 2 - c)),
    ):
        assert np.all((counts >= 0) & (counts <= n) & (counts == np.round(counts)))
        mean, var = n * p, n * p * (1 - p)
        assert abs(counts.mean() - mean) < 4 * np.sqrt(var / n_draws)
        assert abs(counts.var() - var) < 4 * var * np.sqrt(2 / n_draws)
