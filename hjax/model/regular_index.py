"""Levels whose index column is a regular pattern of their groups take their values without a
gather.

A design that crosses its factors fully and in order gives each level's index column the form
`tile(repeat(arange(G), inner), outer)`: one row per group (eight schools, the cells of a
reduced likelihood: inner = outer = 1), each group's rows together (20 groups x 10 rows:
inner = 10) or the groups in turn (the items of persons x items: outer = persons). Then
`values[data[group]]` is `values` broadcast, and the gradient sums instead of scattering. On
a cheap gradient the gather and its transpose, a scatter-add, are two of the costliest kernels
of a leapfrog step, and a scatter keeps XLA:CPU from compiling the sampler's loop into one
kernel (`hjax.inference.run.one_kernel`); what broadcasting saves is in
scripts/bench/RESULTS.md (one lane per CPU device instead of 4). The log
density and its gradient are the same numbers, to the rounding of the gradient's sums.

Example:
    >>> model, design = hj.catalog.crossed_bernoulli(persons=3, items=2)
    >>> data = model.prepare(design | {"y": np.zeros(6, int)})
    >>> data["person"].tolist(), data["item"].tolist()
    ([0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1])
    >>> batch = {k: np.asarray(v)[None] for k, v in data.items()}  # one dataset
    >>> [(level.group, level.row_pattern) for level in levels(with_regular_indices(model, batch))]
    [('person', (1, 2)), ('item', (3, 1))]
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import numpy as np

from hjax.model.level import AbstractLevel

__all__ = ["levels", "row_pattern", "with_regular_indices"]


def _is_level(node) -> bool:
    return isinstance(node, AbstractLevel)


def levels(model) -> list[AbstractLevel]:
    """The levels that enter the model's predictors (a Nested's parent only if it does too)."""
    return [node for node in jax.tree.leaves(model, is_leaf=_is_level) if _is_level(node)]


def row_pattern(column: np.ndarray, n_groups: int) -> tuple[int, int] | None:
    """(outer, inner) if every row of `column` (datasets x rows) is
    `tile(repeat(arange(n_groups), inner), outer)`, else None.

    Example:
        >>> row_pattern(np.array([[0, 0, 1, 1, 0, 0, 1, 1]]), 2)
        (2, 2)
        >>> row_pattern(np.array([[0, 1, 1, 0]]), 2) is None
        True
    """
    column = np.asarray(column)
    rows = column.shape[-1]
    if column.ndim != 2 or rows == 0 or n_groups < 1 or rows % n_groups:
        return None
    nonzero = np.flatnonzero(column[0])
    inner = int(nonzero[0]) if nonzero.size else rows  # the rows of group 0 at the start
    if inner == 0 or rows % (n_groups * inner):
        return None
    outer = rows // (n_groups * inner)
    pattern = np.tile(np.repeat(np.arange(n_groups), inner), outer)
    return (outer, inner) if bool(np.all(column == pattern)) else None


def with_regular_indices(model, batch: dict[str, np.ndarray]):
    """The model with `row_pattern` set on each level whose index column has one
    (`row_pattern`) in every dataset of a stacked, prepared batch (the same model otherwise)."""
    patterns = {}
    for level in levels(model):
        column = batch.get(level.group)
        if column is not None:
            patterns[level.group] = row_pattern(column, model.sizes[level.group])

    def regular(level: AbstractLevel) -> bool:
        return patterns.get(level.group) is not None

    if not any(regular(level) for level in levels(model)):
        return model
    return eqx.tree_at(
        lambda m: [level for level in levels(m) if regular(level)], model,
        replace_fn=lambda level: dataclasses.replace(level, row_pattern=patterns[level.group]))
