"""Per-group values drawn from a population: partial pooling, its nested form, crossed factors."""

# No `from __future__ import annotations`: equinox reads AbstractVar annotations at runtime.
import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.stats as jss
import numpy as np

from hjax.errors import ModelError
from hjax.model import constraints as C
from hjax.model import names
from hjax.model.names import INTERCEPT
from hjax.model.priors import LKJCholesky
from hjax.model.scales import DEFAULT_SCALE, AbstractScale, as_scale
from hjax.model.terms import OBS, AbstractSum, Need, ParamSpec, Term, as_term, key_for


def _names(value) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _loc(value):
    """A `loc`: None, a term (numbers become constants), or one of those per predictor."""
    if value is None:
        return None
    if isinstance(value, tuple | list):
        return tuple(None if v is None else as_term(v) for v in value)
    return as_term(value)


def _expand_rows(values, outer: int, inner: int):
    """`values[tile(repeat(arange(groups), inner), outer)]` as a broadcast: its transpose is a
    sum, where a gather's is a scatter-add."""
    groups, rest = values.shape[0], values.shape[1:]
    expanded = jnp.broadcast_to(values[None, :, None], (outer, groups, inner, *rest))
    return expanded.reshape(outer * groups * inner, *rest)


class AbstractLevel(Term):
    """Per-group values from a normal population: the shared code of `Level` and `Nested`.

    A subclass says where the population mean comes from (`population_mean`, `_mean_text`,
    `group_needs`, `children`, `has_intercept`) and how it prints.
    """

    name: eqx.AbstractVar[str]
    group: eqx.AbstractVar[str]
    scale: eqx.AbstractVar[AbstractScale]
    predictors: eqx.AbstractVar[tuple[str, ...]]
    corr: eqx.AbstractVar[LKJCholesky | None]
    centered: eqx.AbstractVar[bool]
    row_pattern: eqx.AbstractVar[tuple[int, int] | None]

    def __check_init__(self):
        kind = type(self).__name__
        if not (isinstance(self.name, str) and isinstance(self.group, str)):
            raise ModelError(f"{kind} needs a name and a group, both strings; got "
                             f"{self.name!r} and {self.group!r}.")
        where = f"{kind} '{self.name}'"
        x = self.predictors
        if not x or len(set(x)) != len(x) or not all(isinstance(name, str) for name in x):
            raise ModelError(
                f"{where}: `predictors` must be distinct column names (\"1\" for the intercept); "
                f"got {x!r}."
            )
        problem = self.scale.problem(x)
        if problem:
            raise ModelError(f"{where}: {problem}.")

    @abc.abstractmethod
    def population_mean(self, p, data):
        """The population mean per group."""

    @abc.abstractmethod
    def _mean_text(self) -> str:
        """The population mean as the model's printout shows it."""

    @abc.abstractmethod
    def group_needs(self) -> list[Need]:
        """Data read to compute the per-group values."""

    # --- shapes and parameters -------------------------------------------------------------
    @property
    def _k(self) -> int:
        return len(self.predictors)

    def _shape(self, sizes) -> tuple[int, ...]:
        g = sizes[self.group]
        return (g,) if self._k == 1 else (g, self._k)

    def _dims(self) -> tuple[str, ...]:
        return (self.group,) if self._k == 1 else (self.group, names.coef_dim(self.name))

    def param_specs(self, sizes):
        specs = self.scale.specs(self.name, self.predictors)
        if self.corr is not None:
            dims = (names.coef_dim(self.name), names.coef2_dim(self.name))
            # The prior is named by the correlations it is on (reported as `<name>_corr`).
            specs[names.corr_chol(self.name)] = ParamSpec(
                (self._k,) * 2, C.corr_cholesky, dims, reported=False,
                prior=f"{self.corr} on {names.corr(self.name)}")
        sd = self.scale.text(self.name)
        mean = self._mean_text()
        if self._k > 1:
            population = f"MvNormal({mean}, {sd}, {'corr' if self.corr else 'independent'})"
        else:
            population = f"Normal({mean}, {sd})"
        if self.centered:
            specs[self.name] = ParamSpec(self._shape(sizes), C.real, self._dims(),
                                         prior=f"{population}, centered")
        else:
            specs[names.z(self.name)] = ParamSpec(self._shape(sizes), C.real, self._dims(),
                                                reported=False,
                                                prior=f"Normal(0, 1), non-centered {population}")
        return specs

    def coords(self):
        if self._k == 1:
            return {}
        coords = {names.coef_dim(self.name): self.predictors}
        if self.corr is not None:
            x = self.predictors
            rows, cols = np.tril_indices(self._k, -1)
            coords[names.pair_dim(self.name)] = tuple(
                f"{x[j]}:{x[i]}" for i, j in zip(rows, cols, strict=True))
        return coords

    # --- the population ---------------------------------------------------------------------
    @property
    def _zero_mean(self) -> bool:
        """Whether the population mean is 0 (no `loc`)."""
        return True

    def _sd(self, p):
        return self.scale.sd(p, self.name)

    def _scale_tril(self, p):
        """Cholesky factor of the population covariance (multivariate case)."""
        sd = jnp.broadcast_to(self._sd(p), (self._k,))
        if self.corr is None:
            return jnp.diag(sd)
        return sd[:, None] * p[names.corr_chol(self.name)]

    def _from_standard(self, p, data, z):
        """The non-centered map from standard-normal z to the group values."""
        if self._k == 1:
            return self.population_mean(p, data) + self._sd(p) * z
        values = z @ self._scale_tril(p).T
        return values if self._zero_mean else self.population_mean(p, data) + values

    def group_values(self, p, data):
        """Per-group values: shape (groups,) or (groups, predictors)."""
        if self.centered:
            return p[self.name]
        return self._from_standard(p, data, p[names.z(self.name)])

    def hyperpriors(self, p):
        found = self.scale.log_prob(p, self.name)
        if self.corr is not None:
            found[names.corr(self.name)] = self.corr.log_prob(p[names.corr_chol(self.name)])
        return found

    def log_prior(self, p, data):
        lp = jnp.zeros(())
        for value in self.hyperpriors(p).values():
            lp += value
        if not self.centered:
            return lp + jnp.sum(jss.norm.logpdf(p[names.z(self.name)]))
        values = p[self.name]
        if self._k == 1:
            mean = jnp.broadcast_to(self.population_mean(p, data), values.shape)
            return lp + jnp.sum(jss.norm.logpdf(values, mean, self._sd(p)))
        tril = self._scale_tril(p)
        if not self._zero_mean:
            values = values - self.population_mean(p, data)
        white = jax.scipy.linalg.solve_triangular(tril, values.T, lower=True)
        log_det = jnp.sum(jnp.log(jnp.diagonal(tril)))
        return lp + jnp.sum(jss.norm.logpdf(white)) - values.shape[0] * log_det

    def sample_prior(self, key, data, sizes, given):
        draws = super().sample_prior(key, data, sizes, given)
        draws |= self.scale.sample_prior(key, self.name, self._k, given)
        if self.corr is not None:
            corr, chol = names.corr(self.name), names.corr_chol(self.name)
            draws[chol] = (jnp.linalg.cholesky(self._corr_matrix(given[corr])) if corr in given
                           else given[chol] if chol in given
                           else self.corr.sample(key_for(key, chol)))
        if self.name in given:
            values = jnp.broadcast_to(given[self.name], self._shape(sizes))
            z = self._to_standard(draws, data, values)
        else:
            z = jax.random.normal(key_for(key, names.z(self.name)), self._shape(sizes))
            values = self._from_standard(draws, data, z)
        draws[self.name if self.centered else names.z(self.name)] = values if self.centered else z
        return draws

    def _corr_matrix(self, pairs):
        """The correlation matrix of its strictly-lower entries (as reported)."""
        rows, cols = jnp.tril_indices(self._k, -1)
        lower = jnp.zeros((self._k, self._k)).at[rows, cols].set(pairs)
        return lower + lower.T + jnp.eye(self._k)

    def _to_standard(self, p, data, values):
        """Inverse of `_from_standard`: the z that give these group values."""
        if self._k == 1:
            return (values - self.population_mean(p, data)) / self._sd(p)
        if not self._zero_mean:
            values = values - self.population_mean(p, data)
        return jax.scipy.linalg.solve_triangular(self._scale_tril(p), values.T, lower=True).T

    def derived(self, p, data, sizes):
        out = {} if self.centered else {self.name: self.group_values(p, data)}
        if self.corr is not None:
            chol = p[names.corr_chol(self.name)]
            # Only the strictly-lower correlations: the diagonal is 1 and the upper a copy, and
            # constant or duplicated entries would distort R-hat and SBC's multiplicity.
            out[names.corr(self.name)] = (chol @ chol.T)[jnp.tril_indices(self._k, -1)]
        return out

    def derived_dims(self, sizes):
        out = {} if self.centered else {self.name: self._dims()}
        if self.corr is not None:
            out[names.corr(self.name)] = (names.pair_dim(self.name),)
        return out

    # --- the predictor ----------------------------------------------------------------------
    def __call__(self, p, data):
        values = self.group_values(p, data)
        # `row_pattern` (set by `hjax.model.regular_index`) describes the rows of the data it
        # was found in; other rows (a derived value taken per group) are gathered.
        pattern, rows = self.row_pattern, data[self.group].shape[-1]
        if pattern is not None and pattern[0] * values.shape[0] * pattern[1] == rows:
            values = _expand_rows(values, *pattern)
        else:
            values = values[data[self.group]]
        if self._k == 1:
            x = self.predictors[0]
            return values if x == INTERCEPT else values * data[x]
        columns = jnp.stack(
            [jnp.ones_like(values[:, 0]) if x == INTERCEPT else data[x] for x in self.predictors],
            axis=-1,
        )
        return jnp.sum(values * columns, axis=-1)

    def needs(self, context):
        if context != OBS:
            raise ModelError(
                f"{type(self).__name__} '{self.name}' is used per '{context}' (inside a loc); "
                "levels enter the observation-level predictor only. Use hj.Nested to centre a "
                "level on another."
            )
        where = f"{type(self).__name__} '{self.name}'"
        needs = [Need(self.group, OBS, index_of=self.group, user=where)]
        needs += [Need(x, OBS, user=where) for x in self.predictors if x != INTERCEPT]
        return needs + self.group_needs()


