"""Exact reductions of the likelihood: rows that share every slot value are summarised once.

When every slot of the likelihood (mu and sigma, logit_p, log_rate, trials) depends on the row
only through columns whose values repeat (group indices, a shared design), rows with equal
values form a cell, and the cell's rows enter the likelihood through a few sums:

- Gaussian: the number of rows n, their mean and their sum of squared deviations SS:
  sum_i log N(y_i; mu, sigma) = -n log(sigma sqrt(2 pi)) - (SS + n (mean - mu)^2) / (2 sigma^2);
- Bernoulli (logit): n and the number of ones k: k x - n softplus(x);
- Binomial: the successes, the trials and the sum of the log binomial coefficients;
- Poisson: n, the sum of counts and the sum of log(y!).

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
import jax.numpy as jnp
import numpy as np
from scipy.special import gammaln

from hjax.errors import ModelError
from hjax.model.likelihoods import BernoulliLogit, Binomial, Gaussian, Likelihood, Poisson
from hjax.model.log1p_exp import log1p_exp
from hjax.model.terms import OBS

__all__ = ["Reduced", "ReductionPlan", "plan_reduction"]

MAX_SHARE = 0.5  # reduce when there are at most this many cells per row
STATISTICS = {Gaussian: ("n", "mean", "ss"), BernoulliLogit: ("n", "sum"),
              Binomial: ("n", "sum", "log_choose"), Poisson: ("n", "sum", "log_factorial")}
DESCRIBED = {Gaussian: "n, mean, sum of squares", BernoulliLogit: "n, number of ones",
             Binomial: "successes, sum of log binomial coefficients",
             Poisson: "n, sum, sum of log factorials"}


def _statistics(likelihood, y: np.ndarray, trials, cells: np.ndarray, n_cells: int) -> dict:
    """The sums per cell of one dataset's observed column (`trials` per row, Binomial)."""
    def per_cell(values):
        return np.bincount(cells, weights=values, minlength=n_cells)

    n = per_cell(np.ones_like(y))
    if isinstance(likelihood, Gaussian):
        mean = per_cell(y) / n
        return {"n": n, "mean": mean, "ss": per_cell((y - mean[cells]) ** 2)}
    if isinstance(likelihood, BernoulliLogit):
        return {"n": n, "sum": per_cell(y)}
    if isinstance(likelihood, Binomial):
        log_choose = gammaln(trials + 1) - gammaln(y + 1) - gammaln(trials - y + 1)
        return {"n": n, "sum": per_cell(y), "log_choose": per_cell(log_choose)}
    return {"n": n, "sum": per_cell(y), "log_factorial": per_cell(gammaln(y + 1))}


class Reduced(Likelihood):
    """The likelihood of cells of rows that share their slot values (see the module): the
    wrapped likelihood's slots, per cell, and its rows' statistics as observed columns."""

    likelihood: Likelihood
    prefix: str = eqx.field(static=True)

    @property
    def parameters(self):
        return self.likelihood.parameters

    @property
    def observed(self):
        return tuple(f"{self.prefix}{s}" for s in STATISTICS[type(self.likelihood)])

    def terms(self):
        return self.likelihood.terms()

    def slot_supports(self):
        return self.likelihood.slot_supports()

    def observed_keys(self):
        return {key: key for key in self.observed}

    def log_prob(self, **kwargs):
        stat = {k.removeprefix(self.prefix): v for k, v in kwargs.items()
                if k.startswith(self.prefix)}
        slots = {k: v for k, v in kwargs.items() if not k.startswith(self.prefix)}
        inner = self.likelihood
        if isinstance(inner, Gaussian):
            mu, sigma, n = slots["mu"], slots["sigma"], stat["n"]
            return (-n * (jnp.log(sigma) + 0.5 * jnp.log(2 * jnp.pi))
                    - (stat["ss"] + n * (stat["mean"] - mu) ** 2) / (2 * sigma**2))
        if isinstance(inner, BernoulliLogit):
            return stat["sum"] * slots["logit_p"] - stat["n"] * log1p_exp(slots["logit_p"])
        if isinstance(inner, Binomial):
            x = slots["logit_p"]
            return (stat["log_choose"] + stat["sum"] * x
                    - stat["n"] * slots["trials"] * log1p_exp(x))
        rate = slots["log_rate"]
        return stat["sum"] * rate - stat["n"] * jnp.exp(rate) - stat["log_factorial"]

    def sample(self, key, **params):
        raise ModelError("A reduced likelihood only fits; simulate with the model itself.")

    def __str__(self):
        return f"{self.likelihood} (rows summarised per cell: {DESCRIBED[type(self.likelihood)]})"


class ReductionPlan(NamedTuple):
    """Which rows form each cell, and the model and batch that fit the cells."""

    model: object
    batch: dict[str, np.ndarray]
    n_rows: int
    n_cells: int

    def describe(self) -> str:
        name = type(self.model.likelihood.likelihood).__name__
        return (f"{name}: {self.n_rows} rows in {self.n_cells} cells "
                f"({DESCRIBED[type(self.model.likelihood.likelihood)]} per cell)")


def plan_reduction(model, batch: dict[str, np.ndarray]) -> ReductionPlan | None:
    """The reduced model and batch for a stacked, prepared batch, or None when the
    likelihood has no reduction, a missing-outcome mask is in play, the slots read columns
    that differ between datasets, or cells would be more than half the rows."""
    likelihood = model.likelihood
    if type(likelihood) not in STATISTICS or model.missing:
        return None
    per_row = sorted({need.key for need in model.needs() if need.context == OBS})
    observed = next(iter(likelihood.observed_keys().values()))
    n_rows = batch[observed].shape[1]
    if any(np.any(batch[k] != batch[k][:1]) for k in per_row):
        return None  # cells must be the same in every dataset of the batch
    key = np.stack([batch[k][0] for k in per_row], axis=1) if per_row else np.zeros((n_rows, 0))
    _, first, cells = np.unique(key, axis=0, return_index=True, return_inverse=True)
    cells = cells.ravel()
    if len(first) > MAX_SHARE * n_rows:
        return None
    trials = None
    if isinstance(likelihood, Binomial):
        trials = likelihood.trials({}, {k: v[0] for k, v in batch.items()})
        trials = np.broadcast_to(np.asarray(trials, dtype=float), (n_rows,))
    prefix = f"{observed}__"
    reduced = model.__class__(Reduced(likelihood, prefix), coords=dict(model.group_coords))
    columns = {k: v[:, first] for k, v in batch.items() if k in per_row}
    stats = [_statistics(likelihood, np.asarray(y, float), trials, cells, len(first))
             for y in batch[observed]]
    columns |= {prefix + s: np.stack([row[s] for row in stats]) for s in stats[0]}
    group_level = {k: v for k, v in batch.items() if k not in columns and k not in (
        observed, *per_row)}
    return ReductionPlan(reduced, columns | group_level, n_rows, len(first))
