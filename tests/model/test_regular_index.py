"""A level whose index column is a regular pattern of its groups broadcasts instead of
gathering: same log density and gradient (float64, rtol 1e-12) on every shipped model, with and
without its reduction, and only where every dataset's column is that pattern."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import hjax as hj
from hjax.model.reduction import plan_reduction
from hjax.model.regular_index import levels, row_pattern, with_regular_indices


def _batch(model, raw):
    return {k: np.asarray(v)[None] for k, v in model.prepare(raw).items()}


def _patterns(model, batch):
    return [level.row_pattern for level in levels(with_regular_indices(model, batch))]


def _assert_same_density(model, marked, data):
    with jax.enable_x64(True):
        data = {k: jnp.asarray(v) for k, v in data.items()}
        flat, unravel = ravel_pytree(model.init(jax.random.key(0)))
        # Compiled once each (op by op, the DDM's series took seconds per point).
        density, marked_density = (jax.jit(jax.value_and_grad(m.logdensity))
                                   for m in (model, marked))
        for seed in range(3):
            position = unravel(jnp.asarray(np.random.default_rng(seed).normal(0, 1, flat.size)))
            value, grad = density(position, data)
            marked_value, marked_grad = marked_density(position, data)
            np.testing.assert_allclose(float(marked_value), float(value), rtol=1e-12)
            np.testing.assert_allclose(ravel_pytree(marked_grad)[0], ravel_pytree(grad)[0],
                                       rtol=1e-12, atol=1e-12)
            # Reported values too: a derived value taken per group (the 2PL's `a`) has other
            # rows than the data.
            np.testing.assert_allclose(ravel_pytree(marked.constrain(position, data))[0],
                                       ravel_pytree(model.constrain(position, data))[0],
                                       rtol=1e-12)


@pytest.mark.parametrize("reduce", [True, False])
@pytest.mark.parametrize("name", sorted(hj.catalog.SHIPPED))
def test_marked_levels_give_the_same_density_on_every_shipped_model(name, reduce):
    model, design = hj.catalog.SHIPPED[name]() if name != "meta_analysis" else hj.catalog.bcg()
    _, data = jax.jit(model.simulate)(jax.random.key(0), model.prepare(design, observed=False))
    batch = _batch(model, {k: np.asarray(v) for k, v in data.items()})
    plan = plan_reduction(model, batch) if reduce else None
    fitted, fitted_batch = (plan.model, plan.batch) if plan else (model, batch)
    marked = with_regular_indices(fitted, fitted_batch)
    _assert_same_density(fitted, marked, {k: v[0] for k, v in fitted_batch.items()})


def _gradient_scatters(model, data) -> bool:
    """Whether the log density's gradient, as JAX lowers it, holds a scatter."""
    gradient = jax.jit(jax.grad(model.logdensity))
    return "stablehlo.scatter" in gradient.lower(model.init(jax.random.key(0)), data).as_text()


def test_the_shipped_designs_are_marked_and_their_gradients_do_not_scatter():
    model, design = hj.catalog.eight_schools()
    assert _patterns(model, _batch(model, design | {"y": np.arange(8.0)})) == [(1, 1)]
    assert levels(model)[0].row_pattern is None  # the model given is left as it was
    model, design = hj.catalog.varying_intercept(groups=4, per_group=5)
    batch = _batch(model, design | {"y": np.arange(20.0)})
    assert _patterns(model, batch) == [(1, 5)]
    plan = plan_reduction(model, batch)  # the reduced model's cells are its groups
    assert _patterns(plan.model, plan.batch) == [(1, 1)]
    model, design = hj.catalog.crossed_bernoulli(persons=3, items=2)
    batch = _batch(model, design | {"y": np.zeros(6, int)})
    assert _patterns(model, batch) == [(1, 2), (3, 1)]  # persons' rows together, items in turn
    data = {k: v[0] for k, v in batch.items()}
    assert _gradient_scatters(model, data)  # the gathers' gradients scatter-add
    assert not _gradient_scatters(with_regular_indices(model, batch), data)  # they broadcast


def test_only_regular_columns_in_every_dataset_are_patterns():
    assert row_pattern(np.array([[0, 0, 1, 1, 2, 2] * 2]), 3) == (2, 2)
    assert row_pattern(np.array([[0, 1, 2]]), 3) == (1, 1)
    for column, groups in [([1, 0, 2], 3),           # another order
                           ([0, 0, 1, 1, 2], 3),     # a group short
                           ([0, 0, 1, 1, 2, 2, 0], 3),  # a partial repeat
                           ([0, 0, 0, 0], 2),        # a group never seen
                           ([0, 1, 1, 0], 2)]:       # mirrored
        assert row_pattern(np.array([column]), groups) is None, column
    assert row_pattern(np.array([[0, 1, 0, 1], [0, 0, 1, 1]]), 2) is None  # differs by dataset
    model, design = hj.catalog.eight_schools()
    shuffled = design | {"y": np.arange(8.0), "school": np.array([1, 0, 2, 3, 4, 5, 6, 7])}
    assert with_regular_indices(model, _batch(model, shuffled)) is model


def test_a_marked_level_holds_only_for_its_pattern():
    """Marked by hand against the data, a level is wrong (the check that matters is above): a
    permuted index of the same length changes the density. Rows of another count do not have
    the pattern, and are gathered."""
    model, design = hj.catalog.eight_schools()
    marked = with_regular_indices(model, _batch(model, design | {"y": np.zeros(8)}))
    shuffled = model.prepare(design | {"y": np.arange(8.0),
                                       "school": np.array([1, 0, 2, 3, 4, 5, 6, 7])})
    position = model.init(jax.random.key(1))
    assert float(marked.logdensity(position, shuffled)) != pytest.approx(
        float(model.logdensity(position, shuffled)))
    longer = model.prepare({"y": np.arange(9.0), "sigma": np.ones(9),
                            "school": np.r_[np.arange(8), 0]})
    assert float(marked.logdensity(position, longer)) == float(model.logdensity(position,
                                                                               longer))
