"""`hj.sbc`: simulation-based calibration of a model, as one batched sweep."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import xarray as xr

from hjax.studies.runner import StudySettings, run_study


def sbc(
    model,
    design: Mapping,
    *,
    n_datasets: int,
    key,
    chains: int = 4,
    warmup: int = 500,
    draws: int = 500,
    batch_size: int = 16,
    target_accept: float = 0.8,
    init: str | None = None,
    sampler: str = "nuts",
    lanes: int | None = None,
    max_rank: int = 99,
    seed: int = 0,
    directory: str | os.PathLike | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    fit_model=None,
) -> xr.Dataset:
    """Simulation-based calibration: draw parameters and data from the prior, fit, rank.

    For every dataset i (simulated with `fold_in(key, i)`), every scalar parameter gets the rank
    of its simulated value among at most `max_rank` thinned posterior draws, its z-score, posterior
    contraction and 50/80/95 % interval coverage; every fit's diagnostics (divergences, R-hat,
    ESS, failed initialisations) are kept on its row, divergent or not.

    Args:
        model: an `hj.Model`.
        design: raw design columns (no observed ones), as for `model.prepare(observed=False)`.
        n_datasets: number of simulated datasets.
        key: root PRNG key.
        chains, warmup, draws, target_accept, init, sampler, lanes: NUTS settings per
            dataset (see `hj.sample`).
        batch_size: datasets per batch (one compiled program, one stored file per batch).
        max_rank: upper bound on the number L of thinned draws each rank is taken among (the
            draws of each chain are thinned evenly; the table's `max_rank` holds L).
        seed: seed for breaking rank ties.
        directory: store batches there and resume from them; None keeps results in memory.
        on_batch: callback(datasets_done, n_datasets) before the first batch and after each.
        fit_model: fit this model instead of `model` to the data simulated from `model` (a
            deliberately wrong model must come out miscalibrated).

    Returns:
        The study table, dims (dataset, variable): `rank`, `max_rank`, `simulated_value`,
        `mean`, `sd`, `median`, `q5`, `q95`, `z_score`, `contraction`, `covered_50/80/95`
        (as in the R package SBC) and per-dataset `divergences`, `treedepth_hits`, `max_rhat`,
        `min_ess_bulk`, `min_ess_tail`, `init_failures`. `hj.uniformity_test(table)` tests it.

    Example:
        >>> model, design = hj.catalog.varying_intercept(groups=8, per_group=5)
        >>> table = hj.sbc(model, design, n_datasets=200, key=jax.random.key(0))
        >>> hj.uniformity_test(table).rejected.any().item()
        False
    """
    settings = StudySettings(chains=chains, warmup=warmup, draws=draws, batch_size=batch_size,
                             target_accept=target_accept, init=init,
                             sampler=sampler, lanes=lanes, max_rank=max_rank, seed=seed)
    table = run_study(model, design, n_datasets=n_datasets, key=key, settings=settings,
                      directory=directory, on_batch=on_batch, fit_model=fit_model)
    return with_contraction(table)


def with_contraction(table: xr.Dataset) -> xr.Dataset:
    """Posterior contraction against the prior variance estimated over the whole study."""
    prior_var = table.simulated_value.var("dataset", ddof=1)
    return table.assign(contraction=1 - table.sd**2 / prior_var.where(prior_var > 0))
