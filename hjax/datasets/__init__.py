"""Real data shipped with hjax, as the columns a model reads (0-based group indices).

From posteriordb (BSD-3-Clause, Copyright Stan Developers): the JSON files beside this module
are posteriordb's data files as published (1-based indices, as in Stan).

Example:
    >>> schools = hj.datasets.eight_schools()
    >>> sorted(schools), schools["y"][:3].tolist()
    (['school', 'sigma', 'y'], [28.0, 8.0, -3.0])
"""

from __future__ import annotations

import json
from importlib import resources

import numpy as np

from hjax.errors import DataError

__all__ = ["eight_schools", "path", "radon"]


def path(name: str):
    """The shipped file `name` (e.g. "eight_schools.json"), for tools that read files
    (`hjax fit --data`).

    Example:
        >>> hj.datasets.path("eight_schools.json").name
        'eight_schools.json'
    """
    found = resources.files(__name__) / name
    if not found.is_file():
        shipped = sorted(f.name for f in resources.files(__name__).iterdir()
                         if f.name.endswith(".json"))
        raise DataError(f"No shipped data file {name!r}; hjax ships {shipped}.")
    return found


def _read(name: str) -> dict:
    return json.loads(path(name).read_text())


def eight_schools() -> dict[str, np.ndarray]:
    """Rubin's eight schools: each school's estimated coaching effect `y` and its known
    standard error `sigma`, `school` 0..7.

    Example:
        >>> hj.datasets.eight_schools()["sigma"].tolist()
        [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]
    """
    raw = _read("eight_schools.json")
    return {"y": np.asarray(raw["y"], float), "sigma": np.asarray(raw["sigma"], float),
            "school": np.arange(raw["J"])}


def radon() -> dict[str, np.ndarray]:
    """Minnesota radon: 919 homes in 85 counties. `log_radon`, `floor` (0: basement, 1: first
    floor), the county's `log_uppm` (soil uranium, given per home) and `county` 0..84.

    Example:
        >>> radon = hj.datasets.radon()
        >>> radon["log_radon"].shape, int(radon["county"].max()) + 1
        ((919,), 85)
    """
    raw = _read("radon_mn.json")
    return {"log_radon": np.asarray(raw["log_radon"], float),
            "floor": np.asarray(raw["floor_measure"], float),
            "log_uppm": np.asarray(raw["log_uppm"], float),
            "county": np.asarray(raw["county_idx"]) - 1}
