"""`hj.recover`: parameter recovery from data simulated at given or gridded true values."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import xarray as xr

from hjax.model._term import Sum
from hjax.model.fixed import Fixed
from hjax.model.level import Level
from hjax.model.likelihoods import Gaussian
from hjax.studies import metrics
from hjax.studies.runner import StudySettings, run_study


def recovery_truths(given: Mapping | None, grid: Mapping[str, Sequence[float]] | None,
                    replicates: int) -> dict[str, np.ndarray]:
    """Per-dataset held values: every grid point (Cartesian product) `replicates` times, each
    with the `given` values; arrays in `given` with a leading axis are taken per dataset.

    Example:
        >>> recovery_truths({"sigma": 1.0}, {"b0": [0.0, 1.0]}, replicates=2)["b0"]
        array([0., 0., 1., 1.])
    """
    grid = dict(grid or {})
    points = list(itertools.product(*grid.values())) or [()]
    n = len(points) * replicates
    truths = {name: np.repeat([p[i] for p in points], replicates).astype(float)
              for i, name in enumerate(grid)}
    for name, value in (given or {}).items():
        value = np.asarray(value, dtype=float)
        truths[name] = np.broadcast_to(value, (n, *value.shape)).copy()
    return truths


def recover(
    model,
    design: Mapping,
    *,
    key,
    given: Mapping | None = None,
    grid: Mapping[str, Sequence[float]] | None = None,
    replicates: int = 20,
    chains: int = 4,
    warmup: int = 500,
    draws: int = 500,
    batch_size: int = 16,
    target_accept: float = 0.8,
    init: str | None = None,
    sampler: str = "nuts",
    lanes: int | None = None,
    seed: int = 0,
    directory: str | os.PathLike | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    shrinkage: str | None = None,
) -> xr.Dataset:
    """Fit datasets simulated at known parameter values and return the study table.

    Parameters in `given` / `grid` are held at those values; the others (typically the group
    values) are drawn from the model given them, so a recovery of the population parameters
    also scores the group-level ones. `hj.recovery_metrics(table)` gives bias, RMSE,
    correlation and coverage per parameter.

    With `shrinkage="u"` (a Gaussian model whose `mu` is an intercept plus Level "u", or a
    Level with an intercept `loc`), the table also holds, per dataset and group, the observed
    group mean and size and the posterior means of the group's mean and of the population
    mean: `shrinkage_table(table)` turns them into pooling fractions.

    Example:
        >>> model, design = hj.catalog.varying_intercept(groups=20, per_group=10)
        >>> table = hj.recover(model, design, key=jax.random.key(0),
        ...                    grid={"u_sd": [0.2, 1.0]}, given={"b0": 0.5, "sigma": 1.0})
    """
    truths = recovery_truths(given, grid, replicates)
    n_datasets = next(iter(truths.values())).shape[0] if truths else replicates
    settings = StudySettings(chains=chains, warmup=warmup, draws=draws, batch_size=batch_size,
                             target_accept=target_accept, init=init,
                             sampler=sampler, lanes=lanes, seed=seed)
    extra = None if shrinkage is None else group_means(model, shrinkage)
    table = run_study(model, design, n_datasets=n_datasets, key=key, settings=settings,
                      given=truths, directory=directory, on_batch=on_batch, extra=extra)
    held = {f"held_{name}": ("dataset", values) for name, values in truths.items()
            if values.ndim == 1}
    return table.assign_coords(held)


def group_means(model, level_name: str):
    """A study hook: observed and posterior group means of Level `level_name`, per dataset."""
    level = next((t for t in model.terms() if isinstance(t, Level) and t.name == level_name),
                 None)
    mu = model.likelihood.terms().get("mu")
    intercepts = [t for t in (mu.terms if isinstance(mu, Sum) else ()) if
                  isinstance(t, Fixed) and t.has_intercept()]
    if level is None or not isinstance(model.likelihood, Gaussian):
        raise ValueError(f"shrinkage needs a Gaussian model with a Level '{level_name}'.")
    if isinstance(level.loc, Fixed) and level.loc.has_intercept():
        population = level.loc.name
    elif level.loc is None and len(intercepts) == 1:
        population = intercepts[0].name
    else:
        raise ValueError(
            f"shrinkage needs Level '{level_name}' to be an intercept Fixed plus zero-mean "
            "deviations, or to have an intercept Fixed as its `loc`."
        )
    y_key = model.likelihood.observed_keys()["y"]

    def hook(fit, data, indices):
        g = np.asarray(data[level.group])
        y = np.asarray(data[y_key])
        size = model.sizes[level.group]
        counts = np.stack([np.bincount(row, minlength=size) for row in g])
        sums = np.stack([np.bincount(row, w, minlength=size) for row, w in zip(g, y,
                                                                            strict=True)])
        post = fit.posterior.to_dataset()
        pop = post[population].mean(("chain", "draw")).values
        values = post[level_name].mean(("chain", "draw")).values
        group_mean = values if level.loc is not None else values + pop[:, None]
        dims = ("dataset", f"{level.group}")
        return xr.Dataset({
            "observed_group_mean": (dims, sums / np.maximum(counts, 1)),
            "group_size": (dims, counts),
            "posterior_group_mean": (dims, group_mean),
            "posterior_population_mean": ("dataset", pop),
        }, coords={"dataset": indices})

    return hook


def shrinkage_table(table: xr.Dataset) -> xr.Dataset:
    """Pooling fractions of every (dataset, group) of a `recover(..., shrinkage=...)` table.

    Example:
        >>> hj.plot_shrinkage(shrinkage_table(table), path="shrinkage.png")
    """
    population = table.posterior_population_mean.broadcast_like(table.observed_group_mean)
    return metrics.shrinkage(table.observed_group_mean.values.ravel(),
                             table.group_size.values.ravel(),
                             table.posterior_group_mean.values.ravel(),
                             population.values.ravel())