class Level(AbstractLevel):
    """Per-group values from a population distribution (partial pooling).

    `values[g] ~ Normal(loc[g], sd)` for each group g of `group`, entering the predictor as
    `values[data[group]]` (times `data[x]` for a varying slope on predictor x). Non-centered by
    default (`values = loc + sd * z`, z ~ N(0, 1)); `centered=True` samples the values directly.
    `loc` is a term evaluated per group, so group-level predictors go there
    (`loc=hj.Fixed("b0") + hj.Fixed("b1", predictors="z")` with `data["z"]` one value per group);
    without `loc` the values are zero-mean deviations.

    Pooling: a prior on `scale` gives partial pooling; a number for `scale` fixes the population
    sd (a wide one, e.g. 10.0, is no pooling); leaving the Level out is complete pooling.

    Several `predictors` (`("1", "x")`: intercept and slope) make the values vectors, with
    separate scales (each with the `scale` prior, or one prior each if `scale` is a tuple) and,
    if `corr` is given, an LKJ prior on their correlation; otherwise they are independent.

    Args:
        name: the values' name in the posterior (`<name>_sd` is the population sd).
        group: the group column that indexes the values.
        scale: the population sd's prior; `hj.HalfNormal(1)` when none is given
            (`print(model)` marks it "(default)"); a number fixes the sd; a tuple of priors
            gives each predictor's sd its own (`hjax.model.scales` holds each form's class).
        loc: the population mean, a term per group; None: zero-mean deviations.
        predictors: "1" (an intercept) and/or columns the values multiply (slopes).
        corr: an `hj.LKJCholesky` prior on the correlation of several predictors' values.
        centered: sample the values themselves instead of their standard-normal draws.

    Example:
        >>> alpha = hj.Level("alpha", group="participant", scale=hj.HalfNormal(1.0))
        >>> ab = hj.Level("ab", "participant", predictors=("1", "x"), corr=hj.LKJCholesky(2, 2.0))
        >>> hj.Model(hj.Gaussian(mu=ab, sigma=1.0), coords={"participant": 3}).param_dims
        {'ab_sd': ('ab_coef',), 'ab': ('participant', 'ab_coef'), 'ab_corr': ('ab_pair',)}
    """

    name: str = eqx.field(static=True)
    group: str = eqx.field(static=True)
    scale: AbstractScale = eqx.field(default=DEFAULT_SCALE, converter=as_scale)
    loc: Term | tuple[Term | None, ...] | None = eqx.field(default=None, converter=_loc)
    predictors: tuple[str, ...] = eqx.field(static=True, default=(INTERCEPT,), converter=_names)
    corr: LKJCholesky | None = None
    centered: bool = eqx.field(static=True, default=False)
    # (outer, inner): the index column is tile(repeat(arange(groups), inner), outer), and the
    # predictor broadcasts the values instead of gathering them. Set on a copy by `hj.sample`
    # when the data say so (`hjax.model.regular_index`), not by hand.
    row_pattern: tuple[int, int] | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        where = f"Level '{self.name}'"
        k = len(self.predictors)
        if k > 1 and self.loc is not None and (
                not isinstance(self.loc, tuple) or len(self.loc) != k):
            raise ModelError(
                f"{where}: with {k} predictors {self.predictors}, `loc` is one mean per "
                "predictor, a tuple of terms (None for a zero mean), e.g. "
                "loc=(hj.Fixed('mu_a'), hj.Fixed('mu_b')).")
        if k == 1 and isinstance(self.loc, tuple):
            raise ModelError(f"{where}: one predictor takes one `loc` term; got a tuple.")
        if self.corr is not None:
            if k < 2:
                raise ModelError(f"{where}: `corr` needs at least two predictors; got {k}.")
            if not isinstance(self.corr, LKJCholesky) or self.corr.dim != k:
                raise ModelError(f"{where}: `corr` must be hj.LKJCholesky(dim={k}, eta=...).")

    @property
    def _locs(self) -> tuple[Term | None, ...]:
        """One mean term (or None) per predictor."""
        if isinstance(self.loc, tuple):
            return self.loc
        return (self.loc,) if self._k == 1 else (None,) * self._k

    @property
    def _zero_mean(self) -> bool:
        return all(loc is None for loc in self._locs)

    def children(self):
        return tuple(loc for loc in self._locs if loc is not None)

    def _mean_text(self) -> str:
        texts = ["0" if loc is None else str(loc) for loc in self._locs]
        if self._k == 1 or self._zero_mean:
            return texts[0]
        return f"({', '.join(texts)})"

    def population_mean(self, p, data):
        """The population mean per group: (groups,) or (groups, predictors); 0 without `loc`."""
        means = [jnp.zeros(()) if loc is None else loc(p, data) for loc in self._locs]
        return means[0] if self._k == 1 else jnp.stack(jnp.broadcast_arrays(*means), axis=-1)

    def group_needs(self) -> list[Need]:
        """Data read to compute the per-group values."""
        return [need for loc in self.children() for need in loc.needs(self.group)]

    def has_intercept(self):
        # Only the mean of the intercept coefficient is a free overall mean: a varying slope's
        # mean multiplies its predictor.
        if INTERCEPT not in self.predictors:
            return False
        loc = self._locs[self.predictors.index(INTERCEPT)]
        return loc is not None and loc.has_intercept()

    def __str__(self):
        if self._k > 1:
            return f"{self.name}[{self.group}] . [{', '.join(self.predictors)}]"
        slope = "".join(f"*{x}" for x in self.predictors if x != INTERCEPT)
        return f"{self.name}[{self.group}]{slope}"


