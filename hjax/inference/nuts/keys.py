"""Threefry keys whose hash XLA compiles inline, for the samplers' many small draws.

JAX's Threefry-2x32 lowers on CPU to a rolled loop over its five double rounds, which XLA
runs as about 80 kernel launches per call. A NUTS step draws a couple of numbers, and on
small models that cost more than the step's arithmetic. The same hash written out fuses into
a single kernel with its neighbours. `sampling_key` rewraps a Threefry key's data as a key of
this implementation, which gives exactly JAX's Threefry numbers (checked bit for bit in
`tests/inference/test_keys.py`) with the default `jax_threefry_partitionable=True`.
Hand-written because JAX offers no unrolled Threefry on CPU, and its Philox keys do not lower
inside `shard_map`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import define_prng_impl, threefry_prng_impl
from jaxtyping import Array, PRNGKeyArray

from hjax.errors import ConfigError

__all__ = ["SEEDS", "THREEFRY_INLINE", "as_key", "check_seed", "sampling_key"]

SEEDS = 2**32
"""Int seeds are 0 <= seed < SEEDS: `jax.random.key` keeps a seed's low 32 bits."""

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x, d: int):
    return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


def _hash(k1, k2, x1, x2):
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011), as JAX computes it."""
    keys = (k1, k2, k1 ^ k2 ^ _PARITY)
    x1, x2 = x1 + keys[0], x2 + keys[1]
    for block in range(5):
        for rotation in _ROTATIONS[block % 2]:
            x1 = x1 + x2
            x2 = x1 ^ _rotate_left(x2, rotation)
        x1 = x1 + keys[(block + 1) % 3]
        x2 = x2 + keys[(block + 2) % 3] + np.uint32(block + 1)
    return x1, x2


def _counts(shape):
    """JAX's `iota_2x32_shape`: a uint64 iota over `shape` as (high, low) uint32 words."""
    if math.prod(shape) >= 2**32:
        raise NotImplementedError("hjax's inline Threefry draws fewer than 2**32 numbers.")
    low = jnp.arange(math.prod(shape), dtype=jnp.uint32).reshape(shape)
    return jnp.zeros_like(low), low


def _split(key: Array, shape) -> Array:
    bits1, bits2 = _hash(key[0], key[1], *_counts(shape))
    return jnp.stack([bits1, bits2], axis=bits1.ndim)


def _fold_in(key: Array, data) -> Array:
    data = jnp.asarray(data, jnp.uint32)
    bits1, bits2 = _hash(key[0], key[1], jnp.zeros_like(data), data)
    return jnp.stack([bits1, bits2])


def _random_bits(key: Array, bit_width: int, shape) -> Array:
    bits1, bits2 = _hash(key[0], key[1], *_counts(shape))
    if bit_width == 64:
        wide = jnp.dtype(f"uint{bit_width}")
        return (bits1.astype(wide) << wide.type(32)) | bits2.astype(wide)
    return (bits1 ^ bits2).astype(f"uint{bit_width}")


THREEFRY_INLINE = define_prng_impl(
    key_shape=(2,), seed=threefry_prng_impl.seed, split=_split, random_bits=_random_bits,
    fold_in=_fold_in, name="threefry2x32_inline", tag="fryi")
"""JAX's Threefry-2x32 (partitionable variant), with its hash unrolled."""


def sampling_key(key: PRNGKeyArray) -> PRNGKeyArray:
    """The key the samplers derive every chain's randomness from: a Threefry key's data as a
    `THREEFRY_INLINE` key (the same numbers, drawn faster); other keys as they are.

    Example:
        >>> sampling_key(jax.random.key(0))
        Array((), dtype=key<fryi>) overlaying:
        [0 0]
    """
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(key, impl=THREEFRY_INLINE)  # a raw uint32 key
    if str(jax.random.key_impl(key)) == "threefry2x32":
        return jax.random.wrap_key_data(jax.random.key_data(key), impl=THREEFRY_INLINE)
    return key


def check_seed(seed: int) -> int:
    """`seed` if `jax.random.key` takes it as it is, else a `ConfigError`: without x64,
    `key(2**32 + 3)` is `key(3)` and `key(-1)` is `key(2**32 - 1)`, so another seed's chains
    (and another study's stored batches) would come back.

    Example:
        >>> check_seed(2**32 + 3)
        Traceback (most recent call last):
        ...
        hjax.errors.ConfigError: seed 4294967299 must be below 2**32 (4294967296): ...
    """
    if seed >= SEEDS:
        raise ConfigError(f"seed {seed} must be below 2**32 ({SEEDS}): jax.random.key keeps "
                          f"its low 32 bits, which are seed {seed % SEEDS}. Give a seed in "
                          "[0, 2**32).")
    if seed < 0:
        raise ConfigError(f"seed {seed} must be 0 or more: jax.random.key({seed}) is the "
                          f"key of seed {seed % SEEDS}. Give a seed in [0, 2**32).")
    return int(seed)


def as_key(key: PRNGKeyArray | int) -> PRNGKeyArray:
    """A PRNG key from a key or an int seed in [0, 2**32), or an error saying what a key is.

    Example:
        >>> as_key(0)
        Array((), dtype=key<fry>) overlaying:
        [0 0]
    """
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        return jax.random.key(check_seed(int(key)))
    if isinstance(key, jax.Array) and (jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
                                       or (key.dtype == jnp.uint32 and key.shape == (2,))):
        return key
    raise ConfigError(f"key must be a PRNG key such as jax.random.key(0), or an int seed; got "
                      f"{type(key).__name__} {key!r:.60}.")
