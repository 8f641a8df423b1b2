"""The vectorized R-hat and ESS equal arviz-stats' one-series-at-a-time estimators."""

import warnings

import numpy as np
import pytest
from arviz_stats.base import array_stats

from hjax.inference.workflow import convergence

SERIES = 12


def _draws(kind: str, chains: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    shape = (SERIES, chains, draws)
    if kind == "iid":
        return rng.normal(size=shape)
    if kind == "autocorrelated":  # AR(1) with coefficients from -0.9 (antithetic) to 0.99
        x, noise = np.zeros(shape), rng.normal(size=shape)
        coefficient = np.linspace(-0.9, 0.99, SERIES)[:, None]
        for t in range(1, draws):
            x[..., t] = coefficient * x[..., t - 1] + noise[..., t]
        return x
    if kind == "repeated":  # NUTS can return its starting point: runs of tied draws
        return np.repeat(rng.normal(size=(SERIES, chains, draws // 3 + 1)), 3, axis=-1)[..., :draws]
    if kind == "discrete":
        return rng.integers(0, 3, size=shape).astype(float)
    if kind == "some repeated":  # ties in every other series only
        x = rng.normal(size=shape)
        x[::2] = _draws("repeated", chains, draws, rng)[::2]
        return x
    if kind == "constant":
        return np.ones(shape)
    if kind == "stuck":  # one chain offset from the others
        x = rng.normal(size=shape)
        x[:, 0] += rng.normal(size=(SERIES, 1)) * 3
        return x
    x = rng.normal(size=shape)  # "nan": every other series has a NaN
    x[::2, 0, 0] = np.nan
    return x


KINDS = ["iid", "autocorrelated", "repeated", "some repeated", "discrete", "constant", "stuck",
         "nan"]


def _arviz_stats(x: np.ndarray, prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # arviz-stats' 0/0 on constant chains
        return (array_stats.rhat(x), array_stats.ess(x, method="bulk"),
                array_stats.ess(x, method="tail", prob=prob))


@pytest.mark.parametrize("chains", [1, 2, 4])
@pytest.mark.parametrize("draws", [3, 4, 5, 8, 11, 60, 201])
def test_equals_arviz_stats(chains, draws):
    rng = np.random.default_rng(draws * 10 + chains)
    for kind in KINDS:
        x = _draws(kind, chains, draws, rng)
        for name, got, expected in zip(["rhat", "ess_bulk", "ess_tail"],
                                       convergence.rank_diagnostics(x, prob=0.89),
                                       _arviz_stats(x, prob=0.89), strict=True):
            message = f"{name} of {kind} draws"
            np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=message)
            np.testing.assert_allclose(got, expected, rtol=1e-10, err_msg=message)


def test_every_axis_before_chain_and_draw_is_a_series():
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 100))
    batched = convergence.rank_diagnostics(x, prob=0.9)
    one = convergence.rank_diagnostics(x[1, 2], prob=0.9)
    for values, value in zip(batched, one, strict=True):
        assert values.shape == (2, 3) and value.shape == ()
        np.testing.assert_allclose(values[1, 2], value)


def test_many_series_are_split_over_threads_and_put_back_in_order():
    x = np.random.default_rng(0).normal(size=(600, 4, 100)).cumsum(-1)
    x[::7, 1, 3] = np.nan
    whole = np.stack(convergence.rank_diagnostics(x, prob=0.9))
    parts = np.concatenate([np.stack(convergence.rank_diagnostics(x[start:start + 50], prob=0.9))
                            for start in range(0, 600, 50)], axis=1)
    np.testing.assert_array_equal(whole, parts)
    assert np.isnan(whole[:, ::7]).all() and not np.isnan(whole[:, 1::7]).any()


def test_the_planted_problems_are_seen():
    rng = np.random.default_rng(1)
    mixed = rng.normal(size=(4, 1000))
    stuck = mixed + np.array([[4.0], [0], [0], [0]])
    sticky = np.repeat(rng.normal(size=(4, 100)), 10, axis=-1)  # each draw repeated 10 times
    rhat, bulk, _ = convergence.rank_diagnostics(mixed, prob=0.9)
    stuck_rhat, _, _ = convergence.rank_diagnostics(stuck, prob=0.9)
    _, sticky_bulk, sticky_tail = convergence.rank_diagnostics(sticky, prob=0.9)
    assert rhat < 1.01 < stuck_rhat
    assert bulk > 2000 > 600 > sticky_bulk and sticky_tail < 600
