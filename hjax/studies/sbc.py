"""`hj.sbc`: simulation-based calibration of a model, as one batched sweep."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import xarray as xr

from hjax.inference.nuts.keys import as_key
from hjax.settings import StudySettings, count, validated
from hjax.studies.runner import run_study


def sbc(
    model,
    design: Mapping,
    *,
    n_datasets: int,
    key,
    settings: StudySettings | Mapping | None = None,
    directory: str | os.PathLike | None = None,
    shard: tuple[int, int] | str | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    fit_model=None,
    **options,
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
        key: root PRNG key, or an int seed.
        settings: an `hj.StudySettings` (or a dict of its fields); `options` override them.
        directory: store batches there and resume from them (any number of workers may share
            it); None keeps results in memory.
        shard: fit only this worker's batches, `(k, n)` or "k/n" (see `hj.recover` too).
        on_batch: callback(datasets_done, n_datasets) before the first batch and after each.
        fit_model: fit this model instead of `model` to the data simulated from `model` (a
            deliberately wrong model must come out miscalibrated).
        **options: fields of `hj.StudySettings`: the NUTS settings of `hj.sample` (chains 4,
            warmup 500, draws 500, sampler, init, ...: `hj.FitSettings`), `batch_size` (16
            datasets per batch: one compiled program, one stored file) and `max_rank` (99:
            the most thinned draws each rank is taken among; the table's `max_rank` holds the
            number used).

    Returns:
        The study table, dims (dataset, variable): `rank`, `max_rank`, `simulated_value`,
        `mean`, `sd`, `median`, `q5`, `q95`, `z_score`, `contraction` (1 - posterior variance /
        prior variance, the latter over 4000 prior draws), `covered_50/80/95` (as in the R
        package SBC) and per-dataset `divergences`, `treedepth_hits`, `max_rhat`,
        `min_ess_bulk`, `min_ess_tail`, `init_failures`; `attrs["rhat_limit"]` is the
        escalation's `max_rhat`, by which reports judge R-hat. `hj.uniformity_test(table)`
        tests it.

    Example:
        >>> model, design = hj.catalog.eight_schools()
        >>> table = hj.sbc(model, design, n_datasets=8, key=0, chains=2, warmup=100, draws=50)
        >>> table.sizes["dataset"], table["variable"].values.tolist()[:3]
        (8, ['theta_sd', 'mu', 'theta[0]'])
        >>> bool(hj.uniformity_test(table)["rejected"].any())  # the ranks look uniform
        False
    """
    settings = validated(StudySettings, "hj.sbc", settings, **options)
    n_datasets = count(n_datasets, "n_datasets", "hj.sbc")
    return run_study(model, design, n_datasets=n_datasets, key=as_key(key), settings=settings,
                     directory=directory, shard=shard, on_batch=on_batch, fit_model=fit_model,
                     labels={"study": "sbc"})
