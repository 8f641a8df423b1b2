"""Population-level (completely pooled) coefficients."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from hjax.errors import ModelError
from hjax.model import constraints as C
from hjax.model.priors import LKJCholesky, Normal, Prior
from hjax.model.terms import Need, ParamSpec, Term, key_for


def _predictor_names(value):
    """One name stays a name (a scalar slope); several become a tuple (a coefficient vector)."""
    return value if value is None or isinstance(value, str) else tuple(value)


DEFAULT_PRIOR = Normal(0.0, 1.0)


class Fixed(Term):
    """A population-level coefficient, optionally multiplying predictors.

    With no predictor it is an intercept; with one predictor name it is `beta * data[x]`;
    with several it is a coefficient vector over those columns (a design matrix by columns).
    An intercept's prior may have any support, so `Fixed("sigma", hj.HalfNormal(1))` is a
    positive scalar parameter.

    Args:
        name: the parameter's name in the posterior.
        prior: its prior; `hj.Normal(0, 1)` when none is given (`print(model)` marks it
            "(default)"), a unit scale: give one on the scale of your data.
        predictors: a column name (a slope) or several (a coefficient vector); None for an
            intercept.

    Example:
        >>> b0 = hj.Fixed("b0", hj.Normal(0, 5))
        >>> slope = hj.Fixed("b_age", hj.Normal(0, 1), predictors="age")
        >>> print(b0 + slope)
        b0 + b_age * age
    """

    name: str = eqx.field(static=True)
    prior: Prior = DEFAULT_PRIOR
    predictors: tuple[str, ...] | str | None = eqx.field(static=True, default=None,
                                                         converter=_predictor_names)

    def __check_init__(self):
        where = f"Fixed '{self.name}'"
        if not isinstance(self.name, str):
            raise ModelError(f"Fixed needs a name, a string; got {self.name!r}.")
        if not isinstance(self.prior, Prior):
            raise ModelError(
                f"{where}: `prior` must be a hj prior (e.g. hj.Normal(0, 1)); got {self.prior!r}. "
                "A known value is a number in the likelihood slot, not a Fixed."
            )
        if isinstance(self.prior, LKJCholesky):
            raise ModelError(f"{where}: hj.LKJCholesky is a prior on correlations; it goes in "
                             "hj.Level(..., corr=...), not in a Fixed.")
        names = (self.predictors,) if isinstance(self.predictors, str) else self.predictors or ()
        if (self.predictors is not None and not names) or len(set(names)) != len(names):
            raise ModelError(f"{where}: `predictors` must be distinct column names; got "
                             f"{self.predictors!r}.")
        if self.predictors is not None and not isinstance(self.prior.support, C.Real):
            raise ModelError(
                f"Fixed '{self.name}' multiplies predictors, so its prior needs real support; "
                f"got {self.prior} with support {self.prior.support}. Use e.g. hj.Normal(0, 1)."
            )

    @property
    def _vector(self) -> bool:
        return isinstance(self.predictors, tuple)

    def param_specs(self, sizes):
        if self._vector:
            k = len(self.predictors)
            dims = (f"{self.name}_dim",)
            return {self.name: ParamSpec((k,), self.prior.support, dims, prior=self._prior_text)}
        return {self.name: ParamSpec((), self.prior.support, (), prior=self._prior_text)}

    @property
    def _prior_text(self) -> str:
        return self.prior.described(default=DEFAULT_PRIOR)

    def coords(self):
        return {f"{self.name}_dim": self.predictors} if self._vector else {}

    def log_prior(self, p, data):
        return jnp.sum(self.prior.log_prob(p[self.name]))

    def hyperpriors(self, p):
        return {self.name: jnp.sum(self.prior.log_prob(p[self.name]))}

    def sample_prior(self, key, data, sizes, given):
        shape = self.param_specs(sizes)[self.name].shape
        if self.name in given:
            return {self.name: jnp.broadcast_to(given[self.name], shape)}
        return {self.name: self.prior.sample(key_for(key, self.name), shape)}

    def __call__(self, p, data):
        beta = p[self.name]
        if self.predictors is None:
            return beta
        if self._vector:
            columns = jnp.stack([data[x] for x in self.predictors], axis=-1)
            return columns @ beta
        return beta * data[self.predictors]

    def needs(self, context):
        names = (self.predictors,) if isinstance(self.predictors, str) else self.predictors or ()
        return [Need(x, context, user=f"Fixed '{self.name}'") for x in names]

    def support(self):
        return self.prior.support if self.predictors is None else C.real

    def has_intercept(self):
        return self.predictors is None

    def __str__(self):
        if self.predictors is None:
            return self.name
        if self._vector:
            return f"{self.name} . [{', '.join(self.predictors)}]"
        return f"{self.name} * {self.predictors}"
