"""Exact reductions of the likelihood: rows that share every slot value are summarised once.

When every slot of the likelihood (mu and sigma, logit_p, log_rate, trials) depends on the row
only through columns whose values repeat (group indices, a shared design), rows with equal
values form a cell, and the cell's rows enter the likelihood through a few sums: the
statistics the likelihood declares (`statistics`, computed by its `cell_statistics`, with its
`reduced_log_prob`). The Gaussian's are the number of rows n, their mean and their sum of
squared deviations SS:
sum_i log N(y_i; mu, sigma) = -n log(sigma sqrt(2 pi)) - (SS + n (mean - mu)^2) / (2 sigma^2);
BernoulliLogit, Binomial and Poisson have theirs.

The density and its gradient are those of the rows (the posterior is unchanged); the gathers,
scatters and per-row terms of each leapfrog step are per cell. `hj.sample` reduces a batch
when its cells are shared by every dataset and number at most half the rows
(`reduce=False` turns it off); the fit's attrs say what it did (`reduction`).

Example:
    >>> model, design = hj.catalog.varying_intercept(groups=4, per_group=5)
    >>> data = model.prepare(design | {"y": np.arange(20.0)})
    >>> plan = plan_reduction(model, {k: np.asarray(v)[None] for k, v in data.items()})
    >>> plan.describe()
    'Gaussian: 20 rows in 4 cells (n, mean, sum of squares per cell)'
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import numpy as np

from hjax.errors import ModelError
from hjax.model.likelihoods import AbstractWrappedLikelihood, Cells
from hjax.model.terms import OBS

__all__ = ["Reduced", "ReductionPlan", "plan_reduction"]

MAX_SHARE = 0.5  # reduce when there are at most this many cells per row


class Reduced(AbstractWrappedLikelihood):
    """The likelihood of cells of rows that share their slot values (see the module): the
    wrapped likelihood's slots, per cell, and its rows' statistics as observed columns."""

    prefix: str = eqx.field(static=True)

    @property
    def observed(self):
        return tuple(f"{self.prefix}{s}" for s in self.likelihood.statistics)

    def observed_keys(self):
        return {key: key for key in self.observed}

    def log_prob(self, **kwargs):
        stats = {k.removeprefix(self.prefix): v for k, v in kwargs.items()
                 if k.startswith(self.prefix)}
        slots = {k: v for k, v in kwargs.items() if not k.startswith(self.prefix)}
        return self.likelihood.reduced_log_prob(stats, **slots)

    def sample(self, key, **params):
        raise ModelError("A reduced likelihood only fits; simulate with the model itself.")

    def __str__(self):
        return (f"{self.likelihood} (rows summarised per cell: "
                f"{self.likelihood.statistics_description})")


class ReductionPlan(NamedTuple):
    """Which rows form each cell, and the model and batch that fit the cells."""

    model: object
    batch: dict[str, np.ndarray]
    n_rows: int
    n_cells: int

    def describe(self) -> str:
        likelihood = self.model.likelihood.likelihood
        return (f"{type(likelihood).__name__}: {self.n_rows} rows in {self.n_cells} cells "
                f"({likelihood.statistics_description} per cell)")


def plan_reduction(model, batch: dict[str, np.ndarray]) -> ReductionPlan | None:
    """The reduced model and batch for a stacked, prepared batch, or None when the
    likelihood has no reduction, a missing-outcome mask is in play, the slots read columns
    that differ between datasets, or cells would be more than half the rows."""
    likelihood = model.likelihood
    if not likelihood.statistics or model.missing:
        return None
    per_row = sorted({need.key for need in model.needs() if need.context == OBS})
    observed = next(iter(likelihood.observed_keys().values()))
    n_rows = batch[observed].shape[1]
    if any(np.any(batch[k] != batch[k][:1]) for k in per_row):
        return None  # cells must be the same in every dataset of the batch
    key = np.stack([batch[k][0] for k in per_row], axis=1) if per_row else np.zeros((n_rows, 0))
    _, first, index = np.unique(key, axis=0, return_index=True, return_inverse=True)
    cells = Cells(index.ravel(), len(first))
    if cells.count > MAX_SHARE * n_rows:
        return None
    prefix = f"{observed}__"
    reduced = model.__class__(Reduced(likelihood, prefix), coords=dict(model.group_coords))
    columns = {k: v[:, first] for k, v in batch.items() if k in per_row}
    rows = {k: v[0] for k, v in batch.items()}
    stats = [likelihood.cell_statistics(np.asarray(y, float), cells, rows)
             for y in batch[observed]]
    columns |= {prefix + s: np.stack([row[s] for row in stats]) for s in stats[0]}
    group_level = {k: v for k, v in batch.items() if k not in columns and k not in (
        observed, *per_row)}
    return ReductionPlan(reduced, columns | group_level, n_rows, cells.count)
