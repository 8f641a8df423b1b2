"""The `AbstractTerm` protocol (`hj.Term`): a piece of a linear predictor that may own
parameters.

A model is a tree of terms under a likelihood. Each term owns some named parameters (their
shapes, supports and priors) and knows how to (a) add its prior log density, (b) draw its
parameters from the prior, (c) evaluate its contribution given all parameter values and the
data, and (d) say which data it needs. The model walks the tree; terms never see positions in
unconstrained space.
"""

import abc
import math
import numbers
import zlib
from dataclasses import dataclass
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from hjax.errors import ModelError
from hjax.model import constraints as C
from hjax.model.log1p_exp import log1p_exp

OBS = "obs"  # the context of per-observation values; other contexts are group names


class ParamSpec(NamedTuple):
    """A free parameter: constrained shape, support, dims (names of axes) and whether reported."""

    shape: tuple[int, ...]
    constraint: C.AbstractConstraint
    dims: tuple[str, ...]
    reported: bool = True
    prior: str = ""


@dataclass(frozen=True)
class Need:
    """A data array a term reads: its key, the context (OBS or a group) it has one value per,
    and what its values must be (`index` of a group, or a support)."""

    key: str
    context: str
    index_of: str | None = None
    support: C.AbstractSupport = C.real
    user: str = ""
    missing: str | None = None  # NaN allowed: one per member of this group (`Imputed`)


class AbstractTerm(eqx.Module):
    """A piece of a predictor: evaluated per observation, it may own parameters.

    Subclasses implement `__call__` and `__str__` and override the hooks they use; the defaults
    describe a term with no parameters, no data and real values.

    Example:
        >>> mu = hj.Fixed("b0") + hj.Level("u", "group")
        >>> type(mu).__name__, str(mu)
        ('Sum', 'b0 + u[group]')
    """

    def children(self) -> tuple["AbstractTerm", ...]:
        return ()

    def param_specs(self, sizes: dict[str, int]) -> dict[str, ParamSpec]:
        """Parameters this term owns (not its children's)."""
        return {}

    def log_prior(self, p: dict[str, Array], data: dict[str, Array]) -> Array:
        """Log prior density of this term's own parameters (constrained values)."""
        return jnp.zeros(())

    def hyperpriors(self, p: dict[str, Array]) -> dict[str, Array]:
        """Log density of each of this term's parameters that has a prior of its own (not a
        population's values): what power-scaling sensitivity scales."""
        return {}

    def sample_prior(self, key: PRNGKeyArray, data, sizes, given) -> dict[str, Array]:
        """Draw this term's and its children's parameters from the prior, except those in
        `given` (reported values held fixed, e.g. the truths of a recovery study)."""
        draws: dict[str, Array] = {}
        for child in self.children():
            draws |= child.sample_prior(key, data, sizes, given)
        return draws

    def derived(self, p, data, sizes) -> dict[str, Array]:
        """Named values computed from parameters, reported alongside them."""
        return {}

    def derived_dims(self, sizes) -> dict[str, tuple[str, ...]]:
        return {}

    @abc.abstractmethod
    def __call__(self, p: dict[str, Array], data: dict[str, Array]) -> Array:
        """The term's value per observation (or per group, inside a Level's `loc`)."""

    @abc.abstractmethod
    def __str__(self) -> str:
        """The term as the model's printout and error messages show it."""

    def needs(self, context: str) -> list[Need]:
        """Data this term (and its children) read when evaluated in `context`."""
        return [need for child in self.children() for need in child.needs(context)]

    def support(self) -> C.AbstractSupport:
        """Support of the term's value (used to check a likelihood parameter's slot)."""
        return C.real

    def has_intercept(self) -> bool:
        """Whether the term carries a free overall mean (for identification checks)."""
        return False

    def is_covariate(self) -> bool:
        """Whether the term is a predictor column (data, or imputed data): a coefficient times
        it is a slope, not an intercept."""
        return False

    def coords(self) -> dict[str, tuple]:
        """Labels of non-group dims this term introduces (e.g. predictor names)."""
        return {}

    # The algebra: sums, differences, negation, products and quotients of terms, numbers and
    # data columns. Each builds a term whose value is computed once per evaluation.
    def __add__(self, other: "AbstractTerm | float") -> "AbstractTerm":
        return Sum((self, as_term(other)))

    def __radd__(self, other: "AbstractTerm | float") -> "AbstractTerm":
        return Sum((as_term(other), self))

    def __sub__(self, other: "AbstractTerm | float") -> "AbstractTerm":
        return Sum((self, -as_term(other)))

    def __rsub__(self, other: "AbstractTerm | float") -> "AbstractTerm":
        return Sum((as_term(other), -self))

    def __neg__(self) -> "AbstractTerm":
        return Neg(self)

    def __mul__(self, other: "AbstractTerm | float") -> "AbstractTerm":
        return Product((self, as_term(other)))

    def __rmul__(self, other: "AbstractTerm | float") -> "AbstractTerm":
        return Product((as_term(other), self))

    def __truediv__(self, other: "AbstractTerm | float") -> "AbstractTerm":
        return Quotient(self, as_term(other))

    def __rtruediv__(self, other: "AbstractTerm | float") -> "AbstractTerm":
        return Quotient(as_term(other), self)


