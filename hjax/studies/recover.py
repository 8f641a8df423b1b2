"""`hj.recover`: parameter recovery from data simulated at given or gridded true values."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import xarray as xr

from hjax.errors import DataError, ModelError
from hjax.inference.nuts.keys import as_key
from hjax.model.fixed import Fixed
from hjax.model.level import Level
from hjax.model.likelihoods import Gaussian
from hjax.model.terms import Sum
from hjax.settings import StudySettings, count, validated
from hjax.studies import metrics
from hjax.studies.runner import run_study


def held_numbers(value, what: str) -> np.ndarray:
    """`value` (a number, or nested lists of them) as a float array, or a `DataError` naming
    `what`: a bool, a string, an empty list or a NaN holds a parameter at no value.

    Example:
        >>> held_numbers([0.5, 1], "grid['b0']")
        array([0.5, 1. ])
        >>> held_numbers(True, "given['sigma']")
        Traceback (most recent call last):
        ...
        hjax.errors.DataError: given['sigma'] must be a number or a non-empty list of ...
    """
    try:
        array = np.asarray(value)
    except ValueError:  # ragged lists
        array = np.asarray(None)
    if array.dtype.kind not in "iuf" or array.size == 0:
        raise DataError(f"{what} must be a number or a non-empty list of numbers; got "
                        f"{value!r:.60}.")
    if not np.isfinite(array).all():
        raise DataError(f"{what} must be finite; got {value!r:.60}.")
    return array.astype(float)


def recovery_truths(given: Mapping | None, grid: Mapping[str, Sequence[float]] | None,
                    replicates: int) -> dict[str, np.ndarray]:
    """Per-dataset held values: every grid point (Cartesian product) `replicates` times, each
    with the `given` values; arrays in `given` with a leading axis are taken per dataset.

    Example:
        >>> recovery_truths({"sigma": 1.0}, {"b0": [0.0, 1.0]}, replicates=2)["b0"]
        array([0., 0., 1., 1.])
    """
    grid = {name: held_numbers(values, f"grid['{name}']") for name, values in
            (grid or {}).items()}
    given = {name: held_numbers(value, f"given['{name}']") for name, value in
             (given or {}).items()}
    for name, values in grid.items():
        if values.ndim != 1:
            raise DataError(f"grid['{name}'] must be a list of numbers (the values to cross); "
                            f"got shape {values.shape}.")
    both = sorted(set(grid) & set(given))
    if both:
        raise DataError(f"{both} are both given and on the grid; hold each parameter in one.")
    points = list(itertools.product(*grid.values())) or [()]
    n = len(points) * replicates
    truths = {name: np.repeat([p[i] for p in points], replicates).astype(float)
              for i, name in enumerate(grid)}
    for name, value in given.items():
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
    settings: StudySettings | Mapping | None = None,
    directory: str | os.PathLike | None = None,
    shard: tuple[int, int] | str | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    shrinkage: str | None = None,
    **options,
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

    Args:
        key: root PRNG key, or an int seed.
        given: values held in every dataset (a number, or an array with a leading dataset
            axis for per-dataset values).
        grid: values to cross: every combination is a grid point.
        replicates: datasets per grid point.
        settings, **options: as `hj.sbc` (an `hj.StudySettings` and overrides of its fields).
        directory, shard, on_batch: as `hj.sbc`.
        shrinkage: the name of a Level whose shrinkage to record.

    Example:
        >>> model, design = hj.catalog.eight_schools()
        >>> table = hj.recover(model, design, key=0, grid={"theta_sd": [1.0, 5.0]},
        ...                    given={"mu": 0.0}, replicates=4, chains=2, warmup=100, draws=50)
        >>> table.held_theta_sd.values.tolist()
        [1.0, 1.0, 1.0, 1.0, 5.0, 5.0, 5.0, 5.0]
        >>> hj.recovery_metrics(table)["coverage_95"].dims
        ('variable',)
    """
    settings = validated(StudySettings, "hj.recover", settings, **options)
    truths = recovery_truths(given, grid, count(replicates, "replicates", "hj.recover"))
    model.check_given(truths, "hj.recover")
    n_datasets = next(iter(truths.values())).shape[0] if truths else replicates
    extra = None if shrinkage is None else group_means(model, shrinkage)
    return run_study(model, design, n_datasets=n_datasets, key=as_key(key), settings=settings,
                     given=truths, directory=directory, shard=shard, on_batch=on_batch,
                     extra=extra, labels={"study": "recover", "shrinkage": shrinkage})


def _scale_names(model, level) -> dict[str, str | float] | None:
    """The group and observation sds (a parameter name, or a fixed value) for the shrinkage
    the model implies, sigma^2/n / (sigma^2/n + sd^2); None when the noise sd is not one scalar
    parameter (data, predictors), as the curve then has no single sigma."""
    sigma = model.likelihood.terms().get("sigma")
    if not (isinstance(sigma, Fixed) and sigma.has_intercept()):
        return None
    return {"group_sd": level.scale.named(level.name), "noise_sd": sigma.name}


