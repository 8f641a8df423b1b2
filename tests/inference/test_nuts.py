"""One chain of BlackJAX's NUTS with Stan's adaptation: it finds the target's scales and step
size; the warmup schedule is Stan's, as a runtime value."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from blackjax.adaptation.window_adaptation import build_schedule

from hjax.inference.nuts import adaptation, blackjax_nuts

COV = np.array([[4.0, 1.2], [1.2, 0.5]])  # sds 2 and 0.71, correlation 0.85


def logdensity(position):
    x = position["x"]
    return -0.5 * x @ jnp.linalg.solve(jnp.asarray(COV, x.dtype), x)


@partial(jax.jit, static_argnames=("dense", "warmup", "draws"))
def _run(key, dense, warmup=1000, draws=1000):
    position = {"x": jnp.full(2, 1.5)}
    chain = blackjax_nuts.HMCState(position, *jax.value_and_grad(logdensity)(position))
    state = blackjax_nuts.init(chain, dense_mass=dense)
    schedule = adaptation.schedule(warmup)

    def one(state, t):
        phase = adaptation.phase_at(schedule, t)
        state, info = blackjax_nuts.step(jax.random.fold_in(key, t), state, phase, logdensity,
                                         dense_mass=dense)
        return state, (state.chain.position["x"], info)

    state, (xs, info) = jax.lax.scan(one, state, jnp.arange(warmup + draws))
    after = partial(jax.tree.map, lambda x: x[warmup:])
    return adaptation.parameters(state.adaptation), after(xs), after(info)


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


def _phases(warmup, iterations):
    phase = jax.vmap(adaptation.phase_at, in_axes=(None, 0))
    return jax.tree.map(np.asarray, phase(adaptation.schedule(warmup), jnp.arange(iterations)))


def test_schedule_is_stans_then_fixed():
    phases = _phases(1000, 1200)
    slow, end = phases.slow, phases.window_end
    assert slow[:75].sum() == 0 and slow[950:].sum() == 0
    assert np.all(slow[75:950])
    np.testing.assert_array_equal(np.flatnonzero(end), [99, 149, 249, 449, 949])
    np.testing.assert_array_equal(phases.adapting, np.arange(1200) < 1000)
    assert _phases(0, 5).adapting.sum() == 0
    assert _phases(15, 15).slow.sum() == 0


@pytest.mark.parametrize("warmup", [*range(0, 130, 7), 149, 150, 151, 300, 999, 1000, 4567])
def test_runtime_schedule_is_blackjax_build_schedule(warmup):
    """The schedule as runtime values (slow range, window ends) is BlackJAX's, entry by entry."""
    stages = np.asarray(build_schedule(warmup), dtype=int).reshape(-1, 2)
    phases = _phases(warmup, warmup + 3)
    np.testing.assert_array_equal(phases.slow[:warmup], stages[:, 0] == 1)
    np.testing.assert_array_equal(phases.window_end[:warmup], stages[:, 1] == 1)
    assert not phases.slow[warmup:].any() and not phases.window_end[warmup:].any()


def test_step_size_is_fixed_after_warmup():
    _, _, info = _run(jax.random.key(2), False, warmup=100, draws=50)
    assert np.all(np.asarray(info.step_size) == np.asarray(info.step_size)[0])