Term = AbstractTerm  # its name before the Abstract* convention, kept as an alias


def key_for(key: PRNGKeyArray, name: str) -> PRNGKeyArray:
    """A key for parameter `name` that does not depend on the order of the tree walk.

    So `key_for(key, "b0")` is the same key wherever `Fixed("b0")` sits in the model.
    """
    return jax.random.fold_in(key, zlib.crc32(name.encode()))


class Const(AbstractTerm):
    """A fixed number; a number given for a term becomes one.

    Example:
        >>> hj.Gaussian(mu=hj.Fixed("b0"), sigma=1.0).sigma
        Const(value=1.0)
    """

    value: float

    def __check_init__(self):
        if not math.isfinite(self.value):
            raise ModelError(f"A constant must be a finite number; got {self.value}.")

    def __call__(self, p, data):
        return jnp.asarray(self.value)

    def __str__(self):
        return f"{self.value:g}"


class Data(AbstractTerm):
    """A data column used as is (e.g. known measurement sds).

    Example:
        >>> print(hj.Gaussian(mu=hj.Fixed("b0"), sigma=hj.Data("sigma")))
        Gaussian likelihood on y
          mu = b0
          sigma = data[sigma]
    """

    key: str

    def __call__(self, p, data):
        return data[self.key]

    def needs(self, context):
        return [Need(self.key, context, user=f"Data('{self.key}')")]

    def support(self):
        return _DATA

    def is_covariate(self):
        return True

    def __str__(self):
        return f"data[{self.key}]"


class _DataSupport(C.AbstractSupport):
    """Support of data columns: checked against the slot's support when data arrive."""

    def check(self, values):
        return np.full(np.shape(values), True)

    def __str__(self):
        return "data"


_DATA = _DataSupport()


class AbstractSum(AbstractTerm):
    """Terms added into one predictor: the shared code of `Sum` and `Crossed`."""

    terms: eqx.AbstractVar[tuple[AbstractTerm, ...]]

    def children(self):
        return self.terms

    def __call__(self, p, data):
        return sum((t(p, data) for t in self.terms[1:]), self.terms[0](p, data))

    def has_intercept(self):
        return any(t.has_intercept() for t in self.terms)

    def __str__(self):
        parts = [str(self.terms[0])]
        for term in self.terms[1:]:
            parts.append(f"- {_grouped(term.term)}" if isinstance(term, Neg) else f"+ {term}")
        return " ".join(parts)


class Sum(AbstractSum):
    """Terms added into one predictor; at most one may carry an intercept (identification).

    Example:
        >>> mu = hj.Sum([hj.Fixed("b0"), hj.Level("u", "group")])
        >>> mu == hj.Fixed("b0") + hj.Level("u", "group")
        True
        >>> hj.Fixed("b0") + hj.Fixed("b1")
        Traceback (most recent call last):
        ...
        hjax.errors.ModelError: 'b0' and 'b1' each carry an intercept (a free overall mean), ...
    """

    terms: tuple[AbstractTerm, ...]

    def __init__(self, terms):
        flat = []
        for term in map(as_term, terms):
            # Nested sums flatten, so the intercept check below sees every addend.
            flat.extend(term.terms if type(term) is Sum else (term,))
        self.terms = tuple(flat)

    def __check_init__(self):
        if not self.terms:
            raise ModelError("Sum needs at least one term; got none.")
        carriers = [t for t in self.terms if t.has_intercept()]
        if len(carriers) > 1:
            names = " and ".join(f"'{t}'" for t in carriers)
            raise ModelError(
                f"{names} each carry an intercept (a free overall mean), so only their sum is "
                "identified. Keep one: e.g. a Fixed intercept plus zero-mean Levels (no `loc`)."
            )


