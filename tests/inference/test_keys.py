"""The inline Threefry keys draw exactly JAX's Threefry numbers, only faster."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hjax.inference.nuts.keys import THREEFRY_INLINE, sampling_key

DRAWS = {
    "split": lambda key: jax.random.key_data(jax.random.split(key, (3, 5))),
    "fold_in": lambda key: jax.random.key_data(jax.random.fold_in(key, 12345)),
    "uniform": lambda key: jax.random.uniform(key, (7, 3)),
    "normal": lambda key: jax.random.normal(key, (11,)),
    "normal_float64": lambda key: jax.random.normal(key, (4,), dtype=jnp.float64),
    "bernoulli": lambda key: jax.random.bernoulli(key, 0.3, (9,)),
    "bits_uint8": lambda key: jax.random.bits(key, (5,), dtype=jnp.uint8),
    "bits_uint64": lambda key: jax.random.bits(key, (5,), dtype=jnp.uint64),
    "randint": lambda key: jax.random.randint(key, (6,), 0, 1000),
}


@pytest.mark.parametrize("draw", DRAWS, ids=str)
@pytest.mark.parametrize("seed", [0, 1, 2**31 + 17])
def test_inline_threefry_draws_jaxs_threefry_numbers_bit_for_bit(draw, seed):
    with jax.enable_x64(True):
        reference = jax.random.key(seed, impl="threefry2x32")
        inline = sampling_key(reference)
        assert str(jax.random.key_impl(inline)) == str(THREEFRY_INLINE)
        np.testing.assert_array_equal(jax.jit(DRAWS[draw])(inline), DRAWS[draw](reference))


def test_inline_threefry_matches_after_chained_derivations():
    reference = jax.random.key(7)
    inline = sampling_key(reference)
    for step in range(3):
        reference = jax.random.fold_in(jax.random.split(reference)[1], step)
        inline = jax.random.fold_in(jax.random.split(inline)[1], step)
    np.testing.assert_array_equal(jax.random.key_data(inline), jax.random.key_data(reference))


def test_sampling_key_accepts_raw_keys_and_leaves_other_impls_alone():
    raw = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(
        jax.random.uniform(sampling_key(raw), (4,)), jax.random.uniform(raw, (4,)))
    rbg = jax.random.key(3, impl="rbg")
    assert sampling_key(rbg) is rbg


def test_the_hash_is_not_vacuous():
    """A changed key changes every draw: the comparison above could not pass by accident."""
    a = jax.random.uniform(sampling_key(jax.random.key(0)), (8,))
    b = jax.random.uniform(sampling_key(jax.random.key(1)), (8,))
    assert np.all(a != b)
