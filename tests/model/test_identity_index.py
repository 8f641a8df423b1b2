"""A level whose rows are its groups in order skips the gather: same log density and gradient
(float64, rtol 1e-12) on every shipped model it applies to, and only where the data say so."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import hjax as hj
from hjax.model.identity_index import levels, with_identity_indices
from hjax.model.reduction import plan_reduction


def _batch(model, raw):
    return {k: np.asarray(v)[None] for k, v in model.prepare(raw).items()}


def _assert_same_density(model, marked, data):
    with jax.enable_x64(True):
        data = {k: jnp.asarray(v) for k, v in data.items()}
        flat, unravel = ravel_pytree(model.init(jax.random.key(0)))
        for seed in range(3):
            position = unravel(jnp.asarray(np.random.default_rng(seed).normal(0, 1, flat.size)))
            value, grad = jax.value_and_grad(model.logdensity)(position, data)
            marked_value, marked_grad = jax.value_and_grad(marked.logdensity)(position, data)
            np.testing.assert_allclose(float(marked_value), float(value), rtol=1e-12)
            np.testing.assert_allclose(ravel_pytree(marked_grad)[0], ravel_pytree(grad)[0],
                                       rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(hj.catalog.SHIPPED))
def test_marked_levels_give_the_same_density_on_every_shipped_model(name):
    model, design = hj.catalog.SHIPPED[name]() if name != "meta_analysis" else hj.catalog.bcg()
    _, data = jax.jit(model.simulate)(jax.random.key(0), model.prepare(design, observed=False))
    batch = _batch(model, {k: np.asarray(v) for k, v in data.items()})
    plan = plan_reduction(model, batch)
    fitted, fitted_batch = (plan.model, plan.batch) if plan else (model, batch)
    marked = with_identity_indices(fitted, fitted_batch)
    _assert_same_density(fitted, marked, {k: v[0] for k, v in fitted_batch.items()})


def test_one_row_per_group_in_order_is_marked_and_nothing_else():
    model, design = hj.catalog.eight_schools()
    raw = design | {"y": np.arange(8.0)}
    assert [level.rows_are_groups for level in levels(
        with_identity_indices(model, _batch(model, raw)))] == [True]
    assert not levels(model)[0].rows_are_groups  # the model given is left as it was
    # The cells of the reduced 20-group model are its groups.
    model, design = hj.catalog.varying_intercept(groups=4, per_group=5)
    plan = plan_reduction(model, _batch(model, design | {"y": np.arange(20.0)}))
    assert [level.rows_are_groups for level in levels(
        with_identity_indices(plan.model, plan.batch))] == [True]

    # Rows in another order, more rows than groups, or an order that differs by dataset: no.
    model, design = hj.catalog.eight_schools()
    shuffled = design | {"y": np.arange(8.0), "school": np.array([1, 0, 2, 3, 4, 5, 6, 7])}
    assert with_identity_indices(model, _batch(model, shuffled)) is model
    model, design = hj.catalog.varying_intercept(groups=4, per_group=5)
    assert with_identity_indices(model, _batch(model, design | {"y": np.zeros(20)})) is model
    model, design = hj.catalog.eight_schools()
    two = {k: np.stack([v, v]) for k, v in _batch(model, design | {"y": np.zeros(8)}).items()}
    two["school"] = np.stack([np.arange(8), np.array([1, 0, 2, 3, 4, 5, 6, 7])])
    assert with_identity_indices(model, two) is model


def test_a_marked_level_needs_one_row_per_group():
    """Marked by hand against the data, a level is wrong (the check that matters is above):
    a permuted index changes the density, and a row count that is not the group count is an
    error that says so."""
    model, design = hj.catalog.eight_schools()
    marked = with_identity_indices(model, _batch(model, design | {"y": np.zeros(8)}))
    shuffled = model.prepare(design | {"y": np.arange(8.0),
                                       "school": np.array([1, 0, 2, 3, 4, 5, 6, 7])})
    position = model.init(jax.random.key(1))
    assert float(marked.logdensity(position, shuffled)) != pytest.approx(
        float(model.logdensity(position, shuffled)))
    longer = model.prepare({"y": np.zeros(9), "sigma": np.ones(9),
                            "school": np.r_[np.arange(8), 0]})
    with pytest.raises(ValueError, match="row i is group i, but the data have 9 rows for 8"):
        marked.logdensity(position, longer)