def _grouped(term: AbstractTerm) -> str:
    """The term as a factor or a subtrahend prints it: in parentheses if it is a sum."""
    return f"({term})" if isinstance(term, AbstractSum | Neg) else str(term)


def _positive(term: AbstractTerm) -> bool:
    if isinstance(term, Const):
        return term.value > 0
    return C.positive.contains(term.support())


class Neg(AbstractTerm):
    """A term negated: `-b`, and `theta - b` is `theta + Neg(b)`.

    Example:
        >>> print(hj.Level("theta", "person") - hj.Level("b", "item", loc=hj.Fixed("mu_b")))
        theta[person] - b[item]
    """

    term: AbstractTerm

    def children(self):
        return (self.term,)

    def __call__(self, p, data):
        return -self.term(p, data)

    def has_intercept(self):
        return self.term.has_intercept()

    def __neg__(self):
        return self.term

    def __str__(self):
        return f"-{_grouped(self.term)}"


class Product(AbstractTerm):
    """Terms multiplied: a number or a data column times a term (`2 * b`, `x * b`), or terms
    times terms (the 2PL model's `a * (theta - b)`).

    A product carries a free overall mean when a factor does and no factor is a data column
    (`x * b0` is a slope, not an intercept).

    Example:
        >>> a = hj.exp(hj.Level("log_a", "item"))
        >>> print(a * (hj.Level("theta", "person") - hj.Level("b", "item", loc=hj.Fixed("mu"))))
        exp(log_a[item]) * (theta[person] - b[item])
    """

    factors: tuple[AbstractTerm, ...]

    def __init__(self, factors):
        flat = []
        for factor in map(as_term, factors):
            flat.extend(factor.factors if type(factor) is Product else (factor,))
        self.factors = tuple(flat)

    def children(self):
        return self.factors

    def __call__(self, p, data):
        value = self.factors[0](p, data)
        for factor in self.factors[1:]:
            value = value * factor(p, data)
        return value

    def support(self):
        return C.positive if all(map(_positive, self.factors)) else C.real

    def has_intercept(self):
        return (any(f.has_intercept() for f in self.factors)
                and not any(f.is_covariate() for f in self.factors))

    def __str__(self):
        return " * ".join(_grouped(f) for f in self.factors)


class Quotient(AbstractTerm):
    """A term divided by another, a number or a data column (`b / 2`, `y_sd / n`).

    Example:
        >>> print(hj.Fixed("b") / hj.Data("n"))
        b / data[n]
    """

    numerator: AbstractTerm
    denominator: AbstractTerm

    def children(self):
        return (self.numerator, self.denominator)

    def __call__(self, p, data):
        return self.numerator(p, data) / self.denominator(p, data)

    def support(self):
        positive = _positive(self.numerator) and _positive(self.denominator)
        return C.positive if positive else C.real

    def has_intercept(self):
        return (self.numerator.has_intercept() and not self.numerator.is_covariate()
                and not self.denominator.is_covariate())

    def __str__(self):
        wrap = lambda t: f"({t})" if isinstance(t, AbstractSum | Neg | Product) else str(t)  # noqa: E731
        return f"{wrap(self.numerator)} / {wrap(self.denominator)}"


_LINKS = {
    "exp": (jnp.exp, C.positive),
    "softplus": (log1p_exp, C.positive),
    "inv_logit": (jax.nn.sigmoid, C.unit_interval),
}


