"""`Model`: a likelihood plus the terms under it, as pure functions of (position, data)."""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence, Set

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from hjax.errors import DataError, ModelError
from hjax.model import constraints as C
from hjax.model.data import OBSERVED_ROWS, n_observations, prepare_data
from hjax.model.likelihoods import AbstractLikelihood, slot_problem
from hjax.model.preview import preview
from hjax.model.terms import OBS, Data, Deterministic, Need, ParamSpec, Term

Position = dict[str, Array]

_COORDS_TAKES = ("coords takes, for each group, its size (an int > 0) or its labels in index "
                 "order (distinct, e.g. from hj.encode)")


def _group_labels(group: str, labels) -> tuple:
    """A group's labels from its coords entry: a size, or the labels themselves."""
    if isinstance(labels, numbers.Integral) and not isinstance(labels, bool):
        if labels < 1:
            raise ModelError(f"coords['{group}'] is {labels}: a group needs at least one member. "
                             f"{_COORDS_TAKES}.")
        return tuple(range(int(labels)))
    if isinstance(labels, str | bytes | Mapping | Set) or not isinstance(labels, Iterable):
        raise ModelError(f"coords['{group}'] is {labels!r} ({type(labels).__name__}); "
                         f"{_COORDS_TAKES}.")
    # numpy scalars become Python ones: coords are static, and equinox warns on static arrays.
    labels = tuple(x.item() if isinstance(x, np.generic) else x for x in labels)
    if not labels:
        raise ModelError(f"coords['{group}'] has no labels: a group needs at least one member. "
                         f"{_COORDS_TAKES}.")
    try:
        counts = Counter(labels)
    except TypeError:
        raise ModelError(f"coords['{group}'] has unhashable labels (e.g. {labels[0]!r}); "
                         f"{_COORDS_TAKES}.") from None
    repeated = [label for label, n in counts.items() if n > 1]
    if repeated:
        raise ModelError(f"coords['{group}'] repeats labels {preview(repeated)}: each label names "
                         f"one group. {_COORDS_TAKES}.")
    return labels


