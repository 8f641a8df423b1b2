"""The single-chain NUTS functions: adaptation finds the target's scales and step size."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hjax.inference import nuts

COV = np.array([[4.0, 1.2], [1.2, 0.5]])  # sds 2 and 0.71, correlation 0.85


def logdensity(position):
    x = position["x"]
    return -0.5 * x @ jnp.linalg.solve(jnp.asarray(COV, x.dtype), x)


@partial(jax.jit, static_argnames=("dense", "warmup", "draws"))
def _run(key, dense, warmup=1000, draws=1000):
    position = {"x": jnp.full(2, 1.5)}
    chain = nuts.HMCState(position, *jax.value_and_grad(logdensity)(position))
    state = nuts.init(chain, dense_mass=dense)

    def one(state, xs):
        t, phase = xs
        state, info = nuts.step(jax.random.fold_in(key, t), state, phase, logdensity,
                                dense_mass=dense)
        return state, (state.chain.position["x"], info)

    phases = nuts.schedule(warmup, draws)
    state, (xs, info) = jax.lax.scan(one, state, (jnp.arange(warmup + draws), phases))
    after = partial(jax.tree.map, lambda x: x[warmup:])
    return nuts.parameters(state), after(xs), after(info)


@pytest.mark.parametrize("dense", [False, True])
def test_adapted_mass_matrix_matches_target_covariance(dense):
    params, xs, info = _run(jax.random.key(0), dense)
    imm = np.asarray(params.inverse_mass_matrix)
    # The last slow window has 500 draws: its variance estimates are within ~15% (2 sd).
    if dense:
        assert imm.shape == (2, 2)
        np.testing.assert_allclose(imm, COV, rtol=0.3, atol=0.15)
    else:
        assert imm.shape == (2,)
        np.testing.assert_allclose(imm, np.diag(COV), rtol=0.3)
    # Dual averaging reaches the target acceptance (Stan's typically lands a bit above it).
    assert 0.7 < float(np.mean(info.acceptance_rate)) < 0.95
    assert not np.any(info.diverging)
    np.testing.assert_allclose(np.cov(np.asarray(xs).T), COV, rtol=0.35, atol=0.2)


def test_dense_metric_takes_fewer_steps_on_a_correlated_target():
    _, _, diag_info = _run(jax.random.key(1), False)
    _, _, dense_info = _run(jax.random.key(1), True)
    assert np.mean(dense_info.n_steps) < np.mean(diag_info.n_steps)


def test_schedule_is_stans_then_fixed():
    phases = jax.tree.map(np.asarray, nuts.schedule(1000, 200))
    slow, end = phases.slow, phases.window_end
    assert slow[:75].sum() == 0 and slow[950:].sum() == 0
    assert np.all(slow[75:950])
    np.testing.assert_array_equal(np.flatnonzero(end), [99, 149, 249, 449, 949])
    np.testing.assert_array_equal(phases.adapting, np.arange(1200) < 1000)
    assert nuts.schedule(0, 5).adapting.sum() == 0
    assert np.asarray(nuts.schedule(15, 0).slow).sum() == 0


def test_step_size_is_fixed_after_warmup():
    _, _, info = _run(jax.random.key(2), False, warmup=100, draws=50)
    assert np.all(np.asarray(info.step_size) == np.asarray(info.step_size)[0])