class Nested(AbstractLevel):
    """A level whose population mean is its parent level's value (classes in schools).

    `values[c] ~ Normal(parent_values[parent_of[c]], sd)`, where `parent_of` is read from
    `data["<group>_in_<parent group>"]` (one parent index per child group). `model.prepare`
    builds it from the observation-level columns of both groups and checks each child lies in
    exactly one parent. Chains of any depth are built by nesting a Nested as the parent. Its
    mean is its parent's value, so it takes no `loc` and has a single predictor (intercept).

    Example:
        >>> school = hj.Level("school", "school", loc=hj.Fixed("mu"), scale=hj.HalfNormal(1))
        >>> klass = hj.Nested("class", "class", parent=school, scale=hj.HalfNormal(1))
        >>> model = hj.Model(hj.Gaussian(mu=klass, sigma=1.0), coords={"school": 2, "class": 4})
        >>> data = model.prepare({"y": np.zeros(5), "school": [0, 0, 1, 1, 1],
        ...                       "class": [0, 1, 2, 3, 3]})
        >>> data["class_in_school"]  # each class's school
        Array([0, 0, 1, 1], dtype=int32)
    """

    name: str = eqx.field(static=True)
    group: str = eqx.field(static=True)
    parent: AbstractLevel
    scale: AbstractScale = eqx.field(default=DEFAULT_SCALE, converter=as_scale)
    centered: bool = eqx.field(static=True, default=False)
    row_pattern: tuple[int, int] | None = eqx.field(static=True, default=None)  # as Level's
    predictors = (INTERCEPT,)
    corr = None

    def __check_init__(self):
        if not isinstance(self.parent, AbstractLevel):
            raise ModelError(f"Nested '{self.name}' needs `parent`, a hj.Level or hj.Nested; got "
                             f"{type(self.parent).__name__}.")

    @property
    def parent_key(self) -> str:
        return names.parent_index(self.group, self.parent.group)

    def children(self):
        return (self.parent,)

    def _mean_text(self):
        return f"{self.parent.name}[{self.parent_key}]"

    def population_mean(self, p, data):
        return self.parent.group_values(p, data)[data[self.parent_key]]

    def group_needs(self):
        where = f"Nested '{self.name}'"
        return [Need(self.parent_key, self.group, index_of=self.parent.group, user=where),
                *self.parent.group_needs()]

    def has_intercept(self):
        return self.parent.has_intercept()

    def __str__(self):
        return f"{self.name}[{self.group} in {self.parent.group}]"


