"""The lanes sampler makes BlackJAX's NUTS transitions, whatever the lanes and jobs."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from inference_helpers import eight_schools_model
from jax.flatten_util import ravel_pytree

from hjax.inference.nuts import adaptation, blackjax_nuts, lanes
from hjax.inference.nuts.keys import THREEFRY_INLINE

DATA = {"y": np.array([28.0, 8, -3, 7, -1, 1, 18, 12]),
        "sigma": np.array([15.0, 10, 16, 11, 9, 11, 10, 18]), "school": np.arange(8)}
N_JOBS = 48


def _jobs(model, data, seed, dense=False):
    """Random starts, metrics and step sizes (from 0.001: long trees, to 3: divergences)."""
    _, unravel = ravel_pytree(model.init(jax.random.key(0)))
    rng = np.random.default_rng(seed)
    dim = ravel_pytree(model.init(jax.random.key(0)))[0].size
    position = jnp.asarray(rng.uniform(-2, 2, (N_JOBS, dim)))
    value, grad = jax.vmap(jax.value_and_grad(
        lambda x: model.logdensity(unravel(x), data)))(position)
    scales = rng.uniform(0.2, 5.0, (N_JOBS, dim))
    inverse_mass = (jax.vmap(jnp.diag)(jnp.asarray(scales)) if dense
                    else jnp.asarray(scales))
    keys = jax.random.split(jax.random.key(seed, impl=THREEFRY_INLINE), N_JOBS)
    step = jnp.asarray(np.exp(rng.uniform(np.log(0.001), np.log(3.0), N_JOBS)))
    jobs = lanes.Jobs(jnp.zeros(N_JOBS, jnp.int32), keys, position, value, grad, inverse_mass,
                      step)
    return jobs, unravel


def _blackjax_transitions(model, data, jobs, unravel, dense):
    """One transition per job with BlackJAX's kernel (through `blackjax_nuts.step`): the first
    warmup iteration, which steps with the job's step size."""
    def one(key, position, value, grad, inverse_mass, step_size):
        state = blackjax_nuts.init(blackjax_nuts.HMCState(unravel(position), value, unravel(grad)),
                                   dense_mass=dense, inverse_mass_matrix=inverse_mass,
                                   step_size=step_size)
        phase = adaptation.phase_at(adaptation.schedule(1), 0)
        new, info = blackjax_nuts.step(jax.random.fold_in(key, 0), state, phase,
                                       partial(model.logdensity, data=data), dense_mass=dense)
        return ravel_pytree(new.chain.position)[0], info

    return jax.jit(jax.vmap(one))(*jobs[1:])


@pytest.mark.parametrize("dense", [False, True])
def test_each_transition_is_blackjax_nuts(dense):
    """From the same state, metric, step size and key, one transition of every job equals
    BlackJAX's: same tree, same proposal (float64, 48 jobs, 5 lanes so jobs queue)."""
    with jax.enable_x64(True):
        model = eight_schools_model()
        data = {k: jnp.asarray(v) for k, v in model.prepare(DATA).items()}
        jobs, unravel = _jobs(model, data, seed=3, dense=dense)
        out = jax.jit(partial(
            lanes.run, lambda x, data: model.logdensity(unravel(x), data), lambda x, data: x,
            lanes=5, draws=1, saved_warmup=1, dense_mass=dense))(
                jax.tree.map(lambda x: x[None], data), jobs, adaptation.schedule(1))
        position, info = _blackjax_transitions(model, data, jobs, unravel, dense)

    stats = jax.tree.map(lambda x: np.asarray(x[:, 0]), out.stats)
    assert stats.n_steps.min() >= 1 and stats.n_steps.max() > 30  # short and long trees
    assert stats.diverging.any()
    np.testing.assert_array_equal(stats.n_steps, info.n_steps)
    np.testing.assert_array_equal(stats.tree_depth, info.tree_depth)
    np.testing.assert_array_equal(stats.diverging, info.diverging)
    np.testing.assert_allclose(out.draws[:, 0], position, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats.acceptance_rate, info.acceptance_rate, rtol=1e-9)
    np.testing.assert_allclose(stats.energy, info.energy, rtol=1e-9)


def test_a_jobs_draws_depend_on_its_key_and_start_alone():
    """A job's whole chain (warmup with adaptation, then draws) is the same bits whichever
    other jobs queue beside it; on another number of lanes it is the same chain up to
    rounding (float64 here, so that rounding stays far below the tolerance)."""
    with jax.enable_x64(True):
        model = eight_schools_model()
        data = {k: jnp.asarray(v)[None] for k, v in model.prepare(DATA).items()}
        jobs, unravel = _jobs(model, jax.tree.map(lambda x: x[0], data), seed=5)
        jobs = jobs._replace(step_size=jnp.ones(N_JOBS))

        def run(n_jobs, n_lanes):
            return jax.jit(partial(
                lanes.run, lambda x, data: model.logdensity(unravel(x), data),
                lambda x, data: x, lanes=n_lanes, draws=20))(
                    data, jax.tree.map(lambda x: x[:n_jobs], jobs), adaptation.schedule(40))

        alone, queued, wide = run(7, 3), run(12, 3), run(7, 5)
    np.testing.assert_array_equal(alone.draws, queued.draws[:7])
    np.testing.assert_array_equal(alone.stats.n_steps, queued.stats.n_steps[:7])
    np.testing.assert_array_equal(alone.stats.n_steps, wide.stats.n_steps)
    np.testing.assert_allclose(alone.draws, wide.draws, rtol=1e-8, atol=1e-10)
    assert alone.iterations > wide.iterations  # 3 lanes take turns on 7 jobs
    # Every gradient a lane computes on a job is counted by that job's n_steps.
    used = alone.stats.n_steps.sum() + alone.warmup_grad_evals.sum()
    assert 0 < int(alone.warmup_grad_evals.min()) and int(used) <= int(alone.iterations) * 3


def test_padding_jobs_are_skipped():
    """Jobs of padded datasets (dataset -1) run no iteration and leave zeros."""
    model = eight_schools_model()
    data = {k: jnp.asarray(v)[None] for k, v in model.prepare(DATA).items()}
    jobs, unravel = _jobs(model, jax.tree.map(lambda x: x[0], data), seed=6)
    jobs = jax.tree.map(lambda x: x[:6], jobs)._replace(
        dataset=jnp.array([0, 0, 0, 0, -1, -1]), step_size=jnp.ones(6))
    out = jax.jit(partial(lanes.run, lambda x, data: model.logdensity(unravel(x), data),
                          lambda x, data: x, lanes=3, draws=10))(data, jobs,
                                                                 adaptation.schedule(20))
    assert (out.stats.n_steps[:4] > 0).all() and (out.warmup_grad_evals[:4] > 0).all()
    assert (out.stats.n_steps[4:] == 0).all() and (out.warmup_grad_evals[4:] == 0).all()
    used = out.stats.n_steps.sum() + out.warmup_grad_evals.sum()
    assert int(used) <= int(out.iterations) * 3
