"""The population sd of a level: a parameter with a prior, or a fixed number.

`hj.Level(..., scale=...)` takes a prior (`ScalePrior`: the parameter `<name>_sd`), a tuple of
priors (one per coefficient of a multivariate level), or a number (`FixedScale`: a wide one is
no pooling); `as_scale` turns each into its class, which owns what the sd adds to the model.

Example:
    >>> as_scale(hj.HalfNormal(2.0)).text("u"), as_scale(0.5).text("u")
    ('u_sd', '0.5')
"""

# No `from __future__ import annotations`: equinox reads the field annotations at runtime.
import abc
import math
import numbers

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from hjax.model import constraints as C
from hjax.model import names
from hjax.model.priors import AbstractPrior, HalfNormal
from hjax.model.scalars import plain_number
from hjax.model.terms import ParamSpec, key_for

DEFAULT_SCALE = HalfNormal(1.0)  # a Level's population sd when no `scale` is given


class AbstractScale(eqx.Module):
    """What a level's population sd is: its parameters, prior, draws and description.

    Methods take the level's name (`level`), which names the sd's parameter.
    """

    @abc.abstractmethod
    def problem(self, predictors: tuple[str, ...]) -> str | None:
        """Why this cannot be the sd of a level with these predictors, or None."""

    @abc.abstractmethod
    def specs(self, level: str, predictors: tuple[str, ...]) -> dict[str, ParamSpec]:
        """The free parameters it adds to the model."""

    @abc.abstractmethod
    def text(self, level: str) -> str:
        """The sd as the population's description shows it."""

    @abc.abstractmethod
    def sd(self, p, level: str) -> Array:
        """The sd's value at parameters `p`: one, or one per coefficient."""

    @abc.abstractmethod
    def log_prob(self, p, level: str) -> dict[str, Array]:
        """Its prior's log density at `p`, by parameter name."""

    @abc.abstractmethod
    def sample_prior(self, key: PRNGKeyArray, level: str, k: int,
                     given) -> dict[str, Array]:
        """Draws of its parameters for a level of `k` coefficients (those in `given` held)."""

    @abc.abstractmethod
    def named(self, level: str) -> str | float:
        """The sd as a study reads it: the parameter's name, or the fixed number."""


class ScalePrior(AbstractScale):
    """The sd is the parameter `<level>_sd` with this prior: each coefficient's, or, as a
    tuple, one prior per coefficient.

    Example:
        >>> ScalePrior(hj.HalfNormal(1.0)).specs("u", ("1",))["u_sd"].prior
        'HalfNormal(1) (default)'
    """

    prior: AbstractPrior | tuple[AbstractPrior, ...]

    @property
    def _each(self) -> bool:
        """Whether each coefficient has a prior of its own."""
        return isinstance(self.prior, tuple)

    def problem(self, predictors):
        if self._each and (len(self.prior) != len(predictors) or len(predictors) < 2
                           or not all(isinstance(s, AbstractPrior) for s in self.prior)):
            return (f"a tuple `scale` is one prior per predictor, for two or more predictors; "
                    f"got {self.prior} for {predictors}")
        for prior in self.prior if self._each else (self.prior,):
            if not C.positive.contains(prior.support):
                return (f"the scale prior must have positive support; got {prior} "
                        f"({prior.support}). Use e.g. hj.HalfNormal(1.0) or hj.Exponential(1.0)")
        return None

    def specs(self, level, predictors):
        coef = () if len(predictors) == 1 else (names.coef_dim(level),)
        described = (", ".join(f"{x}: {s.described(DEFAULT_SCALE)}"
                               for x, s in zip(predictors, self.prior, strict=True))
                     if self._each else self.prior.described(DEFAULT_SCALE))
        return {names.sd(level): ParamSpec(coef and (len(predictors),), C.positive, coef,
                                           prior=described)}

    def text(self, level):
        return names.sd(level)

    def sd(self, p, level):
        return p[names.sd(level)]

    def log_prob(self, p, level):
        sd = p[names.sd(level)]
        if self._each:
            return {names.sd(level): sum(prior.log_prob(sd[i])
                                         for i, prior in enumerate(self.prior))}
        return {names.sd(level): jnp.sum(self.prior.log_prob(sd))}

    def sample_prior(self, key, level, k, given):
        name = names.sd(level)
        if name in given:
            return {name: given[name]}
        key = key_for(key, name)
        if self._each:
            return {name: jnp.stack([s.sample(jax.random.fold_in(key, i))
                                     for i, s in enumerate(self.prior)])}
        return {name: self.prior.sample(key, () if k == 1 else (k,))}

    def named(self, level):
        return names.sd(level)


class FixedScale(AbstractScale):
    """The sd is this number: no parameter (a wide one, e.g. 10.0, is no pooling).

    Example:
        >>> FixedScale(2.0).specs("u", ("1",)), FixedScale(-1.0).problem(("1",))
        ({}, 'a fixed scale must be a finite number > 0; got -1.0')
    """

    value: float = eqx.field(converter=plain_number)

    def problem(self, predictors):
        value = self.value
        if not isinstance(value, numbers.Real):
            return f"got {value!r}; pass a prior (e.g. hj.HalfNormal(1.0)) or a number"
        if isinstance(value, bool) or not (math.isfinite(value) and value > 0):
            return f"a fixed scale must be a finite number > 0; got {value!r}"
        return None

    def specs(self, level, predictors):
        return {}

    def text(self, level):
        return f"{self.value:g}"

    def sd(self, p, level):
        return jnp.asarray(self.value)

    def log_prob(self, p, level):
        return {}

    def sample_prior(self, key, level, k, given):
        return {}

    def named(self, level):
        return float(self.value)


def as_scale(value) -> AbstractScale:
    """A Level's `scale` argument as its class: a prior or a tuple of priors is a
    `ScalePrior`, anything else a `FixedScale` (checked when the level is built)."""
    if isinstance(value, AbstractScale):
        return value
    if isinstance(value, AbstractPrior | tuple):
        return ScalePrior(value)
    return FixedScale(value)
