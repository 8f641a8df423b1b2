"""Row-wise selection over pytrees: the lanes kernel and the chunk starts both replace some
rows (lanes, datasets) of a state by new ones and keep the others."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool

__all__ = ["where_rows"]


def where_rows(mask: Bool[Array, " n"], new, old):
    """Row by row (the leading axis of every leaf): `new` where `mask`, else `old`.

    Example:
        >>> where_rows(jnp.array([True, False]), jnp.ones((2, 3)), jnp.zeros((2, 3)))[:, 0]
        Array([1., 0.], dtype=float32)
    """
    return jax.tree.map(
        lambda n, o: jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - 1)), n, o), new, old)