class Model(eqx.Module):
    """A hierarchical model: the likelihood, its terms, and the groups they index.

    `logdensity(position, data)` is the log posterior density (up to the evidence) over the
    unconstrained `position` (a dict of arrays, see `init`), with the log-Jacobian of every
    constraint included. Data are arguments, so one compiled function serves every dataset of
    the same shape. `simulate(key, design)` draws parameters from the prior and data from the
    likelihood: the generative side used by SBC and recovery studies.

    Args:
        likelihood: the observation model, its parameter slots filled with terms.
        coords: for each group a term indexes, its size or its labels (in index order); none
            for a model without groups.
        missing: observations may be missing (NaN in an observed column): such a row adds
            nothing to the likelihood, and the posterior predictive predicts it.

    Example:
        >>> model = hj.Model(
        ...     hj.Gaussian(mu=hj.Level("theta", "school", loc=hj.Fixed("mu", hj.Normal(0, 5)),
        ...                           scale=hj.HalfCauchy(5.0)),
        ...               sigma=hj.Data("sigma")),
        ...     coords={"school": 8},
        ... )
        >>> print(model)
        hjax Model
        Gaussian likelihood on y
          mu = theta[school]
          sigma = data[sigma]
        groups: school (8)
        parameters (10 unconstrained values):
          theta_sd  scalar   positive       ~ HalfCauchy(5)
          theta_z   8        real           ~ Normal(0, 1), non-centered Normal(mu, theta_sd)
          mu        scalar   real           ~ Normal(0, 5)
        reducible: rows alike but for the outcome are fitted as cells (n, mean, sum of squares)
          where the cells are at most half the rows; a fit's attrs say (`reduction`)
        >>> data = model.prepare({"y": np.array([28.0, 8, -3, 7, -1, 1, 18, 12]),
        ...                       "sigma": np.array([15.0, 10, 16, 11, 9, 11, 10, 18]),
        ...                       "school": np.arange(8)})
        >>> lp = jax.jit(model.logdensity)(model.init(jax.random.key(0)), data)
        >>> lp.shape, bool(jnp.isfinite(lp))
        ((), True)
    """

    likelihood: AbstractLikelihood
    group_coords: tuple[tuple[str, tuple], ...] = eqx.field(static=True)
    missing: bool = eqx.field(static=True, default=False)

    def __init__(self, likelihood: AbstractLikelihood,
                 coords: Mapping[str, int | Sequence] | None = None, *, missing: bool = False):
        if not isinstance(likelihood, AbstractLikelihood):
            raise ModelError(f"Expected a hj likelihood (e.g. hj.Gaussian); got {likelihood!r}.")
        coords = {} if coords is None else coords
        if not isinstance(coords, Mapping):
            raise ModelError(f"Expected coords as a mapping of group name to size or labels; got "
                             f"{type(coords).__name__}. {_COORDS_TAKES}.")
        self.likelihood = likelihood
        self.group_coords = tuple((name, _group_labels(name, labels))
                                  for name, labels in coords.items())
        self.missing = missing

    def __check_init__(self):
        for slot, required in self.likelihood.slot_supports().items():
            problem = slot_problem(self.likelihood.terms()[slot], required)
            if problem:
                raise ModelError(
                    f"{type(self.likelihood).__name__}.{slot} must be {required}, but {problem}. "
                    + required.advice()
                )
        groups = {need.index_of for need in self.needs() if need.index_of}
        missing = sorted(groups - set(self.sizes))
        if missing:
            raise ModelError(
                f"Groups {missing} are used by the model but not in `coords`; pass their sizes or "
                "labels, e.g. coords={'participant': 20} (hj.encode(data, groups) returns them)."
            )
        reported = [name for name, spec in self.param_specs.items() if spec.reported]
        derived = [name for term in self.terms() for name in term.derived_dims(self.sizes)]
        clashes = sorted({name for name in derived if (reported + derived).count(name) > 1})
        if clashes:
            raise ModelError(f"The model reports more than one value named {clashes}; give "
                             "derived quantities (hj.Deterministic, name=) names of their own.")

    # --- structure ----------------------------------------------------------------------------
    @property
    def sizes(self) -> dict[str, int]:
        return {name: len(labels) for name, labels in self.group_coords}

    def terms(self) -> list[Term]:
        """Every distinct term in the tree, parents before children."""
        found: list[Term] = []
        stack = list(self.likelihood.terms().values())[::-1]
        while stack:
            term = stack.pop()
            if not any(term is seen or term == seen for seen in found):
                found.append(term)
                stack.extend(term.children()[::-1])
        return found

    @property
    def param_specs(self) -> dict[str, ParamSpec]:
        """Free parameters by name: shapes, supports, dims."""
        specs: dict[str, ParamSpec] = {}
        for term in self.terms():
            for name, spec in term.param_specs(self.sizes).items():
                if name in specs:
                    raise ModelError(
                        f"Two different terms define a parameter named '{name}'; names must be "
                        "unique (reuse the same term object to share a parameter)."
                    )
                specs[name] = spec
        return specs

    def needs(self) -> list[Need]:
        """Data arrays the terms read (observed data excluded)."""
        needs = []
        supports = self.likelihood.slot_supports()
        for slot, term in self.likelihood.terms().items():
            for need in term.needs(OBS):
                if isinstance(term, Data) and need.key == term.key:
                    need = Need(need.key, OBS, support=supports[slot],
                                user=f"{type(self.likelihood).__name__}.{slot}")
                needs.append(need)
        return needs + self.likelihood.needs()

    @property
    def coords(self) -> dict[str, tuple]:
        """Labels of every dim of the reported parameters."""
        coords = dict(self.group_coords)
        for term in self.terms():
            coords |= term.coords()
        return coords

    @property
    def param_dims(self) -> dict[str, tuple[str, ...]]:
        """Dims of every reported value (free parameters and derived ones), by name."""
        dims = {name: s.dims for name, s in self.param_specs.items() if s.reported}
        for term in self.terms():
            dims |= term.derived_dims(self.sizes)
        return dims

    # --- densities ----------------------------------------------------------------------------
    def _to_constrained(self, position: Position) -> tuple[dict[str, Array], Array]:
        """The one place where constraints are applied and their log-Jacobian is added."""
        values, log_jac = {}, jnp.zeros(())
        for name, spec in self.param_specs.items():
            values[name], ld = spec.constraint.bijector().forward_and_log_det(position[name])
            log_jac += jnp.sum(ld)
        return values, log_jac

    def _slot_values(self, p, data) -> dict[str, Array]:
        return {slot: term(p, data) for slot, term in self.likelihood.terms().items()}

    def _observed(self, data) -> dict[str, Array]:
        """The columns the likelihood reads: observed ones, and others (censoring limits)."""
        keys = self.likelihood.observed_keys() | self.likelihood.data_keys()
        return {arg: data[key] for arg, key in keys.items()}

    def bound_violation(self, position: Position, data: dict[str, Array]) -> Float[Array, ""]:
        """How far the slots are outside the bounds the data put on them (the likelihood's
        `data_bounds`, with their margins): a sum of squares, 0 inside. The start search
        descends it to put chains where every observation has a likelihood.

        Example:
            >>> model.bound_violation(model.init(jax.random.key(0)), model.prepare(data))
            Array(0., dtype=float32)
        """
        bounds = self.likelihood.data_bounds()
        total = jnp.zeros(())
        if not bounds:
            return total
        values = self._slot_values(self._to_constrained(position)[0], data)
        for slot, bound in bounds.items():
            total += jnp.sum(bound.excess(values[slot], data[bound.key]) ** 2)
        return total

    def free_parameters(self, values: dict[str, Array], data: dict[str, Array]) -> dict:
        """The constrained free parameters behind reported values (a posterior draw): each
        non-centered Level's standard-normal values follow from its group values.

        Example:
            >>> prepared = model.prepare(data)
            >>> values = model.constrain(model.init(jax.random.key(0)), prepared)
            >>> sorted(model.free_parameters(values, prepared))
            ['mu', 'theta_sd', 'theta_z']
        """
        # Every free parameter is given or follows from given values: the key draws nothing.
        return self.sample_prior(jax.random.key(0), data, given=values)

    def pointwise_log_likelihood(self, p: dict[str, Array], data: dict[str, Array]) -> Array:
        """Log likelihood of each observation given constrained free parameters `p` (0 for a
        missing one)."""
        return self._masked(self.likelihood.log_prob(**self._observed(data),
                                                     **self._slot_values(p, data)), data)

    def _masked(self, log_lik: Array, data: dict[str, Array]) -> Array:
        """A missing observation (`missing=True`) contributes nothing to the likelihood."""
        if not self.missing:
            return log_lik
        return jnp.where(data[OBSERVED_ROWS] > 0, log_lik, jnp.zeros_like(log_lik))

    def hyperpriors(self, p: dict[str, Array]) -> dict[str, Array]:
        """Log prior density of each parameter with a prior of its own (constrained `p`)."""
        return {name: value for term in self.terms() for name, value in
                term.hyperpriors(p).items()}

    def log_likelihood(self, position: Position, data: dict[str, Array]) -> Float[Array, " n"]:
        """Log likelihood of each observation (for LOO / WAIC)."""
        p, _ = self._to_constrained(position)
        return self.likelihood.log_prob(**self._observed(data), **self._slot_values(p, data))

    def logdensity(self, position: Position, data: dict[str, Array]) -> Float[Array, ""]:
        """Log posterior density over the unconstrained position (up to a constant)."""
        p, log_jac = self._to_constrained(position)
        log_prior = sum((term.log_prior(p, data) for term in self.terms()), jnp.zeros(()))
        log_lik = self.likelihood.log_prob(**self._observed(data), **self._slot_values(p, data))
        return log_jac + log_prior + jnp.sum(self._masked(log_lik, data))

    # --- positions ----------------------------------------------------------------------------
    def init(self, key: PRNGKeyArray, radius: float = 2.0) -> Position:
        """A random unconstrained position, uniform on (-radius, radius) as in Stan."""
        position = {}
        for name, spec in self.param_specs.items():
            shape = spec.constraint.unconstrained_shape(spec.shape)
            position[name] = jax.random.uniform(
                jax.random.fold_in(key, len(position)), shape, minval=-radius, maxval=radius
            )
        return position

    def constrain(self, position: Position, data: dict[str, Array]) -> dict[str, Array]:
        """Named constrained values: reported parameters and derived values (group effects)."""
        return self._report(self._to_constrained(position)[0], data)

    def unconstrain(self, values: dict[str, Array]) -> Position:
        """The position of constrained free-parameter values (inverse of the constraints)."""
        return {name: spec.constraint.bijector().inverse(values[name])
                for name, spec in self.param_specs.items()}

    def _report(self, p, data):
        out = {name: p[name] for name, spec in self.param_specs.items() if spec.reported}
        for term in self.terms():
            out |= term.derived(p, data, self.sizes)
        return out

    # --- generative side ----------------------------------------------------------------------
    def sample_prior(self, key: PRNGKeyArray, data: dict[str, Array],
                     given: dict[str, Array] | None = None) -> dict[str, Array]:
        """Constrained free parameters drawn from the prior, except the `given` ones."""
        unknown = set(given or {}) - set(self.param_dims)
        if unknown:
            raise DataError(f"Unknown parameters {sorted(unknown)}; expected some of "
                            f"{sorted(self.param_dims)}.")
        draws = {}
        for term in self.likelihood.terms().values():
            draws |= term.sample_prior(key, data, self.sizes, given or {})
        return draws

    def check_given(self, values: Mapping[str, Array], where: str = "model.simulate") -> None:
        """A `DataError` for a held value whose name is no parameter, or that lies outside its
        parameter's support (it would be recorded as the truth of data the model could not
        simulate); `where` names the caller in the message.

        Example:
            >>> model.check_given({"theta_sd": np.array([-1.0])}, "hj.recover")
            Traceback (most recent call last):
            ...
            hjax.errors.DataError: hj.recover: theta_sd = -1 is outside the support of ...
        """
        dims = self.param_dims
        unknown = sorted(set(values) - set(dims))
        if unknown:
            raise DataError(f"{where}: {unknown} are not parameters of the model; hold some of "
                            f"{sorted(dims)}.")
        for name, value in values.items():
            # Derived values (group values around held population ones) are any real number.
            support = (self.param_specs[name].constraint if name in self.param_specs
                       else C.real)
            value = np.asarray(value)
            outside = ~np.asarray(support.check(value))
            if outside.any():
                raise DataError(f"{where}: {name} = {value[outside].flat[0]:g} is outside the "
                                f"support of parameter '{name}' ({support}); hold it at values "
                                "inside it.")

    def simulate(self, key: PRNGKeyArray, design: dict[str, Array],
                 given: dict[str, Array] | None = None):
        """Draw parameters from the prior and data from the likelihood.

        Args:
            key: a PRNG key.
            design: prepared data without the observed columns (`model.prepare(raw,
                observed=False)`); its per-observation arrays fix the number of observations
                (a placeholder observed column does, for a model with no other).
            given: reported parameter values to hold fixed instead of drawing them (e.g.
                `{"mu": 1.0, "theta_sd": 0.5}`: group values are then drawn around them).

        Returns:
            (truths, data): reported parameter values, as `constrain` names them, and `design`
            with the simulated observed columns added.
        """
        if given and not any(isinstance(v, jax.core.Tracer) for v in given.values()):
            self.check_given(given)  # under jit (studies) the callers check theirs
        key_params, key_obs = jax.random.split(key)
        p = self.sample_prior(key_params, design, given)
        n_obs = n_observations(self, design)
        params = {slot: jnp.broadcast_to(v, (n_obs,))
                  for slot, v in self._slot_values(p, design).items()}
        columns = {arg: design[key] for arg, key in self.likelihood.data_keys().items()}
        simulated = self.likelihood.sample(key_obs, **params, **columns)
        observed = {key: simulated[arg] for arg, key in self.likelihood.observed_keys().items()}
        return self._report(p, design), {**design, **observed}

    # --- data ---------------------------------------------------------------------------------
    def prepare(self, raw: Mapping, *, observed: bool = True) -> dict[str, Array]:
        """Validate raw data on the host and convert it to the arrays the model reads.

        Raises a ValueError naming the column and the fix for: missing columns, NaN/inf,
        indices out of range, empty groups, mismatched lengths, values outside a slot's support
        and nesting violations. Labels (strings) are mapped to indices through `coords`.
        """
        return prepare_data(self, raw, observed=observed)

    # --- display ------------------------------------------------------------------------------
    def __str__(self):
        specs = self.param_specs
        n_free = sum(math.prod(s.constraint.unconstrained_shape(s.shape)) for s in specs.values())
        lines = ["hjax Model", str(self.likelihood)]
        lines.append("groups: " + ", ".join(f"{g} ({n})" for g, n in self.sizes.items()))
        lines.append(f"parameters ({n_free} unconstrained values):")
        width = max(len(name) for name in specs)
        for name, s in specs.items():
            shape = "x".join(map(str, s.shape)) or "scalar"
            lines.append(f"  {name:<{width}}  {shape:<8} {str(s.constraint):<14} ~ {s.prior}")
        if self.likelihood.statistics and not self.missing:
            lines.append(f"reducible: rows alike but for the outcome are fitted as cells "
                         f"({self.likelihood.statistics_description})\n"
                         "  where the cells are at most half the rows; a fit's attrs say "
                         "(`reduction`)")
        named = [t for t in self.terms() if isinstance(t, Deterministic)]
        if named:
            lines.append("derived quantities:")
            lines += [f"  {t.name} = {t.term}" for t in named]
        return "\n".join(lines)
