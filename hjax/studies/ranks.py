"""The SBC study table: ranks of the simulated values among posterior draws, plus summaries.

One row per (dataset, scalar quantity), in long form: `variable` holds Stan-style labels
("mu", "theta[A]", "ab[p1, x]") and the coord `parameter` their base name. Column meanings follow
the R package SBC (Modrák et al. 2023) where it has one.

Ranks need near-independent draws (Talts et al. 2018), so they are computed from thinned
draws; every summary (mean, sd, quantiles, coverage) uses all draws.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from hjax.errors import ConfigError, DataError

__all__ = ["sbc_ranks", "thin_factor"]

SAMPLE_DIMS = ("chain", "draw")
COVERAGE_LEVELS = (50, 80, 95)


def _central(level: int) -> tuple[float, float]:
    return (1 - level / 100) / 2, (1 + level / 100) / 2


QUANTILES = (0.05, 0.5, 0.95, *(q for level in COVERAGE_LEVELS for q in _central(level)))


def thin_factor(n_chain: int, n_draw: int, *, max_rank: int = 99,
                min_ess: float | None = None) -> int:
    """The thinning factor `t` that `sbc_ranks` uses when none is given.

    Every chain keeps draws `0, t, 2t, ...`, so L = n_chain * ceil(n_draw / t) draws enter each
    rank. `t` is the smallest factor with L <= `max_rank` (ranks then take at most 100 values,
    enough resolution for the ECDF test) and, when `min_ess` is given, with at least
    `n_chain * n_draw / min_ess` (one kept draw per effective draw: the kept draws are then
    roughly independent, as SBC's uniformity requires).

    Args:
        n_chain: chains per fit.
        n_draw: draws per chain.
        max_rank: the largest L allowed.
        min_ess: the smallest bulk ESS of the quantity over all fits, if known.

    Returns:
        The thinning factor, at least 1.

    Example:
        >>> thin_factor(4, 1000)  # 4 chains x 24 draws = 96 <= 99
        42
    """
    if max_rank < n_chain:
        raise ConfigError(f"Expected max_rank >= n_chain ({n_chain}); got {max_rank}.")
    per_chain = max_rank // n_chain
    thin = max(1, math.ceil(n_draw / per_chain))
    # ceil(n_draw / thin) may still exceed per_chain by rounding; step up until it does not.
    while n_chain * math.ceil(n_draw / thin) > max_rank:
        thin += 1
    if min_ess is not None and np.isfinite(min_ess) and min_ess > 0:
        thin = max(thin, math.ceil(n_chain * n_draw / min_ess))
    return min(thin, n_draw)


def _labels(da: xr.DataArray, name: str, param_dims: tuple[str, ...]) -> list[str]:
    if not param_dims:
        return [name]
    axes = [da[d].values if d in da.coords else np.arange(da.sizes[d]) for d in param_dims]
    return [f"{name}[{', '.join(str(ax[i]) for ax, i in zip(axes, index, strict=True))}]"
            for index in np.ndindex(*(len(ax) for ax in axes))]


def _ranks(thinned: np.ndarray, truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draws below the truth, ties split uniformly at random (Talts et al. 2018, SBC)."""
    below = (thinned < truth[:, None, :]).sum(axis=1)
    ties = (thinned == truth[:, None, :]).sum(axis=1)
    # Exact ties occur for discrete or boundary-clamped quantities; counting them all as
    # "below" (or none) would pile ranks up at one end even for a calibrated posterior.
    return below + rng.integers(0, ties + 1)


def _columns(values: np.ndarray, sim: np.ndarray, thin: int, prior_var: np.ndarray,
             rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The table's columns for one parameter: `values` (dataset, chain, draw, element) and
    `sim` (dataset, element); each column (dataset, element)."""
    n_dataset, n_chain, n_draw, _ = values.shape
    thinned = values[:, :, ::thin].reshape(n_dataset, -1, sim.shape[1])
    pooled = values.reshape(n_dataset, n_chain * n_draw, -1)
    mean = pooled.mean(axis=1)
    sd = pooled.std(axis=1, ddof=1)
    quantiles = dict(zip(QUANTILES, np.quantile(pooled, QUANTILES, axis=1), strict=True))
    with np.errstate(divide="ignore", invalid="ignore"):  # constant draws or truths: inf
        z_score, contraction = (mean - sim) / sd, 1 - sd**2 / prior_var
    columns = {
        "rank": _ranks(thinned, sim, rng),
        "max_rank": np.full(sim.shape, thinned.shape[1]),
        "simulated_value": sim,
        "mean": mean,
        "sd": sd,
        "median": quantiles[0.5],
        "q5": quantiles[0.05],
        "q95": quantiles[0.95],
        "z_score": z_score,
        "contraction": contraction,
    }
    for level in COVERAGE_LEVELS:
        lo, hi = (quantiles[q] for q in _central(level))
        columns[f"covered_{level}"] = (lo <= sim) & (sim <= hi)
    return columns


def _variable_table(draws: xr.DataArray, truth: xr.DataArray, name: str, *, thin, max_rank,
                    ess, prior_variance, rng) -> xr.Dataset:
    """`sbc_ranks`'s columns of one variable, dims (dataset, variable)."""
    lead = ("dataset", *SAMPLE_DIMS)
    if any(d not in draws.dims for d in lead):
        raise DataError(f"Expected posterior['{name}'] with dims {lead} and its parameter "
                        f"dims; got {draws.dims}.")
    param_dims = tuple(d for d in draws.dims if d not in lead)
    if set(truth.dims) != {"dataset", *param_dims}:
        raise DataError(f"Expected truths['{name}'] with dims ('dataset', *{param_dims}); "
                        f"got {truth.dims}.")
    draws, truth = xr.align(draws, truth, join="exact")
    n_dataset, n_chain, n_draw = (draws.sizes[d] for d in lead)
    values = draws.transpose(*lead, *param_dims).values.reshape(n_dataset, n_chain, n_draw, -1)
    sim = truth.transpose("dataset", *param_dims).values.reshape(n_dataset, -1)
    if thin is None:
        min_ess = None if ess is None else float(ess[name].min())
        thin = thin_factor(n_chain, n_draw, max_rank=max_rank, min_ess=min_ess)
    if prior_variance is not None:
        prior_var = prior_variance[name].transpose(*param_dims).values.reshape(-1)
    elif n_dataset > 1:
        prior_var = sim.var(axis=0, ddof=1)
    else:
        prior_var = np.full(sim.shape[1], np.nan)
    columns = _columns(values, sim, thin, prior_var, rng)
    labels = _labels(draws, name, param_dims)
    return xr.Dataset(
        {key: (("dataset", "variable"), value) for key, value in columns.items()},
        coords={"variable": labels, "parameter": ("variable", [name] * len(labels))},
    )


def sbc_ranks(
    posterior: xr.Dataset,
    truths: xr.Dataset,
    *,
    thin: int | None = None,
    max_rank: int = 99,
    ess: xr.Dataset | None = None,
    prior_variance: xr.Dataset | None = None,
    seed: int | np.random.Generator = 0,
) -> xr.Dataset:
    """Rank each simulated value among its fit's posterior draws, and summarize the draws.

    Args:
        posterior: draws, each variable with dims (dataset, chain, draw, *param_dims), e.g. the
            `posterior` group of a batched `hj.sample` result.
        truths: the simulated values, each variable with dims (dataset, *param_dims); every
            variable of `truths` must be in `posterior`. Extra posterior variables are ignored.
        thin: keep every `thin`-th draw of each chain for the ranks. Default: `thin_factor`,
            per variable, from `max_rank` and `ess`.
        max_rank: the largest number of thinned draws L when `thin` is not given.
        ess: bulk ESS with the dims of `truths` (e.g. `arviz_stats.ess(posterior,
            sample_dims=["chain", "draw"])`); its minimum over datasets sets a variable's thinning
            so that the kept draws are roughly independent. One factor per variable keeps
            `max_rank` equal across datasets, which the uniformity test needs.
        prior_variance: the prior variance of each value, with the dims of `truths` less
            `dataset` (e.g. over many prior draws, see `hjax.studies.runner.prior_variance`);
            by default estimated across datasets from the simulated values (the R package
            SBC's choice, which makes a batch's contraction depend on the batch).
        seed: seed or generator for breaking ties.

    Returns:
        A Dataset with dims (dataset, variable), coords `dataset`, `variable` (labels) and
        `parameter` (base name, along `variable`), and variables: `rank` (thinned draws below the
        simulated value, ties at random), `max_rank` (L, the number of thinned draws: ranks lie
        in 0..L), `simulated_value`, `mean`, `sd`, `median`, `q5`, `q95`, `z_score`
        ((mean - simulated_value) / sd), `contraction` (1 - posterior variance / prior
        variance) and
        `covered_50`, `covered_80`, `covered_95` (the central interval holds the simulated value).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> posterior = xr.Dataset(  # 3 fits of 2 chains x 50 draws
        ...     {"theta": (("dataset", "chain", "draw", "group"), rng.normal(size=(3, 2, 50, 2)))},
        ...     coords={"group": ["A", "B"]})
        >>> truths = xr.Dataset({"theta": (("dataset", "group"), rng.normal(size=(3, 2)))},
        ...                     coords={"group": ["A", "B"]})
        >>> table = sbc_ranks(posterior, truths, thin=1)
        >>> table["rank"].dims, table["variable"].values.tolist(), int(table["max_rank"].max())
        (('dataset', 'variable'), ['theta[A]', 'theta[B]'], 100)
    """
    rng = np.random.default_rng(seed)
    if thin is not None and thin < 1:
        raise ConfigError(f"Expected thin >= 1; got {thin}.")
    if "dataset" not in truths.dims:
        raise DataError(f"Expected truths with a `dataset` dim; got dims {tuple(truths.dims)}.")
    missing = [name for name in truths.data_vars if name not in posterior.data_vars]
    if missing:
        raise DataError(f"Truths {missing} have no posterior draws; pass matching variables.")
    blocks = [_variable_table(posterior[name], truths[name], name, thin=thin, max_rank=max_rank,
                              ess=ess, prior_variance=prior_variance, rng=rng)
              for name in truths.data_vars]
    table = xr.concat(blocks, dim="variable")
    return table.assign_coords(dataset=truths["dataset"].values if "dataset" in truths.coords
                               else np.arange(truths.sizes["dataset"]))