def _scale_means(post: xr.Dataset, scales: dict[str, str | float] | None,
                 n: int) -> xr.Dataset:
    """Per-dataset posterior means of the scales, labelled by role and parameter name ("" for a
    fixed value). Names travel as a coordinate, not as attrs: combining batches drops attrs."""
    if scales is None:
        return xr.Dataset()
    means = [post[v].mean(("chain", "draw")).values if isinstance(v, str) else np.full(n, v)
             for v in scales.values()]
    if any(mean.shape != (n,) for mean in means):  # e.g. the sds of correlated effects
        return xr.Dataset()
    names = [v if isinstance(v, str) else "" for v in scales.values()]
    return xr.Dataset(
        {"posterior_scale_mean": (("dataset", "shrinkage_scale"), np.stack(means, axis=1))},
        coords={"shrinkage_scale": list(scales),
                "shrinkage_scale_parameter": ("shrinkage_scale", names)})


def group_means(model, level_name: str):
    """A study hook: observed and posterior group means of Level `level_name`, per dataset.

    Also, where the model has them as scalars, the posterior means of the group and noise
    sds (`posterior_scale_mean`, with their parameter names), so `shrinkage_table` can give
    the shrinkage the model implies.

    Example:
        >>> table = hj.recover(model, design, key=0, given={"mu": 0.0, "theta_sd": 5.0},
        ...                    replicates=8, chains=2, warmup=100, draws=50,
        ...                    shrinkage="theta")  # passes on group_means(model, "theta")
        >>> table["observed_group_mean"].dims, table["posterior_population_mean"].dims
        (('dataset', 'school'), ('dataset',))
        >>> group_means(model, "mu")
        Traceback (most recent call last):
        ...
        hjax.errors.ModelError: shrinkage needs a Gaussian model with a Level 'mu'.
    """
    level = next((t for t in model.terms() if isinstance(t, Level) and t.name == level_name),
                 None)
    mu = model.likelihood.terms().get("mu")
    intercepts = [t for t in (mu.terms if isinstance(mu, Sum) else ()) if
                  isinstance(t, Fixed) and t.has_intercept()]
    if level is None or not isinstance(model.likelihood, Gaussian):
        raise ModelError(f"shrinkage needs a Gaussian model with a Level '{level_name}'.")
    if isinstance(level.loc, Fixed) and level.loc.has_intercept():
        population = level.loc.name
    elif level.loc is None and len(intercepts) == 1:
        population = intercepts[0].name
    else:
        raise ModelError(
            f"shrinkage needs Level '{level_name}' to be an intercept Fixed plus zero-mean "
            "deviations, or to have an intercept Fixed as its `loc`."
        )
    y_key = model.likelihood.observed_keys()["y"]
    scales = _scale_names(model, level)

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
        }, coords={"dataset": indices}).merge(
            _scale_means(post, scales, len(indices)).assign_coords(dataset=indices))

    return hook


def _implied_sd(table: xr.Dataset, which: str) -> tuple[np.ndarray, str, str] | None:
    """Per-dataset value of the group or noise sd (held, fixed, or its posterior mean), the
    parameter's name and which of the three it is."""
    if "posterior_scale_mean" not in table:
        return None
    values = table["posterior_scale_mean"].sel(shrinkage_scale=which).values.astype(float)
    name = str(table["shrinkage_scale_parameter"].sel(shrinkage_scale=which).values)
    if not name:
        return values, which, "fixed"
    if f"held_{name}" in table.coords:
        return table[f"held_{name}"].values.astype(float), name, "held"
    return values, name, "posterior mean"


def shrinkage_table(table: xr.Dataset) -> xr.Dataset:
    """Pooling fractions of every (dataset, group) of a `recover(..., shrinkage=...)` table.

    Rows (dim `group`) carry the `dataset` they come from and its `held_*` values, so
    `plot_shrinkage` shows each grid point apart. Where the table has the group and noise sds
    (`posterior_scale_mean`, see `group_means`), `group_sd` and `noise_sd` hold per row the
    held value, else the fixed one, else the dataset's posterior mean (attrs `parameter`,
    `source`), for the shrinkage the model implies.

    Example:
        >>> table = hj.recover(model, design, key=0, given={"mu": 0.0, "theta_sd": 5.0},
        ...                    replicates=8, chains=2, warmup=100, draws=50, shrinkage="theta")
        >>> rows = shrinkage_table(table)  # 8 datasets x 8 schools
        >>> rows.sizes["group"], rows["shrinkage"].dims
        (64, ('group',))
    """
    population = table.posterior_population_mean.broadcast_like(table.observed_group_mean)
    per_group = table.observed_group_mean.sizes
    repeat = int(np.prod([size for dim, size in per_group.items() if dim != "dataset"]))
    sds = {which: _implied_sd(table, which) for which in ("group_sd", "noise_sd")}
    scales = ({which: np.repeat(values, repeat) for which, (values, _, _) in sds.items()}
              if all(sds.values()) else {})
    result = metrics.shrinkage(table.observed_group_mean.transpose("dataset", ...).values.ravel(),
                               table.group_size.transpose("dataset", ...).values.ravel(),
                               table.posterior_group_mean.transpose("dataset", ...).values.ravel(),
                               population.transpose("dataset", ...).values.ravel(), **scales)
    for which, (_, name, source) in (sds.items() if scales else ()):
        result[which].attrs.update(parameter=name, source=source)
    held = {name: ("group", np.repeat(table[name].values, repeat))
            for name in table.coords if str(name).startswith("held_")}
    return result.assign_coords(dataset=("group", np.repeat(table["dataset"].values, repeat)),
                                **held)
