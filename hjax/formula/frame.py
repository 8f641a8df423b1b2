"""A formula's data: columns by name, checked (no missing or infinite values, no unknown
column or function) before `formulae` builds the design matrices from them.

Example:
    >>> as_frame("y ~ x", {"y": [1.0, 2.0], "x": [0.0, 1.0]}).shape
    (2, 2)
"""

from __future__ import annotations

from collections.abc import Mapping

import formulae
import numpy as np
import pandas as pd
from formulae.transforms import TRANSFORMS

from hjax.errors import DataError, ModelError

__all__ = ["as_frame", "check_columns", "design_matrices", "refuse_bad_rows",
           "refuse_one_level_categoricals", "response_values", "variables"]


def as_frame(text: str, data) -> pd.DataFrame:
    """`data` (a dict of columns or a DataFrame) as a DataFrame indexed 0..n-1."""
    if not isinstance(data, pd.DataFrame | Mapping):
        raise DataError(f"formula '{text}' takes its data as columns by name (a dict of "
                        f"arrays or a pandas DataFrame); got a {type(data).__name__}. Rows as "
                        "a list of dicts: pd.DataFrame(rows).")
    try:
        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(dict(data))
    except ValueError as error:  # columns of different lengths, or only scalars
        raise DataError(f"the data of formula '{text}' are not columns of one length: "
                        f"{error}.") from None
    return frame.reset_index(drop=True)


def _bad_rows(values) -> np.ndarray:
    """Missing or infinite values: no row of a formula's data may be either."""
    bad = pd.isna(values)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        bad = bad | ~np.isfinite(np.asarray(values, dtype=float))
    return np.asarray(bad)


def refuse_bad_rows(where: str, values) -> None:
    """A `DataError` naming `where` and the rows if any value is missing or infinite."""
    bad = _bad_rows(values)
    if bad.any():
        raise DataError(f"{where} has {int(bad.sum())} missing or infinite values at rows "
                        f"{np.flatnonzero(bad)[:5].tolist()}; drop or impute those rows first: "
                        "none is dropped silently.")


def check_columns(text: str, frame: pd.DataFrame, names: set[str]) -> None:
    """The columns `names` that formula `text` reads are in `frame`, with no bad rows."""
    missing = sorted(n for n in names if n not in frame.columns)
    if missing:
        raise DataError(f"formula '{text}' names {missing}, which the data do not have; they "
                        f"have {sorted(frame.columns)}.")
    for name in sorted(names):
        refuse_bad_rows(f"data['{name}'] (in formula '{text}')", frame[name])


def design_matrices(text: str, frame: pd.DataFrame, whole: str):
    """formulae's design matrices of `text`, an unknown function named as the user wrote it
    (in `whole`)."""
    try:
        return formulae.design_matrices(text, frame)
    except KeyError as error:  # formulae looks a call's function up by name
        raise ModelError(
            f"formula '{whole}' calls {error.args[0]}(), which formulas do not know; they "
            f"know {sorted(TRANSFORMS)} and NumPy's functions as np.log(x). Compute other "
            "transforms as a column of the data.") from None


def variables(text: str) -> set[str]:
    """The data columns a right-hand side reads, as formulae reads them."""
    names = set()
    try:
        description = formulae.model_description(text)
    except Exception as error:  # noqa: BLE001 - formulae raises many kinds for bad syntax
        raise ModelError(f"formula '{text}' does not parse: {error}") from None
    for term in description.terms:
        names |= set(getattr(term, "var_names", set()) or set())
    return names


def refuse_one_level_categoricals(text: str, design) -> None:
    """A `DataError` for a categorical predictor with a single level (no contrast)."""
    for name, term in design.common.terms.items():
        if term.kind in ("categoric", "interaction") and not term.labels:
            raise DataError(f"formula '{text}': '{name}' has a single level, so it cannot be a "
                            "predictor; drop it from the formula.")


def response_values(spec: str, frame: pd.DataFrame, response: str) -> np.ndarray | None:
    """The response column as floats, checked; None for a design without it."""
    if response and not response.isidentifier() and response not in frame.columns:
        raise ModelError(f"formula '{spec}': the response '{response}' is not a column name; "
                         "transform it as a column of the data first.")
    if not response or response not in frame.columns:
        return None
    refuse_bad_rows(f"data['{response}'] (the response of formula '{spec.strip()}')",
                    frame[response])
    return frame[response].to_numpy(dtype=float)
