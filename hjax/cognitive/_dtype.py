"""The float dtype the cognitive densities compute in."""

import jax.numpy as jnp


def float_dtype(*xs):
    """The arguments' common dtype, or the default float when they are all integers."""
    dtype = jnp.result_type(*xs)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return dtype
