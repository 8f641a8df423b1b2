"""Numbers in model fields are Python numbers, whatever scalar type the user wrote.

A model is a pytree: under `jit` its array leaves become tracers. A NumPy scalar such as
`np.log(0.15)` is an array leaf, so a prior holding one would be traced, and printing it or
checking its support would fail inside `hj.sample`. Fields that hold numbers therefore keep
the Python number a NumPy or JAX scalar (or 0-d array) holds.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

__all__ = ["plain_fields", "plain_number"]


def plain_number(value):
    """The Python number a NumPy or JAX scalar (or 0-d array) holds; anything else as it is.

    Example:
        >>> plain_number(np.float32(0.5)), plain_number(jnp.asarray(3)), plain_number("a")
        (0.5, 3, 'a')
    """
    if (isinstance(value, np.generic | np.ndarray | jax.Array) and np.ndim(value) == 0
            and not isinstance(value, jax.core.Tracer)):
        return value.item()
    return value


def plain_fields(module) -> None:
    """Replace, in a module being built (`__post_init__`), each scalar field by its number."""
    for field in dataclasses.fields(module):
        value = getattr(module, field.name)
        number = plain_number(value)
        if number is not value:
            setattr(module, field.name, number)
