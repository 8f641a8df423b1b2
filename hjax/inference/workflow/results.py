"""Fit results as an ArviZ 1.x DataTree, named by the model's parameters, dims and coords."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from hjax.model.data import OBSERVED_ROWS
from hjax.model.level import AbstractLevel
from hjax.model.terms import OBS

__all__ = ["STAT_NAMES", "parameterization", "starts_dataset", "to_datatree"]

STAT_NAMES = ("lp", "diverging", "tree_depth", "n_steps", "energy", "acceptance_rate",
              "step_size", "nan_log_density")


def _lead(batched: bool) -> tuple[str, ...]:
    return ("dataset", "chain", "draw") if batched else ("chain", "draw")


def _draws_dataset(values: Mapping[str, np.ndarray], dims: Mapping[str, tuple], coords,
                   batched: bool, attrs) -> xr.Dataset:
    lead = _lead(batched)
    variables, used = {}, {}
    for name, array in values.items():
        array = np.asarray(array)
        if not batched:
            array = array[0]
        extra = tuple(dims.get(name, ()))
        if len(extra) != array.ndim - len(lead):
            extra = tuple(f"{name}_dim_{i}" for i in range(array.ndim - len(lead)))
        variables[name] = (lead + extra, array)
        used |= {d: coords[d] for d in extra if d in coords}
    shape = next(iter(variables.values()))[1].shape
    base = {"chain": np.arange(shape[lead.index("chain")]),
            "draw": np.arange(shape[lead.index("draw")])}
    if batched:
        base["dataset"] = np.arange(shape[0])
    return xr.Dataset(variables, coords={**base, **{d: list(v) for d, v in used.items()}},
                      attrs=dict(attrs))


def _data_dataset(model, data: Mapping[str, np.ndarray], keys, batched: bool) -> xr.Dataset:
    observed_keys = set(model.likelihood.observed_keys().values())
    contexts = {need.key: need.context for need in model.needs()}
    dims = {key: contexts.get(key, OBS) for key in keys}
    coords = {dim: list(model.coords[dim]) for dim in dims.values() if dim != OBS}
    variables = {}
    for key, dim in dims.items():
        array = np.asarray(data[key])
        if key in observed_keys and OBSERVED_ROWS in data:  # missing outcomes shown as NaN
            array = np.where(np.asarray(data[OBSERVED_ROWS]) > 0, array, np.nan)
        if not batched:
            array = array[0]
        # An index column named like its group (data["item"] next to per-item data) would
        # clash with that dim's coordinate: it is stored as "<key>_index" then.
        name = f"{key}_index" if key in coords else key
        variables[name] = ((("dataset",) if batched else ()) + (dim,), array)
    return xr.Dataset(variables, coords=coords)


def parameterization(model) -> dict[str, str]:
    """The model's levels by parameterization, as a fit's attrs record them (comma-separated
    names), so that diagnostics advise what applies to the model fitted.

    Example:
        >>> parameterization(model)
        {'levels_centered': '', 'levels_non_centered': 'theta'}
    """
    found = [term for term in model.terms() if isinstance(term, AbstractLevel)]
    return {"levels_centered": ", ".join(t.name for t in found if t.centered),
            "levels_non_centered": ", ".join(t.name for t in found if not t.centered)}


def starts_dataset(model, starts: Mapping[str, np.ndarray], batched: bool) -> xr.Dataset:
    """Each chain's starting point (arrays lead with dataset, chain), named and with dims as
    in the posterior.

    Example:
        >>> starts = {"mu": np.zeros((1, 2)), "theta": np.zeros((1, 2, 8))}
        >>> starts_dataset(model, starts, batched=False)["theta"].dims
        ('chain', 'school')
    """
    with_draw = {name: np.asarray(values)[:, :, None] for name, values in starts.items()}
    return _draws_dataset(with_draw, model.param_dims, model.coords, batched,
                          {}).isel(draw=0, drop=True)


def to_datatree(
    model,
    draws: Mapping[str, np.ndarray],
    stats: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    batched: bool,
    attrs: Mapping | None = None,
    warmup_draws: Mapping[str, np.ndarray] | None = None,
    warmup_stats: Mapping[str, np.ndarray] | None = None,
) -> xr.DataTree:
    """Assemble posterior, sample_stats, observed_data and constant_data groups.

    Arrays lead with (dataset, chain, draw); without `batched` the dataset axis (of length 1)
    is dropped. Parameter dims and coords come from `model.param_dims` and `model.coords`.

    Example:
        >>> one = {k: np.asarray(v)[None] for k, v in model.prepare(data).items()}  # 1 dataset
        >>> draws = {"mu": np.zeros((1, 2, 50)), "theta": np.zeros((1, 2, 50, 8))}
        >>> tree = to_datatree(model, draws, {"lp": np.zeros((1, 2, 50))}, one, batched=False)
        >>> tree.posterior["theta"].dims
        ('chain', 'draw', 'school')
    """
    attrs = dict(attrs or {}) | parameterization(model)
    dims, coords = model.param_dims, model.coords
    observed = list(model.likelihood.observed_keys().values())
    groups = {
        "posterior": _draws_dataset(draws, dims, coords, batched, attrs),
        "sample_stats": _draws_dataset(stats, {}, coords, batched, attrs),
        "observed_data": _data_dataset(model, data, observed, batched),
        "constant_data": _data_dataset(model, data, [k for k in data if k not in observed],
                                       batched),
    }
    if warmup_draws is not None:
        groups["warmup_posterior"] = _draws_dataset(warmup_draws, dims, coords, batched, attrs)
        groups["warmup_sample_stats"] = _draws_dataset(warmup_stats, {}, coords, batched, attrs)
    return xr.DataTree.from_dict(groups)
