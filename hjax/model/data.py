"""Host-side data checks and conversion, run once before anything is compiled.

JAX clamps out-of-range gathers and propagates NaN silently, so every check a user's data can
fail is made here, on numpy arrays, with an error that names the column and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import jax.numpy as jnp
import numpy as np

from hjax.errors import DataError
from hjax.model import constraints as C
from hjax.model.preview import preview
from hjax.model.terms import OBS, Need


class Model(Protocol):
    """What these checks read of a `hj.Model` (a protocol: the model imports this module)."""

    likelihood: Any
    group_coords: tuple[tuple[str, tuple], ...]
    sizes: Mapping[str, int]
    missing: bool

    def needs(self) -> list[Need]: ...


def encode(raw: Mapping, groups) -> tuple[dict, dict[str, tuple]]:
    """Factorize group label columns into 0-based indices, keeping the labels as coords.

    Labels are sorted, so the same labels always get the same indices.

    Example:
        >>> raw = {"y": np.array([0.5, 1.2, 0.3]), "participant": ["p3", "p1", "p3"]}
        >>> data, coords = hj.encode(raw, ["participant"])
        >>> data["participant"], coords
        (array([1, 0, 1], dtype=int32), {'participant': ('p1', 'p3')})
    """
    data, coords = dict(raw), {}
    for group in groups:
        if group not in raw:
            raise DataError(f"encode: no column '{group}' in the data; got {sorted(raw)}.")
        _check_labels(group, raw[group])
        labels, index = np.unique(np.asarray(raw[group]), return_inverse=True)
        data[group] = index.astype(np.int32)
        coords[group] = tuple(labels.tolist())
    return data, coords


def _check_labels(group: str, column) -> None:
    """Refuse missing labels (None, NaN), which would become a group of their own, and labels
    of mixed kinds (1 and "1"), which numpy turns into strings and may merge."""
    values = list(np.asarray(column, dtype=object).ravel())
    missing = [i for i, v in enumerate(values)
               if v is None or (isinstance(v, float | np.floating) and np.isnan(v))]
    if missing:
        raise DataError(f"encode: data['{group}'] has missing labels (None or NaN) at rows "
                        f"{missing[:5]}: each row needs its group; drop those rows or give "
                        "them a label.")
    kinds = {"text" if isinstance(v, str | np.str_) else "number" for v in values}
    if len(kinds) > 1:
        text = next(i for i, v in enumerate(values) if isinstance(v, str | np.str_))
        number = next(i for i, v in enumerate(values) if not isinstance(v, str | np.str_))
        raise DataError(f"encode: data['{group}'] mixes text and number labels (row {text}: "
                        f"'{values[text]}', row {number}: {values[number]}); make them one "
                        "kind, e.g. all strings.")


def _as_index(model: Model, group: str, key: str, values) -> np.ndarray:
    """Map labels to indices via coords, or check integer indices are in range."""
    values = np.asarray(values)
    labels = dict(model.group_coords)[group]
    if values.dtype.kind in "USO":
        lookup = {label: i for i, label in enumerate(labels)}
        unknown = sorted({v for v in values.tolist() if v not in lookup}, key=str)
        if unknown:
            raise DataError(
                f"data['{key}'] has labels not in coords['{group}']: {preview(unknown)}. Add them "
                "to coords or build coords from the data with hj.encode."
            )
        return np.array([lookup[v] for v in values.tolist()], dtype=np.int32)
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise DataError(f"data['{key}'] indexes group '{group}' but has non-integer values.")
    elif values.dtype.kind not in "iub":
        raise DataError(f"data['{key}'] indexes group '{group}'; got dtype {values.dtype}.")
    size = len(labels)
    bad = (values < 0) | (values >= size)
    if np.any(bad):
        raise DataError(
            f"data['{key}'] has indices outside 0..{size - 1} for group '{group}' ({size} groups) "
            f"at rows {preview(np.flatnonzero(bad))}, values {preview(values[bad])}. Indices "
            "are 0-based (1-based Stan data: subtract 1); hj.encode factorizes raw labels."
        )
    return values.astype(np.int32)


def _nesting_map(model: Model, need: Need, raw: Mapping) -> np.ndarray:
    """parent index of each child group, from the observation-level columns of both."""
    child, parent = need.context, need.index_of
    if need.key in raw:
        return _as_index(model, parent, need.key, raw[need.key])
    if child not in raw or parent not in raw:
        raise DataError(
            f"{need.user} needs data['{need.key}'] (the '{parent}' of each '{child}'), or the "
            f"observation-level columns '{child}' and '{parent}' to build it from."
        )
    c = _as_index(model, child, child, raw[child])
    q = _as_index(model, parent, parent, raw[parent])
    size = model.sizes[child]
    mapping = np.full(size, -1, dtype=np.int64)
    for ci, qi in set(zip(c.tolist(), q.tolist(), strict=True)):
        if mapping[ci] not in (-1, qi):
            label = dict(model.group_coords)[child][ci]
            raise DataError(
                f"'{child}' {preview([label])[1:-1]} appears in more than one '{parent}', so it "
                "is not nested. "
                f"Give each '{child}' a label unique across '{parent}' (e.g. 'school1/class2')."
            )
        mapping[ci] = qi
    return mapping


def _check_finite(key: str, values: np.ndarray, support: C.Support, user: str) -> None:
    # Censoring limits may be infinite (no limit on that row); nothing may be NaN.
    bad = np.isnan(values) if isinstance(support, C.Limits) else ~np.isfinite(values)
    if np.any(bad):
        raise DataError(
            f"data['{key}'] has {bad.sum()} NaN/inf values at rows {preview(np.flatnonzero(bad))}"
            f" (used by {user}). Drop or impute those rows before fitting; missing outcomes can "
            "be declared instead: hj.Model(..., missing=True)."
        )
    outside = ~support.check(values)
    if np.any(outside):
        raise DataError(
            f"data['{key}'] must be {support} for {user}; rows {preview(np.flatnonzero(outside))}"
            f" have {preview(values[outside])}."
        )


def _check_lengths(model: Model, out: dict, needs: list[Need]) -> int | None:
    lengths = {}
    for need in needs:
        n = len(out[need.key])
        if need.context == OBS:
            lengths[need.key] = n
        elif n != model.sizes[need.context]:
            raise DataError(
                f"data['{need.key}'] has {n} values but group '{need.context}' has "
                f"{model.sizes[need.context]}: it needs one value per {need.context}, in coords "
                "order."
            )
    if len(set(lengths.values())) > 1:
        raise DataError(
            "Per-observation columns differ in length: "
            + ", ".join(f"'{k}': {n}" for k, n in lengths.items())
            + ". Every per-observation column needs one value per row."
        )
    return next(iter(lengths.values()), None)


def _check_groups_used(model: Model, out: dict, needs: list[Need]) -> None:
    for need in needs:
        if need.index_of is None:
            continue
        counts = np.bincount(out[need.key], minlength=model.sizes[need.index_of])
        if np.any(counts == 0):
            labels = np.array(dict(model.group_coords)[need.index_of], dtype=object)
            what = "observations" if need.context == OBS else f"'{need.context}' in it"
            raise DataError(
                f"Group '{need.index_of}' has no {what} for {int((counts == 0).sum())} of its "
                f"{len(counts)} labels: {preview(labels[counts == 0])}. An empty group is only "
                "its prior; drop unused labels from coords (hj.encode does) or add their data."
            )


def slot_key(key: str) -> str:
    """The column that gives each row of an imputed column its missing value's index (the
    number of missing values for an observed row)."""
    return f"{key}_missing_slot"


def _imputed_slots(model: Model, need: Need, values: np.ndarray, slots=None):
    """An imputed column's NaN rows (or those `slots`, from an earlier `prepare`, marks):
    each one's index among the missing values, checked against the size of their group; NaN
    replaced by 0 (the row takes its parameter)."""
    size = model.sizes[need.missing]
    missing = np.isnan(values)
    if slots is not None:
        missing |= np.asarray(slots) < size
    if missing.sum() != size:
        raise DataError(
            f"data['{need.key}'] has {int(missing.sum())} missing values, but {need.user} "
            f"imputes {size} (coords['{need.missing}']); give coords['{need.missing}'] = "
            f"{int(missing.sum())}.")
    slots = np.where(missing, np.cumsum(missing) - 1, size).astype(np.int32)
    return np.where(missing, 0.0, values), slots


OBSERVED_ROWS = "observed_rows"  # with `missing=True`: 1 where a row's outcome was observed


def _missing_outcomes(model: Model, raw: Mapping) -> Mapping:
    """With `missing=True`, rows whose observed columns hold NaN are marked in
    `raw[OBSERVED_ROWS]` and given a placeholder: the column's first observed value, where the
    likelihood and its gradients are finite (the row is masked out of the density)."""
    keys = [k for k in model.likelihood.observed_keys().values() if k in raw]
    if not model.missing or not keys:
        return raw
    columns = {k: np.asarray(raw[k], dtype=np.float64) for k in keys}
    missing = np.any([np.isnan(v) for v in columns.values()], axis=0)
    if OBSERVED_ROWS in raw:  # prepared before (e.g. a fit's data): its mask stands
        missing |= np.asarray(raw[OBSERVED_ROWS]) == 0
    if missing.all():
        raise DataError(f"Every row's {keys} is missing: there is nothing to fit.")
    first = np.flatnonzero(~missing)[0]
    filled = {k: np.where(missing, v[first], v) for k, v in columns.items()}
    return {**raw, **filled, OBSERVED_ROWS: (~missing).astype(np.float64)}


def prepare_data(model: Model, raw: Mapping, *, observed: bool = True) -> dict:
    """See `Model.prepare`."""
    if not isinstance(raw, Mapping):
        raise DataError(f"Expected data as a mapping of column name to array; got {type(raw)}.")
    needs: dict[str, Need] = {}
    for need in model.needs():
        seen = needs.setdefault(need.key, need)
        if (seen.context, seen.index_of) != (need.context, need.index_of):
            raise DataError(
                f"data['{need.key}'] is read both per '{seen.context}' (by {seen.user}) and per "
                f"'{need.context}' (by {need.user}); use separate columns."
            )
    name = type(model.likelihood).__name__
    raw = _missing_outcomes(model, raw)
    if OBSERVED_ROWS in raw:
        needs[OBSERVED_ROWS] = Need(OBSERVED_ROWS, OBS, user="the rows observed (missing=True)")
    for key in model.likelihood.observed_keys().values():
        # In a design (observed=False) an observed column is optional: it only fixes the number
        # of observations of a model with no other per-observation column.
        if observed or key in raw:
            needs.setdefault(key, Need(key, OBS, user=f"{name} (observed)"))
    out = {}
    for key, need in needs.items():
        if need.context != OBS and need.index_of is not None:
            out[key] = _nesting_map(model, need, raw)
            continue
        if key not in raw:
            raise DataError(
                f"data has no '{key}', needed by {need.user}; it has {preview(sorted(raw))}."
            )
        values = np.asarray(raw[key])
        if values.ndim != 1:
            raise DataError(f"data['{key}'] must be 1-D; got shape {values.shape}.")
        if need.index_of is not None:
            out[key] = _as_index(model, need.index_of, key, values)
            continue
        if values.dtype.kind not in "iufb":
            raise DataError(f"data['{key}'] must be numeric; got dtype {values.dtype}.")
        values = values.astype(np.float64)
        if need.missing is not None:
            values, out[slot_key(key)] = _imputed_slots(model, need, values,
                                                        raw.get(slot_key(key)))
        _check_finite(key, values, need.support, need.user)
        if need.user.endswith("(observed)"):
            problem = model.likelihood.check_observed(key, values)
            if problem:
                raise DataError(f"data['{key}'] (observed) {problem}.")
        out[key] = values
    needs_list = list(needs.values())
    _check_lengths(model, out, needs_list)
    _check_groups_used(model, out, needs_list)
    problem = model.likelihood.check_columns(out)
    if problem:
        raise DataError(problem)
    return {
        key: jnp.asarray(v) if v.dtype.kind == "i" else jnp.asarray(v, dtype=jnp.result_type(float))
        for key, v in out.items()
    }


def n_observations(model: Model, data: Mapping) -> int:
    """Number of observations, from the per-observation arrays of prepared data."""
    for need in model.needs():
        if need.context == OBS and need.key in data:
            return data[need.key].shape[-1]
    for key in model.likelihood.observed_keys().values():
        if key in data:
            return data[key].shape[-1]
    raise DataError(
        "The design has no per-observation column, so the number of observations is unknown; "
        "add one (e.g. a group index or predictor column)."
    )
