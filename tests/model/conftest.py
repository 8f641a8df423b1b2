import jax
import numpy as np
import pytest


@pytest.fixture
def x64():
    """Float64 for this test only (comparisons with scipy at 1e-8)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def grouped():
    """A small grouped design: 6 groups, 48 rows, every group used, one real predictor."""
    rng = np.random.default_rng(0)
    g = np.concatenate([np.arange(6), rng.integers(0, 6, 42)])
    return {
        "g": g,
        "x": rng.normal(size=48),
        "y": rng.normal(size=48),
        "z": rng.normal(size=6),
    }
