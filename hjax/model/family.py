"""Formula families: a likelihood as formulas use it (bambi's `Family`), and their registry.

A family names the slot the main formula predicts, the links of its other slots, their
default priors and how to build the likelihood from the slots' terms. It lives next to its
likelihood (`hjax.model.families`, `hjax.cognitive.families`), which registers it; `hj.formula`
looks families up here by name, so a user's family is used as the built-in ones are.

Example:
    >>> poisson = get_family("poisson")
    >>> poisson.main, "poisson" in registered_families()
    ('log_rate', True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import NamedTuple

from hjax.errors import ModelError
from hjax.model.priors import AbstractPrior

__all__ = ["Family", "Moments", "get_family", "register_family", "registered_families"]


class Moments(NamedTuple):
    """The response's mean and sd that default priors are scaled by (0 and 1 for a family
    not on the data's scale, or for a design without the response)."""

    mean: float
    sd: float


@dataclasses.dataclass(frozen=True)
class Family:
    """A likelihood as formulas use it.

    Args:
        name: the name `hj.formula(..., family=name)` takes.
        main: the slot the main formula predicts (on its own scale: no link).
        build: `build(slots, response, options)` -> the likelihood, from the slots' terms (by
            slot name), the response's column name and the family's options (by name).
        links: each other slot the formula takes, with its link: a term function such as
            `hj.exp` (positive) or `hj.inv_logit` (in (0, 1)).
        required: slots that are "1" (one intercept) when the formula gives none.
        options: keywords that name data columns rather than predict a slot, with their
            defaults (None: the user must give it), e.g. the Binomial's trials.
        priors: default priors by the names formulas give parameters (`Intercept`,
            `sigma_Intercept`, or a slot in `scalars`), fixed or a function of the response's
            `Moments`; a parameter not named has the formula's default: intercept ~
            Normal(mean y, 2.5 sd y), slope ~ Normal(0, 2.5 sd y / sd x).
        scalars: slots that, given as "1", are one parameter named after the slot, by default
            ~ HalfStudentT(4, sd y) (the Gaussian's sigma), rather than the link of an
            intercept.
        data_scale: whether default priors are scaled by the response's mean and sd.
        group_sd: group-level sds ~ HalfNormal(group_sd * sd y).

    Example:
        >>> family = hj.Family("counts", main="log_rate", links={"dispersion": hj.exp},
        ...                    required=("dispersion",), options={"exposure": "days"},
        ...                    build=lambda slots, response, options: None)
        >>> family.arguments({"dispersion": "1 + (1 | site)"})
        ({'dispersion': '1 + (1 | site)'}, {'exposure': 'days'})
    """

    name: str
    main: str
    build: Callable[[dict, str, dict], object]
    links: Mapping[str, Callable] = dataclasses.field(default_factory=dict)
    required: tuple[str, ...] = ()
    options: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    priors: Mapping[str, AbstractPrior] | Callable[[Moments], Mapping[str, AbstractPrior]] = (
        dataclasses.field(default_factory=dict))
    scalars: tuple[str, ...] = ()
    data_scale: bool = False
    group_sd: float = 2.5

    def __post_init__(self):
        where = f"Family '{self.name}'"
        if not (isinstance(self.name, str) and self.name and isinstance(self.main, str)):
            raise ModelError(f"{where}: `name` and `main` must be strings; got {self.name!r} "
                             f"and {self.main!r}.")
        slots = {self.main, *self.links}
        if self.main in self.links:
            raise ModelError(f"{where}: the main slot '{self.main}' takes no link; links are "
                             "for the other slots.")
        stray = sorted({*self.required, *self.scalars} - set(self.links))
        if stray:
            raise ModelError(f"{where}: required or scalar slots {stray} are not among the "
                             f"slots of its links, {sorted(self.links)}; add their links.")
        both = sorted(set(self.options) & slots)
        if both:
            raise ModelError(f"{where}: {both} are both slots and options; rename the option.")

    def default_priors(self, moments: Moments) -> Mapping[str, AbstractPrior]:
        """Its default priors by parameter name, for a response with these moments."""
        return self.priors(moments) if callable(self.priors) else self.priors

    def arguments(self, given: Mapping) -> tuple[dict, dict]:
        """`hj.formula`'s keywords beside the main formula, as (slot values, options), with
        the required slots and the options' defaults filled in."""
        unknown = sorted(set(given) - set(self.links) - set(self.options))
        if unknown:
            raise ModelError(f"family '{self.name}' has no parameters {unknown}; it takes "
                             f"{sorted(self.links)} beside the main formula"
                             + (f", and options {sorted(self.options)}." if self.options
                                else "."))
        options = {k: given.get(k, default) for k, default in self.options.items()}
        for key, value in options.items():
            if value is None:
                raise ModelError(f"family='{self.name}' needs {key}='<column of {key}>'.")
        slots = {k: "1" for k in self.required} | {k: v for k, v in given.items()
                                                   if k in self.links}
        return slots, options


_REGISTRY: dict[str, Family] = {}


def register_family(family: Family, *, replace: bool = False) -> Family:
    """Make `family` known to `hj.formula(..., family=family.name)`.

    Registering the same family again does nothing; another family under a registered name is
    refused unless `replace=True`.

    Example:
        >>> hj.register_family(get_family("poisson")).name
        'poisson'
    """
    if not isinstance(family, Family):
        raise ModelError(f"register_family takes an hj.Family; got {type(family).__name__}.")
    known = _REGISTRY.get(family.name)
    if known is not None and known != family and not replace:
        raise ModelError(f"a family '{family.name}' is registered already; pass replace=True "
                         "to replace it, or give yours another name.")
    _REGISTRY[family.name] = family
    return family


def get_family(family: str | Family) -> Family:
    """The family registered under a name (a `Family` is itself)."""
    if isinstance(family, Family):
        return family
    if family not in _REGISTRY:
        raise ModelError(f"Unknown family '{family}'; the registered ones are "
                         f"{registered_families()}. Register yours with "
                         "hj.register_family(hj.Family(...)).")
    return _REGISTRY[family]


def registered_families() -> tuple[str, ...]:
    """The names of the registered families, sorted."""
    return tuple(sorted(_REGISTRY))
