"""Equal-variance Gaussian signal detection on hit and false-alarm counts.

Convention (Macmillan & Creelman; criterion measured from the midpoint of the two
distributions): noise ~ Normal(-d'/2, 1), signal ~ Normal(d'/2, 1), "yes" when the
evidence exceeds ``c``. Hence ``P(hit) = Phi(d'/2 - c)`` and ``P(false alarm) =
Phi(-d'/2 - c)``; ``c = 0`` is unbiased and ``c > 0`` conservative.
"""

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln, log_ndtr
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

__all__ = ["sdt_log_likelihood", "sdt_sample"]


def _binomial_log_pmf(k, n, log_p, log_q):
    """Binomial log pmf from log p and log(1 - p), each from log_ndtr (no 1 - p rounding)."""
    log_choose = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
    return log_choose + k * log_p + (n - k) * log_q


def sdt_log_likelihood(
    hits: Float[ArrayLike, "*batch"],
    n_signal: Float[ArrayLike, "*batch"],
    false_alarms: Float[ArrayLike, "*batch"],
    n_noise: Float[ArrayLike, "*batch"],
    d_prime: Float[ArrayLike, "*batch"],
    c: Float[ArrayLike, "*batch"],
) -> Float[Array, "*batch"]:
    """Log likelihood of hit and false-alarm counts under equal-variance SDT.

    ``Binomial(hits | n_signal, Phi(d'/2 - c)) * Binomial(false_alarms | n_noise,
    Phi(-d'/2 - c))``, binomial coefficients included, so values equal
    ``scipy.stats.binom.logpmf`` sums. Probabilities enter through ``log_ndtr`` so that
    extreme ``d'`` or ``c`` give finite values and gradients.

    Args:
        hits: number of "yes" responses on signal trials.
        n_signal: number of signal trials.
        false_alarms: number of "yes" responses on noise trials.
        n_noise: number of noise trials.
        d_prime: sensitivity.
        c: criterion (0 unbiased, positive conservative).

    Returns:
        The log likelihood per observation, broadcast shape of the arguments.

    Example:
        >>> lp = sdt_log_likelihood(40, 50, 10, 50, d_prime=1.5, c=0.1)
        >>> round(float(lp), 2)
        -4.4
    """
    d_prime = jnp.asarray(d_prime)
    dtype = jnp.result_type(d_prime, c, float)
    d_prime, c = jnp.asarray(d_prime, dtype), jnp.asarray(c, dtype)
    hits, n_signal, false_alarms, n_noise = (
        jnp.asarray(x, dtype) for x in (hits, n_signal, false_alarms, n_noise)
    )
    x_hit = d_prime / 2 - c
    x_fa = -d_prime / 2 - c
    return _binomial_log_pmf(hits, n_signal, log_ndtr(x_hit), log_ndtr(-x_hit)) + (
        _binomial_log_pmf(false_alarms, n_noise, log_ndtr(x_fa), log_ndtr(-x_fa))
    )


def sdt_sample(
    key: PRNGKeyArray,
    d_prime: Float[ArrayLike, "*batch"],
    c: Float[ArrayLike, "*batch"],
    n_signal: Float[ArrayLike, "*batch"],
    n_noise: Float[ArrayLike, "*batch"],
    shape: tuple[int, ...] = (),
) -> tuple[Float[Array, "*shape"], Float[Array, "*shape"]]:
    """Draw (hits, false_alarms) counts under equal-variance SDT.

    Args:
        key: PRNG key.
        d_prime: sensitivity.
        c: criterion.
        n_signal: number of signal trials.
        n_noise: number of noise trials.
        shape: sample shape, broadcast with the parameters' shapes.

    Returns:
        ``(hits, false_alarms)`` as floats holding integer counts.

    Example:
        >>> import jax
        >>> hits, fas = sdt_sample(jax.random.key(0), 1.5, 0.0, 100, 100, shape=(5,))
        >>> hits.shape
        (5,)
    """
    dtype = jnp.result_type(jnp.asarray(d_prime), c, float)
    d_prime, c, n_signal, n_noise = (
        jnp.asarray(x, dtype) for x in (d_prime, c, n_signal, n_noise)
    )
    shape = jnp.broadcast_shapes(shape, d_prime.shape, c.shape, n_signal.shape, n_noise.shape)
    k_hit, k_fa = jax.random.split(key)
    p_hit = jax.scipy.stats.norm.cdf(d_prime / 2 - c)
    p_fa = jax.scipy.stats.norm.cdf(-d_prime / 2 - c)
    hits = jax.random.binomial(k_hit, jnp.broadcast_to(n_signal, shape), p_hit, shape, dtype)
    fas = jax.random.binomial(k_fa, jnp.broadcast_to(n_noise, shape), p_fa, shape, dtype)
    return hits, fas
