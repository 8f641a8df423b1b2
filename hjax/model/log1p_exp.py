"""log(1 + e^x) (softplus), whose derivative reuses the exponential of its value.

`jax.nn.softplus` is `logaddexp(x, 0)`, and the derivative rule of `logaddexp` takes two more
exponentials. A Bernoulli-logit density costs a softplus per row, so on a cheap model the
exponentials are most of a gradient, and one exponential shared instead of three saves most
of them (measured: scripts/bench/RESULTS.md). The values
are the same to rounding (the test compares both, and the gradient, in float64).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

__all__ = ["log1p_exp"]


@jax.custom_jvp
def log1p_exp(x: ArrayLike) -> Array:
    """log(1 + exp(x)) without overflow; its derivative is the logistic sigmoid of x.

    Example:
        >>> log1p_exp(jnp.array([-1000.0, 0.0, 1000.0])).tolist()  # no overflow
        [0.0, 0.6931471824645996, 1000.0]
        >>> jax.grad(log1p_exp)(0.0)
        Array(0.5, dtype=float32, weak_type=True)
    """
    return jnp.maximum(x, 0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


@log1p_exp.defjvp
def _log1p_exp_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    shrink = jnp.exp(-jnp.abs(x))  # in (0, 1]: sigmoid(x) = (1 or shrink) / (1 + shrink)
    value = jnp.maximum(x, 0) + jnp.log1p(shrink)
    return value, jnp.where(x >= 0, 1, shrink) / (1 + shrink) * dx
