"""The batch runner behind SBC and recovery studies: simulate, fit, score, store, resume.

A study of N datasets runs in batches of `batch_size`. Dataset i is simulated with
`fold_in(simulation_key, i)` and fitted with `fold_in(fit_key, i)`, so its result does not depend
on the batch it ran in (bit for bit with the same `batch_size`; see `hj.sample` for others).
Each finished batch is written to its own netCDF file (written to a temporary name, then
renamed: a killed run never leaves a half-written batch). Re-running the same study in the same
directory skips the batches already on disk, so an interrupted run ends with exactly the
results of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from hjax.inference.diagnostics import diagnose
from hjax.inference.sample import sample
from hjax.studies.ranks import sbc_ranks


class StudySettings(NamedTuple):
    """How each dataset is fitted and how the study is cut into batches."""

    chains: int = 4
    warmup: int = 500
    draws: int = 500
    batch_size: int = 16
    target_accept: float = 0.8
    max_rank: int = 99
    seed: int = 0
    init: str | None = None
    sampler: str = "nuts"
    lanes: int | None = None


def truths_dataset(model, truths: Mapping[str, np.ndarray], indices: np.ndarray) -> xr.Dataset:
    """Simulated parameter values as a Dataset with dims (dataset, *param dims)."""
    coords = model.coords
    variables = {}
    for name, dims in model.param_dims.items():
        variables[name] = xr.DataArray(
            np.asarray(truths[name]), dims=("dataset", *dims),
            coords={d: list(coords[d]) for d in dims},
        )
    return xr.Dataset(variables, coords={"dataset": indices})


def _fingerprint(model, fit_model, design, n_datasets, settings, given, extra) -> dict:
    """What must match for stored batches to be reused."""
    design_shapes = {k: list(np.shape(v)) for k, v in sorted(design.items())}
    return {
        "model": str(model), "fit_model": str(fit_model), "design": design_shapes,
        "n_datasets": n_datasets, "extra": extra,
        "settings": settings._asdict(),
        "design_digest": hashlib.sha256(b"".join(
            np.asarray(v).tobytes() for _, v in sorted(design.items()))).hexdigest(),
        "given": sorted(given or {}),
    }


def _batch_path(directory: Path, start: int, stop: int) -> Path:
    return directory / f"batch-{start:06d}-{stop:06d}.nc"


def _prepare_directory(directory: Path, fingerprint: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    manifest = directory / "study.json"
    if manifest.exists():
        stored = json.loads(manifest.read_text())
        if stored != json.loads(json.dumps(fingerprint)):
            raise ValueError(
                f"{directory} holds results of a different study (model, design or settings "
                "differ). Use a new output directory, or delete this one to start over."
            )
    else:
        manifest.write_text(json.dumps(fingerprint, indent=1))


def _write_atomic(table: xr.Dataset, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    table.to_netcdf(tmp)
    os.replace(tmp, path)


def run_study(
    model,
    design: Mapping,
    *,
    n_datasets: int,
    key,
    settings: StudySettings | None = None,
    given: Mapping[str, np.ndarray] | None = None,
    directory: str | os.PathLike | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    fit_model=None,
    extra: Callable[[xr.DataTree, dict, np.ndarray], xr.Dataset] | None = None,
) -> xr.Dataset:
    """Simulate, fit and score `n_datasets` datasets in batches; see `hj.sbc` / `hj.recover`.

    Args:
        fit_model: the model fitted to the simulated data, if not `model` itself (to check that
            SBC flags a deliberately wrong model); it must report the same parameters.
        extra: extra(fit, data, dataset_indices) -> per-dataset variables (dim `dataset`)
            merged into the table (e.g. observed group means for shrinkage).
        given: parameter values held fixed per dataset (arrays with a leading dataset axis);
            the rest are drawn from the prior.
        directory: where batches are stored and resumed from; None keeps everything in memory.
        on_batch: called as on_batch(datasets_done, n_datasets) before the first batch and
            after each (progress bars, interruption).

    Returns:
        The study table: dims (dataset, variable), SBC columns and per-dataset diagnostics.
    """
    settings = settings or StudySettings()
    fit_model = model if fit_model is None else fit_model
    if set(fit_model.param_dims) != set(model.param_dims):
        raise ValueError(
            f"fit_model reports {sorted(fit_model.param_dims)} but the simulating model reports "
            f"{sorted(model.param_dims)}; SBC compares the same parameters."
        )
    design = model.prepare(design, observed=False)
    width = min(settings.batch_size, n_datasets)
    sim_key, fit_key = jax.random.split(key)
    fold = jax.vmap(jax.random.fold_in, in_axes=(None, 0))
    given = {k: np.asarray(v) for k, v in (given or {}).items()}
    simulate = jax.jit(jax.vmap(model.simulate, in_axes=(0, None, 0)))
    directory = None if directory is None else Path(directory)
    if directory is not None:
        extra_name = None if extra is None else getattr(extra, "__qualname__", repr(extra))
        _prepare_directory(directory, _fingerprint(model, fit_model, design, n_datasets,
                                                   settings, given, extra_name))

    tables = []
    if on_batch is not None:
        on_batch(0, n_datasets)
    for start in range(0, n_datasets, width):
        stop = min(start + width, n_datasets)
        path = None if directory is None else _batch_path(directory, start, stop)
        if path is not None and path.exists():
            tables.append(xr.load_dataset(path))
            continue
        indices = np.arange(start, stop)
        batch_given = {k: jnp.asarray(v[indices]) for k, v in given.items()}
        truths, data = simulate(fold(sim_key, jnp.asarray(indices)), design, batch_given)
        # A batch is one chunk (spread over the devices); a short last batch is padded to the
        # full width, so every batch runs the same compiled program.
        fit = sample(fit_model, data, key=fit_key, first_dataset=start, chains=settings.chains,
                     warmup=settings.warmup, draws=settings.draws, batch_size=width,
                     target_accept=settings.target_accept, init=settings.init,
                     sampler=settings.sampler, lanes=settings.lanes, progress=False, warn=False)
        table = score_batch(model, fit, truths, indices, settings)
        if extra is not None:
            table = table.merge(extra(fit, data, indices))
        if path is not None:
            _write_atomic(table, path)
        tables.append(table)
        if on_batch is not None:
            on_batch(stop, n_datasets)
    return combine(tables, n_datasets)


def score_batch(model, fit, truths, indices, settings) -> xr.Dataset:
    """SBC ranks and summaries per (dataset, variable), plus per-dataset diagnostics."""
    posterior = fit.posterior.to_dataset().assign_coords(dataset=indices)
    truth = truths_dataset(model, {k: np.asarray(v) for k, v in truths.items()}, indices)
    # Tie-breaking draws depend on the batch's first dataset, never on batch order.
    rng = np.random.default_rng([settings.seed, int(indices[0])])
    table = sbc_ranks(posterior, truth, max_rank=settings.max_rank, seed=rng)
    diagnostics = diagnose(fit).assign_coords(dataset=indices)
    return table.merge(diagnostics.reset_coords(drop=True))


def combine(tables: list[xr.Dataset], n_datasets: int) -> xr.Dataset:
    """Concatenate batch tables, checking every dataset is there exactly once."""
    table = xr.concat(tables, dim="dataset").sortby("dataset")
    got = table["dataset"].values
    if got.size != n_datasets or np.any(got != np.arange(n_datasets)):
        raise RuntimeError(
            f"Study results cover datasets {got.min()}..{got.max()} ({got.size} rows) instead of "
            f"0..{n_datasets - 1} once each; the output directory is corrupt: start a new one."
        )
    return table