class Link(AbstractTerm):
    """An inverse link applied to a predictor, e.g. `hj.exp(b0 + u)` for a positive sigma."""

    term: AbstractTerm
    name: str = eqx.field(static=True)

    def __check_init__(self):
        if self.name not in _LINKS:
            raise ModelError(f"Unknown link '{self.name}'; expected one of {sorted(_LINKS)}.")

    def children(self):
        return (self.term,)

    def __call__(self, p, data):
        return _LINKS[self.name][0](self.term(p, data))

    def support(self):
        return _LINKS[self.name][1]

    def __str__(self):
        return f"{self.name}({self.term})"


def _link(term, name: str, report: str | None) -> AbstractTerm:
    link = Link(as_term(term), name)
    return link if report is None else Deterministic(report, link)


def exp(term: AbstractTerm, name: str | None = None) -> AbstractTerm:
    """exp(term): a positive parameter from a linear predictor; `name` reports its value.

    Example:
        >>> print(hj.exp(hj.Fixed("b") + hj.Level("u", "group")))
        exp(b + u[group])
        >>> print(hj.exp(hj.Fixed("log_a"), name="a"))
        a
    """
    return _link(term, "exp", name)


def softplus(term: AbstractTerm, name: str | None = None) -> AbstractTerm:
    """softplus(term): a positive parameter from a predictor; `name` reports its value.

    Example:
        >>> print(hj.softplus(hj.Fixed("b") + hj.Level("u", "group")))
        softplus(b + u[group])
    """
    return _link(term, "softplus", name)


def inv_logit(term: AbstractTerm, name: str | None = None) -> AbstractTerm:
    """logistic(term): a parameter in (0, 1) from a linear predictor; `name` reports its value.

    Example:
        >>> print(hj.inv_logit(hj.Fixed("b")))
        inv_logit(b)
    """
    return _link(term, "inv_logit", name)


class Deterministic(AbstractTerm):
    """A term reported in the posterior (and in simulated truths) under `name`: a scalar, or
    one value per group of the one group it is indexed by (`alpha = mu + u` per county).

    It must not read per-observation data (a slope's predictor), since then it has no value
    per group; and it may be indexed by one group only.

    Example:
        >>> alpha = hj.Deterministic("alpha", hj.Fixed("mu") + hj.Level("u", "county"))
        >>> model = hj.Model(hj.Gaussian(mu=alpha, sigma=1.0), coords={"county": 3})
        >>> model.param_dims["alpha"]
        ('county',)
    """

    name: str = eqx.field(static=True)
    term: AbstractTerm = eqx.field(converter=lambda v: as_term(v))

    def __check_init__(self):
        per_row = [need.key for need in self.term.needs(OBS) if need.index_of is None]
        if per_row:
            raise ModelError(
                f"Deterministic '{self.name}' reads per-observation data {per_row}, so it has no "
                "value per group to report; report the terms it is built from instead.")
        if len(self.groups) > 1:
            raise ModelError(
                f"Deterministic '{self.name}' is indexed by several groups {self.groups}; "
                "report a quantity of one group (e.g. each level's values) instead.")

    @property
    def groups(self) -> list[str]:
        return sorted({need.index_of for need in self.term.needs(OBS) if need.index_of})

    def children(self):
        return (self.term,)

    def __call__(self, p, data):
        return self.term(p, data)

    def support(self):
        return self.term.support()

    def has_intercept(self):
        return self.term.has_intercept()

    def derived(self, p, data, sizes):
        # Evaluated once per group: the group's index column replaced by 0, 1, ..., G - 1.
        at_groups = {**data, **{g: jnp.arange(sizes[g]) for g in self.groups}}
        return {self.name: self.term(p, at_groups)}

    def derived_dims(self, sizes):
        return {self.name: tuple(self.groups)}

    def __str__(self):
        return self.name


def as_term(value: AbstractTerm | float | int) -> AbstractTerm:
    """Numbers become `Const`; terms pass through.

    Example:
        >>> as_term(1), as_term(hj.Data("x"))
        (Const(value=1.0), Data(key='x'))
    """
    if isinstance(value, AbstractTerm):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return Const(float(value))
    hint = f" For a data column use hj.Data({value!r})." if isinstance(value, str) else ""
    raise ModelError(f"Expected a Term or a number; got {type(value).__name__} {value!r}.{hint}")
