"""Parameter recovery: how close posterior summaries come to the simulated values, and shrinkage.

Recovery metrics read the study table of `sbc_ranks` (one row per dataset and variable) and
summarize over datasets: a calibrated posterior can still recover a parameter poorly (wide
posteriors, low correlation), which SBC alone does not show.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import xarray as xr

from hjax.errors import ConfigError, DataError
from hjax.studies.ranks import COVERAGE_LEVELS

__all__ = ["grid_points", "implied_shrinkage", "recovery_metrics", "shrinkage"]


def recovery_metrics(table: xr.Dataset, *,
                     by: Literal["variable", "parameter"] = "variable") -> xr.Dataset:
    """Bias, RMSE, correlation and interval coverage of the posterior means, over datasets.

    Args:
        table: the study table of `sbc_ranks` (`mean`, `simulated_value` and the `covered_*`
            columns with dims (dataset, variable)).
        by: "variable" for one row per scalar quantity, or "parameter" to pool the elements of
            each parameter (all groups of `theta` together) over datasets.

    Returns:
        A Dataset over `by` with `bias` (mean of posterior mean - simulated value), `rmse`,
        `correlation` (Pearson, simulated value vs posterior mean; NaN when either is
        constant), `coverage_50`, `coverage_80`, `coverage_95` (fraction of central intervals
        holding the simulated value) and `n` (rows summarized).

    Example:
        >>> table = hj.sbc(model, design, n_datasets=8, key=0, chains=2, warmup=100, draws=50)
        >>> metrics = hj.recovery_metrics(table, by="parameter")
        >>> metrics["parameter"].values.tolist(), metrics["n"].values.tolist()  # 8 x 8 thetas
        (['theta_sd', 'mu', 'theta'], [8, 8, 64])
    """
    if by not in ("variable", "parameter"):
        raise ConfigError(f"Expected by='variable' or 'parameter'; got {by!r}.")
    rows = []
    for name in dict.fromkeys(table[by].values):  # unique, in table order
        group = table.isel(variable=table[by].values == name)
        estimate = group["mean"].values.ravel()
        truth = group["simulated_value"].values.ravel()
        error = estimate - truth
        if np.ptp(estimate) > 0 and np.ptp(truth) > 0:
            correlation = float(np.corrcoef(truth, estimate)[0, 1])
        else:
            correlation = np.nan
        row = {"bias": error.mean(), "rmse": np.sqrt((error**2).mean()),
               "correlation": correlation, "n": error.size}
        row |= {f"coverage_{level}": float(group[f"covered_{level}"].mean())
                for level in COVERAGE_LEVELS}
        rows.append((name, row))
    names = [name for name, _ in rows]
    return xr.Dataset(
        {key: (by, np.array([row[key] for _, row in rows])) for key in rows[0][1]},
        coords={by: names},
    )


def grid_points(table: xr.Dataset, dim: str = "dataset",
                max_points: int = 12) -> list[tuple[str, np.ndarray]]:
    """The grid points of a recovery study: distinct combinations of the `held_*` coords that vary.

    Args:
        table: a table with `held_<name>` coords along `dim` (as `recover` assigns them).
        dim: the dimension the coords run along.
        max_points: more distinct combinations than this are not a grid but held values drawn
            per dataset, best seen pooled (truth against estimate): one point is returned.

    Returns:
        (label, mask over `dim`) per grid point, in order of first appearance; the label reads
        "u_sd = 0.5, b0 = 1". One point labelled "" when no held value varies.

    Example:
        >>> table = xr.Dataset(coords={"held_u_sd": ("dataset", [0.2, 0.2, 0.5, 1.0]),
        ...                            "held_b0": ("dataset", [1.0, 1.0, 1.0, 1.0])})
        >>> [(label, mask.tolist()) for label, mask in grid_points(table)]
        [('u_sd = 0.2', [True, True, False, False]), ('u_sd = 0.5', [False, False, True, False]),
         ('u_sd = 1', [False, False, False, True])]
    """
    held = {str(name)[len("held_"):]: table[name].values for name in table.coords
            if str(name).startswith("held_") and table[name].dims == (dim,)}
    varying = {name: values for name, values in held.items() if np.unique(values).size > 1}
    pooled = [("", np.ones(table.sizes[dim], dtype=bool))]
    if not varying:
        return pooled
    rows = np.stack(list(varying.values()), axis=1)
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    if first.size > max_points:
        return pooled
    points = []
    for index in np.argsort(first):  # np.unique sorts; keep the order the grid was given in
        label = ", ".join(f"{name} = {value:g}" for name, value in zip(varying, rows[first[index]],
                                                                       strict=True))
        points.append((label, inverse.ravel() == index))
    return points


def implied_shrinkage(group_size, noise_sd, group_sd) -> np.ndarray:
    """The pooling fraction a normal hierarchy implies: (sigma^2/n) / (sigma^2/n + sd^2).

    A group of n observations with noise sd sigma, in a population of sd `group_sd`, has its
    posterior mean pulled this fraction of the way from its observed mean to the population
    mean (sigma and sd known).

    Example:
        >>> implied_shrinkage(np.array([1, 4]), 2.0, 1.0)
        array([0.8, 0.5])
    """
    var = np.asarray(noise_sd, dtype=float) ** 2 / np.asarray(group_size, dtype=float)
    return var / (var + np.asarray(group_sd, dtype=float) ** 2)


def shrinkage(observed_mean: np.ndarray, group_size: np.ndarray, posterior_mean: np.ndarray,
              population_mean: float | np.ndarray, *, noise_sd: float | np.ndarray | None = None,
              group_sd: float | np.ndarray | None = None) -> xr.Dataset:
    """How far each group's posterior mean moved from its observed mean toward the population.

    The fraction is (observed - posterior) / (observed - population): 0 is no pooling, 1 is
    complete pooling. In a hierarchical normal model it is about sigma^2 / (sigma^2 + n tau^2),
    so small groups are pulled more. It is unstable for groups whose observed mean lies near
    the population mean (the denominator is near 0).

    Args:
        observed_mean: each group's sample mean.
        group_size: observations per group.
        posterior_mean: each group's posterior mean.
        population_mean: the posterior mean of the population mean (scalar or per group, e.g.
            with group-level predictors).
        noise_sd: the observation sd sigma (scalar or per group), for the implied fraction.
        group_sd: the population sd tau (scalar or per group), for the implied fraction.

    Returns:
        A Dataset over `group` with `observed_mean`, `group_size`, `posterior_mean`,
        `population_mean` and `shrinkage`; given both sds, also `noise_sd`, `group_sd` and
        `implied_shrinkage` (see `implied_shrinkage`).

    Example:
        >>> result = shrinkage(np.array([2.0, -1.0]), np.array([3, 30]), np.array([1.0, -0.9]), 0.0)
        >>> result.shrinkage.values
        array([0.5, 0.1])
    """
    observed = np.asarray(observed_mean, dtype=float)
    posterior = np.asarray(posterior_mean, dtype=float)
    population = np.broadcast_to(np.asarray(population_mean, dtype=float), observed.shape)
    sizes = np.broadcast_to(np.asarray(group_size), observed.shape)
    if posterior.shape != observed.shape or observed.ndim != 1:
        raise DataError(f"Expected 1-d observed and posterior means of one shape; got "
                        f"{observed.shape} and {posterior.shape}.")
    if (noise_sd is None) != (group_sd is None):
        raise ConfigError("Expected both noise_sd and group_sd (for the implied shrinkage) or "
                          "neither.")
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = (observed - posterior) / (observed - population)
    result = xr.Dataset({
        "observed_mean": ("group", observed),
        "group_size": ("group", sizes),
        "posterior_mean": ("group", posterior),
        "population_mean": ("group", population),
        "shrinkage": ("group", fraction),
    })
    if noise_sd is not None:
        sds = {"noise_sd": noise_sd, "group_sd": group_sd}
        result = result.assign({name: ("group", np.broadcast_to(np.asarray(value, dtype=float),
                                                                observed.shape))
                                for name, value in sds.items()})
        with np.errstate(divide="ignore", invalid="ignore"):
            result["implied_shrinkage"] = ("group", implied_shrinkage(
                sizes, result["noise_sd"].values, result["group_sd"].values))
    return result