class Crossed(AbstractSum):
    """Effects of crossed factors (e.g. participants x items) summed into one predictor.

    Identified by construction: at most one member may carry a population mean; the others are
    zero-mean deviations. The non-identified form (each factor with its own free mean, as in
    `alpha_p ~ N(mu, .)`, `gamma_i = zeta0 + ...`) is refused unless `identify=False`.

    Example:
        >>> d = hj.Crossed(hj.Level("alpha", "participant"),
        ...                hj.Level("gamma", "item", loc=hj.Fixed("zeta0") + hj.Fixed(
        ...                    "zeta1", predictors="brightness")))
        >>> print(d)
        alpha[participant] + gamma[item]
        >>> hj.Crossed(hj.Level("alpha", "participant", loc=hj.Fixed("mu")),
        ...            hj.Level("gamma", "item", loc=hj.Fixed("zeta0")))
        Traceback (most recent call last):
        ...
        hjax.errors.ModelError: Crossed: levels ['alpha', 'gamma'] each have a population mean ...
    """

    levels: tuple[AbstractLevel, ...]
    identify: bool = eqx.field(static=True, default=True)

    def __init__(self, *levels: AbstractLevel, identify: bool = True):
        self.levels = tuple(levels)
        self.identify = identify

    @property
    def terms(self):
        return self.levels

    def __check_init__(self):
        if len(self.levels) < 2 or not all(isinstance(lv, AbstractLevel) for lv in self.levels):
            raise ModelError("Crossed needs two or more hj.Level (or hj.Nested) terms; got "
                             f"{[type(lv).__name__ for lv in self.levels]}.")
        groups = [lv.group for lv in self.levels]
        if len(set(groups)) != len(groups):
            raise ModelError(f"Crossed levels must be over different groups; got {groups}.")
        means = [lv.name for lv in self.levels if lv.has_intercept()]
        if self.identify and len(means) > 1:
            raise ModelError(
                f"Crossed: levels {means} each have a population mean with an intercept, so only "
                "their sum is identified. Keep the intercept in one level's `loc` (or in a Fixed "
                "term) and make the others zero-mean; pass identify=False only on purpose."
            )
